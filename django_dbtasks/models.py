"""The tables: one row per job run and one per worker process.

The claim query (see ``queries.py``) is the hot path, so ``Job`` carries a
partial index made for it: only READY rows, per queue and in claim order
(``backend, queue_name, priority DESC, run_after, id``). Finished rows,
however many, are not in that index, so the claim cost does not grow with
history; another queue's backlog and jobs not due yet are not read either.
``docs/internals.md`` has the claim's plans on tables of 1,000,000 rows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone as django_timezone
from django.utils.translation import gettext_lazy as _

from . import cron, registry
from .compat import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from .errors import LatestError
from .exceptions import ArgumentNotSerializable
from .serialization import MAX_NESTING, deeper_than, encode_arguments


class JobStatus(models.TextChoices):
    """A job's place in its life; the first four are Django's own statuses."""

    READY = "READY", _("Ready")
    RUNNING = "RUNNING", _("Running")
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")


FINISHED_STATUSES = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)


class JobQuerySet(models.QuerySet["Job"]):
    def ready(self) -> JobQuerySet:
        return self.filter(status=JobStatus.READY)

    def running(self) -> JobQuerySet:
        return self.filter(status=JobStatus.RUNNING)

    def successful(self) -> JobQuerySet:
        return self.filter(status=JobStatus.SUCCESSFUL)

    def failed(self) -> JobQuerySet:
        return self.filter(status=JobStatus.FAILED)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)


class Job(models.Model):
    """One enqueued run of a task, from READY to a finished status."""

    id = models.BigAutoField(primary_key=True)
    task_path = models.CharField(max_length=255, help_text=_("Dotted path of the task function."))
    # The TASKS alias that enqueued the job: aliases sharing one database never see,
    # claim or run each other's jobs.
    backend = models.CharField(
        max_length=64,
        default="default",
        db_default="default",  # rows written by SQL or other tools belong to "default"
        help_text=_("The TASKS alias the job belongs to."),
    )
    queue_name = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.READY)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)

    # Times come from the database's clock (db_default), never a worker's.
    enqueued_at = models.DateTimeField(db_default=Now())
    run_after = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveIntegerField(
        default=0, help_text=_("Attempts used so far; a worker crash does not use one.")
    )
    max_attempts = models.PositiveIntegerField(default=1)
    crashes = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Runs in a row that ended with their worker dying; a job with one is run "
            "alone in its worker until it finishes."
        ),
    )
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(
        default=list, blank=True, help_text=_("One entry per failed attempt, oldest first.")
    )
    worker_ids = models.JSONField(
        default=list, blank=True, help_text=_("The worker of each run, in order.")
    )

    # What the running attempt last reported (``report_progress``); cleared by each claim.
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True, default="", db_default="")

    # Set for jobs a cron schedule produced: one job per schedule and fire time,
    # enforced by a unique constraint, however many schedulers run.
    schedule = models.ForeignKey(
        "Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,  # the partial unique index below serves lookups by schedule
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)

    # Set for tasks declared ``unique``: at most one READY or RUNNING job per
    # (task_path, unique_key), enforced by a partial unique index. NULL (not "")
    # for other jobs, so they stay out of that index.
    unique_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    # The current claim: who holds the job, the fencing token every later
    # write must present, and until when the claim holds without a heartbeat.
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    # The trace context of the code that enqueued the job (W3C ``traceparent`` and
    # ``tracestate``, or whatever the configured propagator writes), so that each run's
    # span joins that trace; NULL when nothing was being traced (see ``tracing.py``).
    trace_context = models.JSONField(null=True, blank=True, editable=False)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The claim reads it per queue and per priority (see queries.CLAIM_POSTGRES):
            # another queue's backlog and jobs not due yet are never walked.
            models.Index(
                "backend",
                "queue_name",
                models.F("priority").desc(),
                "run_after",
                "id",
                name="dbtasks_job_ready",
                condition=models.Q(status="READY"),
            ),
            # Suspects: jobs whose worker died while holding them (rare, so the index
            # is tiny). Workers look for them at each heartbeat and run each alone.
            models.Index(
                models.F("priority").desc(),
                "run_after",
                "id",
                name="dbtasks_job_suspect",
                condition=models.Q(status="READY", crashes__gt=0),
            ),
            models.Index(
                "lease_expires_at",
                name="dbtasks_job_running_lease",
                condition=models.Q(status="RUNNING"),
            ),
            # Pruning walks finished rows by age; READY inserts never touch this index.
            models.Index(
                "finished_at",
                name="dbtasks_job_finished",
                condition=models.Q(status__in=["SUCCESSFUL", "FAILED", "CANCELLED"]),
            ),
            # The rows operators look for and act on (the admin's status filter, retry,
            # the overview's totals): few, and rarely written, so the index stays small.
            models.Index(
                "status",
                "id",
                name="dbtasks_job_failed",
                condition=models.Q(status__in=["FAILED", "CANCELLED"]),
            ),
            # The admin's error filter and its choices: jobs by their latest error's class.
            # Only rows with an error are in it (a job that never failed adds nothing,
            # so enqueues and claims of such jobs never write to it).
            models.Index(
                LatestError("exception_class_path"),
                models.F("id"),
                name="dbtasks_job_latest_error",
                condition=models.Q(
                    models.lookups.IsNull(LatestError("exception_class_path"), False)
                ),
            ),
        ]
        constraints = [
            # Partial, like every index here but the primary key: each UPDATE of a
            # job (claim, completion) writes a new entry in every index the row is
            # in, so indexes that hold only the rare scheduled jobs cost nothing.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(schedule__isnull=False),
                name="dbtasks_job_one_per_fire_time",
            ),
            models.UniqueConstraint(
                fields=["task_path", "unique_key"],
                condition=models.Q(status__in=["READY", "RUNNING"], unique_key__isnull=False),
                name="dbtasks_job_unique_unfinished",
            ),
            models.CheckConstraint(
                condition=models.Q(priority__gte=TASK_MIN_PRIORITY)
                & models.Q(priority__lte=TASK_MAX_PRIORITY),
                name="dbtasks_job_priority_range",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values),
                name="dbtasks_job_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def error_entries(self) -> list[dict[str, Any]]:
        return list(self.errors or [])


class WorkerState(models.TextChoices):
    """What the admin says of a worker; only a row's heartbeat and ``stopped_at`` decide it."""

    LIVE = "live", _("Live")
    STOPPED = "stopped", _("Stopped")
    DEAD = "dead", _("Dead (no heartbeat)")


