"""``manage.py schedules``: list cron schedules with their next fire times, or fire one now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtasks import registry
from django_dbtasks.durations import whole_number
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.models import Schedule
from django_dbtasks.scheduler import InvalidSchedule, Scheduler

#: Most fire times --next shows per schedule (each is computed, for every schedule).
MAX_NEXT = 100


def next_count(value: str) -> int:
    return whole_number(value, MAX_NEXT, "for more, see a schedule's page in the admin")


class Command(BaseCommand):
    help = (
        "List the cron schedules (from the admin and from periodic() in code) with a "
        "readable description and their next fire times; --fire NAME enqueues a "
        "schedule's task now, outside its times."
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
        scheduler.sync_declared()
        schedules = Schedule.objects.using(database)
        if options["fire"] is not None:
            if not options["fire"]:
                names = ", ".join(schedules.values_list("name", flat=True)) or "none"
                raise CommandError(
                    f"--fire needs the name of a schedule (schedules: {names}); run "
                    "'manage.py schedules' without --fire to list them."
                )
            schedule = schedules.filter(name=options["fire"]).first()
            if schedule is None:
                names = ", ".join(schedules.values_list("name", flat=True)) or "none"
                raise CommandError(f"No schedule named {options['fire']!r} (schedules: {names}).")
            try:
                job = scheduler.fire_now(schedule)
            except (LookupError, InvalidSchedule) as error:
                raise CommandError(f"Schedule {schedule.name!r}: {error}") from None
            self.stdout.write(f"Enqueued job {job.pk} ({schedule.task_path}) for {schedule.name}.")
            return
        if not schedules.exists():
            self.stdout.write("No schedules. Declare one with periodic() or add one in the admin.")
            return
        for schedule in schedules:
            state = "enabled" if schedule.enabled else "DISABLED"
            origin = "code" if schedule.from_code else "admin"
            self.stdout.write(
                f"{schedule.name}  [{state}, from {origin}]  {schedule.task_path}\n"
                f"    {schedule.cron!r} in {schedule.timezone}: {schedule.describe()}"
            )
            reason = schedule.broken_reason()
            if reason:
                # Listed, not raised: one broken row must not hide the others.
                self.stdout.write(f"    BROKEN, not fired until fixed: {reason}")
            elif schedule.enabled:
                times = ", ".join(t.isoformat() for t in schedule.upcoming(options["next"]))
                self.stdout.write(f"    next: {times}")
            if schedule.last_fire_at:
                self.stdout.write(f"    last fire: {schedule.last_fire_at.isoformat()}")
