"""``manage.py prunetasks``: delete old finished jobs, in small batches."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections, transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now

from django_dbtasks import queries
from django_dbtasks.conf import shown
from django_dbtasks.durations import parse_duration, whole_number
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.models import FINISHED_STATUSES, Job


def finished_status(value: str) -> str:
    status = value.upper()
    if status not in FINISHED_STATUSES:
        raise argparse.ArgumentTypeError(
            f"{shown(value)} is not a finished status; choose from {', '.join(FINISHED_STATUSES)}"
        )
    return status


#: Most rows one DELETE takes: each batch is a transaction holding its rows locked,
#: and the command loops until none is left, so a bigger batch saves nothing.
MAX_BATCH_SIZE = 100_000


def batch_size(value: str) -> int:
    return whole_number(
        value, MAX_BATCH_SIZE, "each batch holds its rows locked; the command loops anyway"
    )


class Command(BaseCommand):
    help = (
        "Delete finished jobs (SUCCESSFUL, FAILED, CANCELLED) whose finished time is older "
        "than --older-than, in batches so the job table is never locked for long. Ready and "
        "running jobs are never touched. Run it periodically, e.g. daily from cron: "
        "'manage.py prunetasks --older-than 7d' and 'manage.py prunetasks --status FAILED "
        "--older-than 30d' to keep failures longer."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=parse_duration,
            required=True,
            metavar="AGE",
            help="Delete jobs finished longer ago than this: seconds or 30m, 12h, 7d, 2w "
            "(at most 36500d).",
        )
        parser.add_argument(
            "--status",
            action="append",
            type=finished_status,
            dest="statuses",
            metavar="STATUS",
            help="Only jobs with this status (repeatable). Default: all finished statuses.",
        )
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=1000,
            metavar="N",
            help=f"Rows deleted per statement and transaction, 1 to {MAX_BATCH_SIZE}. "
            "Default: 1000.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print how many jobs of each status would be deleted, and delete nothing.",
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = database_backend(options["backend"]).config.DATABASE
        statuses = list(dict.fromkeys(options["statuses"] or FINISHED_STATUSES))
        if options["dry_run"]:
            self._dry_run(database, statuses, options["older_than"])
            return
        connection = connections[database]
        total = 0
        while True:
            with transaction.atomic(using=database):
                deleted = queries.prune(
                    connection, statuses, options["older_than"], options["batch_size"]
                )
            total += deleted
            if deleted < options["batch_size"]:
                break
        self.stdout.write(f"Deleted {total} finished job(s) ({', '.join(statuses)}).")

    def _dry_run(self, database: str, statuses: list[str], older_than: float) -> None:
        # The database's clock, as the DELETE's: the same jobs it would take now.
        cutoff = ExpressionWrapper(
            Now() - Value(timedelta(seconds=older_than)), output_field=DateTimeField()
        )
        counts = dict(
            Job.objects.using(database)
            .filter(status__in=statuses, finished_at__lt=cutoff)
            .order_by()
            .values("status")
            .annotate(count=Count("id"))
            .values_list("status", "count")
        )
        each = ", ".join(f"{status}: {counts.get(status, 0)}" for status in statuses)
        self.stdout.write(
            f"Would delete {sum(counts.values())} finished job(s) ({each}); "
            "--dry-run deleted nothing."
        )