class WorkerQuerySet(models.QuerySet["Worker"]):
    """Workers by state: live, dead (silent for ``seconds``) or stopped (exited cleanly).

    One clock: the database's. A worker writes its heartbeat with the
    database's now (``queries.heartbeat``), and the rescue of a dead worker's
    jobs compares their leases with that same now. Workers on several hosts,
    and the web server that shows the admin, have skewed clocks: measuring a
    heartbeat's age with any of them would call a live worker dead, or a dead
    one live, by the skew, and disagree with the rescue. So the cut-off is
    computed in SQL, in the statement that filters. ``seconds`` is the caller's
    (the admin passes the longest ``LEASE``: see ``admin.setup.liveness_seconds``).
    """

    def live(self, seconds: float) -> WorkerQuerySet:
        """Not stopped, and a heartbeat at most ``seconds`` old."""
        return self.filter(
            stopped_at__isnull=True, last_heartbeat_at__gte=_heartbeat_cutoff(seconds)
        )

    def dead(self, seconds: float) -> WorkerQuerySet:
        """Not stopped, and no heartbeat for more than ``seconds``: killed, frozen or cut off."""
        return self.filter(
            stopped_at__isnull=True, last_heartbeat_at__lt=_heartbeat_cutoff(seconds)
        )

    def stopped(self) -> WorkerQuerySet:
        """Exited cleanly (``stopped_at`` set), however old its last heartbeat."""
        return self.filter(stopped_at__isnull=False)

    def with_state(self, seconds: float) -> WorkerQuerySet:
        """Each worker annotated with ``state`` (a ``WorkerState``), so a list can sort on it.

        The same rules as ``live()``, ``dead()`` and ``stopped()``, in one CASE.
        """
        return self.annotate(
            state=models.Case(
                models.When(stopped_at__isnull=False, then=models.Value(WorkerState.STOPPED)),
                models.When(
                    last_heartbeat_at__gte=_heartbeat_cutoff(seconds),
                    then=models.Value(WorkerState.LIVE),
                ),
                default=models.Value(WorkerState.DEAD),
                output_field=models.CharField(),
            )
        )


