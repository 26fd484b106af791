"""The cron scheduler: runs inside every worker, fires each due time exactly once.

Any number of workers run ``Scheduler.tick()``. Exactly-once does not rest on
there being one scheduler: each fire time becomes a job with a
``(schedule, scheduled_for)`` pair that a unique constraint allows once
(``INSERT ... ON CONFLICT DO NOTHING``), and on PostgreSQL the due schedules
are also locked ``FOR UPDATE SKIP LOCKED`` so two schedulers do not even try
the same one at the same moment. Times come from the database's clock.

Schedules declared in code with ``periodic()`` are written to the table when
a worker starts (``sync_declared()``), marked ``from_code``; a code schedule
that is no longer declared is disabled, not deleted, so its history stays.
Code decides what a schedule runs and when; an operator decides whether it is
on: one turned off in the admin stays off across syncs until turned on there.
``periodic()`` refuses at import what ``Schedule.full_clean()`` refuses.

A stored schedule can still break (SQL that bypassed ``full_clean()``, a
timezone that a tzdata update removed). The tick checks each due schedule
first: a broken one is not fired, it is logged once and looked at again
``BROKEN_RECHECK`` seconds later, and the other schedules fire as usual.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, transaction

from . import cron, queries, registry
from .logfmt import Fields
from .models import Job, MissedFires, Schedule
from .outages import is_outage

logger = logging.getLogger("django_dbtasks.scheduler")

#: At most this many missed fire times are enqueued at once with ``missed=ALL``.
MAX_CATCH_UP = 100
#: Seconds after which a fire time no scheduler enqueued counts as missed.
MISSED_AFTER = 60.0
#: Seconds before a broken schedule is checked (and logged) again: one line per check.
BROKEN_RECHECK = 300.0


class InvalidSchedule(ValueError):
    """A schedule that ``Schedule.full_clean()`` would refuse, declared or fired."""


@dataclass(frozen=True)
class Declared:
    name: str
    task_path: str
    cron: str
    timezone: str | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue_name: str = ""
    priority: int | None = None
    missed: str = MissedFires.LATEST


_declared: dict[str, Declared] = {}


def periodic(
    task: Any,
    cron: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    queue_name: str = "",
    priority: int | None = None,
    missed: str = MissedFires.LATEST,
) -> Any:
    """Declare, next to a task, that it runs on a cron schedule (kept in version control).

    ``periodic(send_report, "0 7 * * *", timezone="Europe/Berlin")`` in a
    ``tasks.py``; the name defaults to the task's path. Returns the task.
    Raises ``InvalidSchedule``, with ``full_clean()``'s messages, for what the
    admin would refuse.
    """
    if missed not in MissedFires.values:
        raise ValueError(f"missed must be one of {', '.join(MissedFires.values)}, got {missed!r}")
    declared = Declared(
        name=name or task.module_path,
        task_path=task.module_path,
        cron=cron,
        timezone=timezone,
        args=list(args) if isinstance(args, list | tuple) else args,
        kwargs={} if kwargs is None else kwargs,
        queue_name=queue_name,
        priority=priority,
        missed=missed,
    )
    _check_declared(declared, task)
    _declared[declared.name] = declared
    return task


def declared_names() -> list[str]:
    """The names of the schedules declared with ``periodic()`` in this process."""
    return list(_declared)


def _check_declared(declared: Declared, task: Any) -> None:
    """Raise ``InvalidSchedule`` unless the row that ``sync_declared()`` writes is valid."""
    values = {k: v for k, v in declared.__dict__.items() if k != "timezone" or v is not None}
    schedule = Schedule(**values)
    errors: dict[str, list[str]] = {}
    try:
        schedule.clean_fields()
    except ValidationError as error:
        errors.update(error.message_dict)
    for name, message in schedule.problems(task=task).items():
        errors.setdefault(name, []).append(message)
    if errors:
        details = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        raise InvalidSchedule(f"periodic() schedule {declared.name!r}: {details}")


#: What ``periodic()`` decides for a code schedule; the admin shows these read-only.
CODE_OWNED_FIELDS = (
    "task_path",
    "cron",
    "timezone",
    "args",
    "kwargs",
    "queue_name",
    "priority",
    "missed",
)


def declared_values(declared: Declared) -> dict[str, Any]:
    """The code-owned field values of a declared schedule's row."""
    values = {name: getattr(declared, name) for name in CODE_OWNED_FIELDS}
    values["timezone"] = declared.timezone or settings.TIME_ZONE or "UTC"
    return values


