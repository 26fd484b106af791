"""``manage.py runtasks``: the worker process. Thin: parse, validate, hand over to ``Worker``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.management.backends import add_backend_argument, database_backend
from django_dbtasks.reload import run_with_reload
from django_dbtasks.worker import DatabaseUnavailable, Worker, WorkerSettings


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number")
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds")
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {number:g}")
    return number


class Command(BaseCommand):
    help = (
        "Run a worker: claim ready jobs from the database and run them, until stopped. "
        "SIGTERM or Ctrl-C stops taking jobs and lets running ones finish within the "
        "grace period; a second signal exits at once (unfinished jobs run again later)."
    )
    # System checks run in handle(), after the database is known to be reachable:
    # some checks query it, and "connection refused" deserves a clear message.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Only take jobs from this queue (repeatable). Default: every queue in "
            "the backend's QUEUES.",
        )
        parser.add_argument(
            "--concurrency",
            "-c",
            type=positive_int,
            default=1,
            metavar="N",
            help="How many jobs run at once, each in its own child process. Default: 1.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run the jobs that are ready now, then exit 0 when none is left.",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_false",
            dest="scheduler",
            help="Do not run the cron scheduler in this worker. By default every worker "
            "runs it; each fire time still produces exactly one job.",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Development: restart the worker when a Python file of the project "
            "changes (Django's autoreloader, as runserver). Running jobs finish first.",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=positive_int,
            default=None,
            metavar="N",
            help="Replace a pool process with a fresh one after it has run N jobs (as "
            "Celery's option of that name): a leak in task code cannot grow for ever. "
            "Default: never.",
        )
        parser.add_argument(
            "--max-memory-per-child",
            type=positive_int,
            default=None,
            metavar="KB",
            help="Replace a pool process after the job during which its peak resident "
            "memory passed KB kilobytes (as Celery's option of that name). A running job "
            "is never stopped for it. Default: never.",
        )
        add_backend_argument(parser)
        parser.add_argument(
            "--grace-period",
            type=non_negative_float,
            default=None,
            metavar="SECONDS",
            help="On SIGTERM, how long running jobs may take to finish before they are "
            "stopped and put back to READY. Default: the GRACE_PERIOD option (30).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = database_backend(options["backend"])
        queues = self._queues(backend, options["queues"])
        self._configure_logging(options["verbosity"])
        worker = Worker(
            backend,
            WorkerSettings(
                queues=queues,
                concurrency=options["concurrency"],
                burst=options["burst"],
                grace_period=options["grace_period"],
                scheduler=options["scheduler"],
                max_tasks_per_child=options["max_tasks_per_child"],
                max_memory_per_child=options["max_memory_per_child"],
            ),
        )
        try:
            worker.check_database()
            self.check()
            code = run_with_reload(worker.run) if options["reload"] else worker.run()
        except DatabaseUnavailable as error:
            raise CommandError(str(error))
        if code:
            sys.exit(code)

    @staticmethod
    def _queues(backend: DatabaseBackend, requested: list[str] | None) -> list[str]:
        if not requested:
            return sorted(backend.queues)
        unknown = [name for name in requested if name not in backend.queues]
        if unknown:
            raise CommandError(
                f"Unknown queue(s) {', '.join(map(repr, unknown))}: TASKS[{backend.alias!r}]"
                f"['QUEUES'] has {', '.join(map(repr, sorted(backend.queues)))}."
            )
        return list(dict.fromkeys(requested))

    @staticmethod
    def _configure_logging(verbosity: int) -> None:
        """Give the worker's logger a console handler unless LOGGING already did."""
        worker_logger = logging.getLogger("django_dbtasks")
        if not worker_logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            worker_logger.addHandler(handler)
        level = logging.WARNING if verbosity == 0 else logging.INFO
        if verbosity >= 3:
            level = logging.DEBUG
        worker_logger.setLevel(level)