def _heartbeat_cutoff(seconds: float) -> models.Expression:
    """SQL for the database's now minus ``seconds``: older heartbeats are a dead worker's."""
    return models.ExpressionWrapper(
        Now() - models.Value(timedelta(seconds=seconds)), output_field=models.DateTimeField()
    )


class Worker(models.Model):
    """One ``runtasks`` process, live or recently dead, known by its heartbeat."""

    id = models.CharField(max_length=64, primary_key=True)
    # The TASKS alias whose jobs it runs (``runtasks --backend``).
    backend = models.CharField(max_length=64, default="default", db_default="default")
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(db_default=Now())
    last_heartbeat_at = models.DateTimeField(db_default=Now())
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.id})"


class Tally(models.Model):
    """A running total of what happened to jobs, per alias, queue, task and kind; never lowered.

    Workers add what they did since their last heartbeat (``queries.add_tallies``:
    one upsert per heartbeat, whatever the number of jobs); a cancel adds its own.
    The Prometheus collector (``metrics``) reads them as counters and histograms:
    they only grow, whichever worker wrote them and whatever ``prunetasks``
    deletes, so the counters never go down. ``metric`` is "outcome" (``key``: the
    outcome) or a histogram, "run_seconds" or "wait_seconds" (``key``: a bucket's
    upper bound, or "sum"); ``task_path`` is "" for per-queue series.
    """

    id = models.BigAutoField(primary_key=True)
    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=64)
    task_path = models.CharField(max_length=255, blank=True)
    metric = models.CharField(max_length=32)
    key = models.CharField(max_length=32)
    value = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "queue_name", "task_path", "metric", "key"],
                name="dbtasks_tally_one_per_series",
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.key}] {self.backend}/{self.queue_name} {self.task_path}"


class MissedFires(models.TextChoices):
    """What a schedule does about fire times that passed while no scheduler ran."""

    LATEST = "LATEST", _("Fire once, for the most recent missed time")
    SKIP = "SKIP", _("Skip them; fire at the next time only")
    ALL = "ALL", _("Fire each missed time (at most 100 at once)")


class UnreadableJSON(str):
    """Stored JSON text that Python cannot read, kept as text so that its row still loads."""

    reason = ""


class StoredJSONDecoder(json.JSONDecoder):
    """Decode a schedule's stored ``args``/``kwargs``; never raise.

    SQL can store JSON that Python cannot read back: a number of 5,000 digits
    (past ``sys.get_int_max_str_digits()``), nesting deeper than the recursion
    limit. Raising here would break every query that loads the row (the
    scheduler's tick among them); the text comes back as ``UnreadableJSON``
    instead, which ``Schedule.problems()`` reports.
    """

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().decode(s, *args, **kwargs)
        except (ValueError, RecursionError) as error:
            text = UnreadableJSON(s)
            text.reason = str(error).split(":")[0]
            return text


def _default_timezone() -> str:
    return str(getattr(settings, "TIME_ZONE", None) or "UTC")


