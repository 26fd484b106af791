"""``manage.py prunetasks``: delete old finished jobs, in small batches."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections, transaction

from django_dbtasks import queries
from django_dbtasks.durations import parse_duration
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.models import FINISHED_STATUSES


def finished_status(value: str) -> str:
    status = value.upper()
    if status not in FINISHED_STATUSES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a finished status; choose from {', '.join(FINISHED_STATUSES)}"
        )
    return status


def batch_size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return int(value)


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
            help="Delete jobs finished longer ago than this: seconds or 30m, 12h, 7d, 2w.",
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
            help="Rows deleted per statement and transaction. Default: 1000.",
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = database_backend(options["backend"]).config.DATABASE
        statuses = options["statuses"] or list(FINISHED_STATUSES)
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