def as_synced(existing: Schedule | None, declared: Declared) -> tuple[Schedule, list[str]]:
    """A declared schedule's row as a sync leaves it (unsaved), and the fields it changes.

    A code schedule that is off because its ``periodic()`` was gone comes back
    on; one an operator turned off (``disabled_at``) stays off.
    """
    values = {**declared_values(declared), "from_code": True}
    if existing is None:
        return Schedule(name=declared.name, **values), list(values)
    if existing.from_code and not existing.enabled and existing.disabled_at is None:
        values["enabled"] = True
    changed = [key for key, value in values.items() if getattr(existing, key) != value]
    for key in changed:
        setattr(existing, key, values[key])
    return existing, changed


class Scheduler:
    def __init__(self, database: str) -> None:
        self.database = database

    @property
    def connection(self) -> Any:
        return connections[self.database]

    def sync_declared(self) -> None:
        """Write code-declared schedules to the table; disable code ones no longer declared.

        Code owns ``CODE_OWNED_FIELDS``; whether a schedule is on is the
        operator's once they turned it off in the admin (``disabled_at``).
        """
        for declared in _declared.values():
            for _ in range(2):  # two workers starting together may both create it
                try:
                    with transaction.atomic(using=self.database):
                        queries.lock_for_writing(self.connection)
                        self._upsert(declared)
                    break
                except IntegrityError:
                    continue
        for schedule in self._undeclared():
            schedule.enabled = False
            schedule.save(using=self.database, update_fields=["enabled", "updated_at"])
            logger.warning(
                "%s",
                Fields(schedule=schedule.name, event="disabled", why="no longer declared in code"),
            )

    def _upsert(self, declared: Declared) -> None:
        existing = Schedule.objects.using(self.database).filter(name=declared.name).first()
        schedule, changed = as_synced(existing, declared)
        if existing is None:
            schedule.save(using=self.database, force_insert=True)
        elif changed:
            schedule.save(using=self.database, update_fields=[*changed, "updated_at"])

    def _undeclared(self) -> list[Schedule]:
        """Enabled code schedules whose ``periodic()`` is gone: the next sync disables them."""
        enabled = Schedule.objects.using(self.database).filter(from_code=True, enabled=True)
        return list(enabled.exclude(name__in=list(_declared)))

    def preview_sync(self) -> list[tuple[Schedule, str]]:
        """Every schedule as the next ``sync_declared()`` leaves it, unsaved, with what changes.

        For ``manage.py schedules``, which must show what code declares without
        writing: the note is "" for a row the sync leaves as it is.
        """
        rows = {s.name: s for s in Schedule.objects.using(self.database)}
        undeclared = {s.name for s in self._undeclared()}
        previews: list[tuple[Schedule, str]] = []
        for name, row in rows.items():
            if name in _declared:
                schedule, changed = as_synced(row, _declared[name])
                note = f"changed in code ({', '.join(changed)})" if changed else ""
            else:
                schedule, note = row, ""
                if name in undeclared:
                    schedule.enabled = False
                    note = "no longer declared in code: disabled"
            previews.append((schedule, note))
        for name, declared in _declared.items():
            if name not in rows:
                previews.append(
                    (as_synced(None, declared)[0], "declared in code, not in the table")
                )
        return sorted(previews, key=lambda preview: preview[0].name)

    def tick(self) -> float | None:
        """Fire every due schedule; return seconds until the next one is due (None: none)."""
        with transaction.atomic(using=self.database):
            queries.lock_for_writing(self.connection)
            now = queries.database_now(self.connection)
            due = list(
                Schedule.objects.using(self.database)
                .select_for_update(skip_locked=True)
                .filter(enabled=True, next_fire_at__lte=now)
                .order_by("next_fire_at")[:100]
            )
            for schedule in due:
                self._fire_or_set_aside(schedule, now)
        upcoming = (
            Schedule.objects.using(self.database)
            .filter(enabled=True, next_fire_at__isnull=False)
            .order_by("next_fire_at")
            .values_list("next_fire_at", flat=True)
            .first()
        )
        if upcoming is None:
            return None
        return max(0.0, (upcoming - queries.database_now(self.connection)).total_seconds())

    def _fire_or_set_aside(self, schedule: Schedule, now: datetime) -> None:
        """Fire one due schedule; a broken one is logged and checked again later.

        Each fire runs in a savepoint: whatever one schedule's row does (a
        refused insert, a bug), the others of this tick still fire. An outage
        is not the schedule's fault, and goes up to the worker's backoff.
        """
        unexpected = False
        try:
            reason = schedule.broken_reason()
            if not reason:
                with transaction.atomic(using=self.database):
                    self._fire_due(schedule, now)
                return
        except DatabaseError as error:
            if is_outage(error, self.connection):
                raise
            reason = f"the database refused its job: {error}"
        except Exception as error:  # a bug: its traceback is logged, once per check
            reason, unexpected = f"{type(error).__name__}: {error}", True
        schedule.next_fire_at = now + timedelta(seconds=BROKEN_RECHECK)
        schedule.save(
            using=self.database, update_fields=["next_fire_at", "updated_at"], recompute=False
        )
        logger.error(
            "%s",
            Fields(
                schedule=schedule.name,
                event="broken, not fired",
                reason=" ".join(reason.split()),
                fix="in the admin, or its periodic()",
                checked_again_in=f"{BROKEN_RECHECK:g}s",
            ),
            exc_info=unexpected,
        )

    def _fire_due(self, schedule: Schedule, now: datetime) -> None:
        """Enqueue the fire times of one due schedule that its missed-fire policy wants."""
        times = self._times_to_fire(schedule, now)
        task = registry.lookup(schedule.task_path)
        if task is None:
            raise LookupError(registry.not_registered_message(schedule.task_path))
        if times:
            self._enqueue(schedule, task, times)
        schedule.last_fire_at = times[-1] if times else schedule.last_fire_at
        schedule.next_fire_at = cron.next_fire_time(schedule.cron, schedule.timezone, now)
        schedule.save(
            using=self.database,
            update_fields=["last_fire_at", "next_fire_at", "updated_at"],
            recompute=False,
        )

    @staticmethod
    def _times_to_fire(schedule: Schedule, now: datetime) -> list[datetime]:
        """Which of the fire times in ``[next_fire_at, now]`` to enqueue.

        A fire time seen more than ``MISSED_AFTER`` seconds late was missed
        (every scheduler was down). LATEST fires the most recent one only,
        SKIP fires none of those, ALL fires each (the latest ``MAX_CATCH_UP``).
        """
        assert schedule.next_fire_at is not None
        after = schedule.next_fire_at - timedelta(microseconds=1)
        limit = MAX_CATCH_UP if schedule.missed == MissedFires.ALL else 1
        times = cron.recent_fire_times(schedule.cron, schedule.timezone, after, now, limit)
        if schedule.missed == MissedFires.SKIP:
            times = [t for t in times if (now - t).total_seconds() <= MISSED_AFTER]
        return times

    def _insert(self, schedule: Schedule, task: Any, scheduled_for: datetime | None) -> int | None:
        """Insert the job of one fire time; return its id, or None if that fire time has one.

        The schedule's arguments, the task's defaults unless the schedule
        overrides them. The partial unique index decides which fire is new
        (see ``queries.insert_jobs``); a fire outside the schedule's times
        (``scheduled_for`` None) always is.
        """
        inserted = queries.insert_jobs(
            self.connection,
            backend=task.backend,
            task_path=schedule.task_path,
            queue_name=schedule.queue_name or task.queue_name,
            priority=task.priority if schedule.priority is None else schedule.priority,
            max_attempts=getattr(task, "max_attempts", 1),
            run_after=None,
            calls=[(json.dumps(schedule.args), json.dumps(schedule.kwargs))],
            schedule_id=schedule.pk,
            scheduled_for=scheduled_for,
        )
        return inserted[0][0] if inserted else None

    def _enqueue(self, schedule: Schedule, task: Any, times: list[datetime]) -> None:
        """Enqueue a job per fire time; log only those inserted (another scheduler may win)."""
        for moment in times:
            job_id = self._insert(schedule, task, moment)
            if job_id is None:
                logger.debug(
                    "%s",
                    Fields(
                        schedule=schedule.name,
                        fire_time=moment.isoformat(),
                        skipped="already enqueued by another scheduler",
                    ),
                )
                continue
            logger.info(
                "%s",
                Fields(
                    schedule=schedule.name,
                    task=task.module_path,
                    fire_time=moment.isoformat(),
                    job=job_id,
                ),
            )

    def fire_now(self, schedule: Schedule) -> Any:
        """Enqueue a schedule's task at once, outside its cron times (``schedules --fire``).

        Raises ``LookupError`` for a task that is not registered, ``InvalidSchedule``
        for any other reason the schedule is broken; nothing is enqueued then.
        """
        task = registry.lookup(schedule.task_path)
        if task is None:
            raise LookupError(registry.not_registered_message(schedule.task_path))
        reason = schedule.broken_reason()
        if reason:
            raise InvalidSchedule(f"cannot be fired until it is fixed: {reason}")
        job_id = self._insert(schedule, task, scheduled_for=None)
        assert job_id is not None  # no fire time: the unique index never holds it
        return Job.objects.using(self.database).get(pk=job_id)