class Schedule(models.Model):
    """A cron schedule that enqueues a registered task at each fire time."""

    name = models.CharField(max_length=200, unique=True)
    task_path = models.CharField(max_length=255, help_text=_("A registered task."))
    cron = models.CharField(
        max_length=100,
        help_text=_("5 fields, an optional 6th for seconds, or @hourly/@daily/@weekly/..."),
    )
    timezone = models.CharField(max_length=64, default=_default_timezone)
    args = models.JSONField(default=list, blank=True, decoder=StoredJSONDecoder)
    kwargs = models.JSONField(default=dict, blank=True, decoder=StoredJSONDecoder)
    queue_name = models.CharField(
        max_length=64, blank=True, default="", help_text=_("Blank: the task's queue.")
    )
    priority = models.SmallIntegerField(
        null=True, blank=True, help_text=_("Blank: the task's priority.")
    )
    enabled = models.BooleanField(default=True)
    # When (and by whom) an operator turned it off: set, it stays off across worker
    # starts even if code declares it; null, code may turn a code schedule on again.
    disabled_by = models.CharField(
        max_length=150,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text=_("The admin user who disabled it (kept off until enabled in the admin)."),
    )
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    missed = models.CharField(max_length=8, choices=MissedFires.choices, default=MissedFires.LATEST)
    from_code = models.BooleanField(
        default=False, editable=False, help_text=_("Declared with periodic() in code.")
    )
    last_fire_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_fire_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(
                "next_fire_at", name="dbtasks_schedule_due", condition=models.Q(enabled=True)
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron})"

    def save(self, *args: Any, recompute: bool = True, **kwargs: Any) -> None:
        """Recompute the next fire time, so an edited expression applies from its next time.

        The scheduler sets ``next_fire_at`` itself (from the database's clock)
        and passes ``recompute=False``.
        """
        if recompute:
            try:
                after = max(filter(None, [self.last_fire_at, django_timezone.now()]))
                self.next_fire_at = cron.next_fire_time(self.cron, self.timezone, after)
            except cron.InvalidCron:
                self.next_fire_at = None  # full_clean() explains; an invalid row never fires
            update_fields = kwargs.get("update_fields")
            if update_fields is not None and "next_fire_at" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "next_fire_at"]
        super().save(*args, **kwargs)

    @property
    def disabled_by_operator(self) -> bool:
        """Turned off by a person (in the admin), so syncs from code leave it off."""
        return not self.enabled and self.disabled_at is not None

    def set_enabled(self, enabled: bool, by: str = "", using: str | None = None) -> bool:
        """Turn the schedule on or off for an operator; return whether it changed.

        Off records who and when, so ``sync_declared()`` never turns it on again;
        on clears that and (``save()``) computes the next fire time from now.
        """
        if self.enabled if enabled else self.disabled_by_operator:
            return False  # already so (an "off" because code dropped it becomes an operator's)
        self.enabled = enabled
        self.disabled_by = "" if enabled else by
        self.disabled_at = None if enabled else django_timezone.now()
        self.save(
            using=using, update_fields=["enabled", "disabled_by", "disabled_at", "updated_at"]
        )
        return True

    def clean_fields(self, exclude: Any = None) -> None:
        """Django's checks per field, but deep ``args``/``kwargs`` are left to ``clean()``.

        ``JSONField.validate()`` encodes the value recursively, and nesting deep
        enough hits Python's recursion limit there; ``problems()`` names it instead.
        """
        deep = [
            name for name in ("args", "kwargs") if deeper_than(getattr(self, name), MAX_NESTING)
        ]
        super().clean_fields(exclude=[*(exclude or []), *deep])

    def clean(self) -> None:
        problems = self.problems()
        if problems:
            raise ValidationError(problems)

    def problems(self, task: Any = None) -> dict[str, str]:
        """What would make this schedule fail when it fires, by field (empty: nothing).

        ``clean()`` refuses these; the scheduler, the admin and ``manage.py
        schedules`` check them again on stored rows, which SQL or a tzdata update
        may have broken since. ``task`` replaces the registry lookup (``periodic()``
        runs while task modules are still being imported). No database query.
        """
        problems: dict[str, str] = {}
        timezone = "UTC"
        try:
            cron.zone(self.timezone)
            timezone = self.timezone
        except cron.InvalidCron as error:
            problems["timezone"] = str(error)
        try:
            cron.validate(self.cron, timezone)
        except cron.InvalidCron as error:
            problems["cron"] = str(error)
        if self.missed not in MissedFires.values:
            problems["missed"] = (
                f"{self.missed!r} is not a missed-fire policy: use one of "
                f"{', '.join(MissedFires.values)}."
            )
        if self.priority is not None and not (
            TASK_MIN_PRIORITY <= self.priority <= TASK_MAX_PRIORITY
        ):
            problems["priority"] = (
                f"{self.priority} is not a task priority: use a whole number from "
                f"{TASK_MIN_PRIORITY} to {TASK_MAX_PRIORITY} (higher runs first), or leave "
                "it blank for the task's own."
            )
        problems.update(_argument_problems(self.task_path, self.args, self.kwargs))
        task = task if task is not None else registry.lookup(self.task_path)
        if task is None:
            known = ", ".join(registry.registered_paths()[:10]) or "none yet"
            problems["task_path"] = (
                f"{self.task_path!r} is not a registered task: schedules can only run "
                f"functions decorated with @task (registered: {known})."
            )
            return problems
        problems.update(_queue_problems(task, self.queue_name))
        return problems

    def broken_reason(self) -> str:
        """``problems()`` in one line, for logs and lists ("" when there are none)."""
        return "; ".join(f"{field}: {message}" for field, message in self.problems().items())

    def upcoming(self, count: int = 5) -> list[Any]:
        """The next ``count`` fire times (UTC), for people reading the schedule."""
        return cron.fire_times(self.cron, self.timezone, django_timezone.now(), limit=count)

    def describe(self) -> str:
        return cron.describe(self.cron)


