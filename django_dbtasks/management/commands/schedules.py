"""``manage.py schedules``: list cron schedules with their next fire times, or fire one now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtasks import registry
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.models import Schedule
from django_dbtasks.scheduler import Scheduler


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
            "--next", type=int, default=3, metavar="N", help="Fire times to show (default 3)."
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = database_backend(options["backend"]).config.DATABASE
        registry.autodiscover()
        scheduler = Scheduler(database)
        scheduler.sync_declared()
        schedules = Schedule.objects.using(database)
        if options["fire"]:
            schedule = schedules.filter(name=options["fire"]).first()
            if schedule is None:
                names = ", ".join(schedules.values_list("name", flat=True)) or "none"
                raise CommandError(f"No schedule named {options['fire']!r} (schedules: {names}).")
            try:
                job = scheduler.fire_now(schedule)
            except LookupError as error:
                raise CommandError(str(error))
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
            if schedule.enabled:
                times = ", ".join(t.isoformat() for t in schedule.upcoming(options["next"]))
                self.stdout.write(f"    next: {times}")
            if schedule.last_fire_at:
                self.stdout.write(f"    last fire: {schedule.last_fire_at.isoformat()}")
