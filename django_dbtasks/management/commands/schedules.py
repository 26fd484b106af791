"""``manage.py schedules``: list cron schedules (read-only) and their next fire times."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtasks import registry
from django_dbtasks.durations import whole_number
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.models import Schedule
from django_dbtasks.scheduler import InvalidSchedule, Scheduler, declared_names

#: Most fire times --next shows per schedule (each is computed, for every schedule).
MAX_NEXT = 100


def next_count(value: str) -> int:
    return whole_number(value, MAX_NEXT, "for more, see a schedule's page in the admin")


class Command(BaseCommand):
    help = (
        "List the cron schedules (from the admin and from periodic() in code) with a "
        "readable description and their next fire times, without writing anything (code "
        "schedules are written when a worker starts; differences are shown as pending); "
        "--fire NAME enqueues a schedule's task now, outside its times."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fire", metavar="NAME", help="Enqueue this schedule's task now, once."
        )
        parser.add_argument(
            "--next",
            type=next_count,
            default=3,
            metavar="N",
            help=f"Fire times to show per schedule, 1 to {MAX_NEXT} (default 3).",
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = database_backend(options["backend"]).config.DATABASE
        registry.autodiscover()
        scheduler = Scheduler(database)
        if options["fire"] is not None:
            self._fire(scheduler, options["fire"])
            return
        # Read-only: the table as the next worker start's sync will leave it.
        previews = scheduler.preview_sync()
        if not previews:
            self.stdout.write("No schedules. Declare one with periodic() or add one in the admin.")
            return
        for schedule, pending in previews:
            self._describe(schedule, pending, options["next"])

    def _fire(self, scheduler: Scheduler, name: str) -> None:
        schedules = Schedule.objects.using(scheduler.database)
        known = {*schedules.values_list("name", flat=True), *declared_names()}
        names = ", ".join(sorted(known)) or "none"
        if not name:
            raise CommandError(
                f"--fire needs the name of a schedule (schedules: {names}); run "
                "'manage.py schedules' without --fire to list them."
            )
        schedule = schedules.filter(name=name).first()
        if schedule is None:
            unsynced = " It is declared in code but not in the table yet: start a worker "
            hint = unsynced + "(runtasks) once to write it." if name in declared_names() else ""
            raise CommandError(f"No schedule named {name!r} (schedules: {names}).{hint}")
        try:
            job = scheduler.fire_now(schedule)
        except (LookupError, InvalidSchedule) as error:
            raise CommandError(f"Schedule {schedule.name!r}: {error}") from None
        self.stdout.write(f"Enqueued job {job.pk} ({schedule.task_path}) for {schedule.name}.")

    def _describe(self, schedule: Schedule, pending: str, count: int) -> None:
        state = "enabled" if schedule.enabled else "DISABLED"
        origin = "code" if schedule.from_code else "admin"
        self.stdout.write(
            f"{schedule.name}  [{state}, from {origin}]  {schedule.task_path}\n"
            f"    {schedule.cron!r} in {schedule.timezone}: {schedule.describe()}"
        )
        if pending:
            self.stdout.write(f"    pending: {pending}; the next worker start writes it")
        if schedule.disabled_by_operator:
            who = schedule.disabled_by or "an operator"
            assert schedule.disabled_at is not None
            self.stdout.write(
                f"    disabled in the admin by {who} at {schedule.disabled_at.isoformat()}; "
                "stays off until enabled there"
            )
        reason = schedule.broken_reason()
        if reason:
            # Listed, not raised: one broken row must not hide the others.
            self.stdout.write(f"    BROKEN, not fired until fixed: {reason}")
        elif schedule.enabled:
            times = ", ".join(t.isoformat() for t in schedule.upcoming(count))
            self.stdout.write(f"    next: {times}")
        if schedule.last_fire_at:
            self.stdout.write(f"    last fire: {schedule.last_fire_at.isoformat()}")