def _json_kind(value: Any) -> str:
    """How JSON would name ``value`` ("null", "a string", ...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__qualname__}"


def _shape_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be a schedule's ``args`` (a list) or ``kwargs`` (an object)."""
    if isinstance(value, UnreadableJSON):
        kind = "list" if name == "args" else "object"
        return (
            f"{name} as stored cannot be read by Python ({value.reason}): a number too long "
            f"or nesting too deep; write them again, as a JSON {kind}."
        )
    if name == "args" and not isinstance(value, list):
        return (
            'args must be a JSON list of positional arguments, such as [1, "report"] '
            f"([] for none), not {_json_kind(value)}."
        )
    if name == "kwargs" and not isinstance(value, dict):
        return (
            'kwargs must be a JSON object of keyword arguments, such as {"days": 30} '
            f"({{}} for none), not {_json_kind(value)}."
        )
    odd = [key for key in value if not isinstance(key, str)] if name == "kwargs" else []
    if odd:
        return (
            "kwargs keys must be strings, the names of the task's arguments; "
            f"{odd[0]!r} is {_json_kind(odd[0])}."
        )
    return None


def _argument_problems(task_path: str, args: Any, kwargs: Any) -> dict[str, str]:
    """A schedule's ``args``/``kwargs`` against the rules every enqueued job obeys."""
    problems: dict[str, str] = {}
    for name, value, call in (("args", args, (args, {})), ("kwargs", kwargs, ([], kwargs))):
        problem = _shape_problem(name, value)
        if problem is None:
            try:
                encode_arguments(task_path, *call)
            except ArgumentNotSerializable as error:
                problem = str(error)
        if problem is not None:
            problems[name] = problem
    return problems


def _queue_problems(task: Any, queue_name: str) -> dict[str, str]:
    """A queue the task's backend does not serve would hold the schedule's jobs for ever."""
    queues = getattr(task.get_backend(), "queues", None)
    if not queue_name or not queues or queue_name in queues:
        return {}
    return {
        "queue_name": (
            f"{queue_name!r} is not a queue of the task's backend {task.backend!r} (its "
            f"QUEUES: {', '.join(sorted(queues))}): use one of those, or leave it blank for "
            f"the task's own queue ({task.queue_name!r})."
        )
    }
