"""``manage.py runtasks``: the worker process. Thin: parse, validate, hand over to ``Worker``."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtasks.conf import MAXIMUMS
from django_dbtasks.durations import seconds_at_most, whole_number
from django_dbtasks.management.backends import (
    add_backend_argument,
    chosen_queues,
    database_backend,
)
from django_dbtasks.reload import run_with_reload
from django_dbtasks.worker import DatabaseUnavailable, WorkerLoop, WorkerOptions

#: Most pool processes in one worker. Each is a forked copy of the worker (tens of
#: MB once it has run a job, about 10 ms to start) and costs the main process three
#: file descriptors, so 256 stays within the common limit of 1024 open files and
#: starts in a few seconds. More jobs at once is more workers, here or elsewhere.
MAX_CONCURRENCY = 256
#: Largest --max-tasks-per-child: a billion jobs is "never", which is leaving it out.
MAX_TASKS_PER_CHILD = 10**9
#: Largest --max-memory-per-child, in KB: 1 TiB.
MAX_MEMORY_PER_CHILD = 1024**3


def concurrency(value: str) -> int:
    return whole_number(
        value,
        MAX_CONCURRENCY,
        "each pool process is a forked copy of the worker; for more jobs at once, run more workers",
    )


def tasks_per_child(value: str) -> int:
    return whole_number(
        value, MAX_TASKS_PER_CHILD, "leave the option out to never replace a pool process"
    )


def memory_per_child(value: str) -> int:
    return whole_number(
        value,
        MAX_MEMORY_PER_CHILD,
        "that is 1 TiB; leave the option out to never replace a pool process",
    )


def grace_period(value: str) -> float:
    limit, _, why = MAXIMUMS["GRACE_PERIOD"]
    return seconds_at_most(value, limit, why)


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
            "the backend's QUEUES (with QUEUES empty, any queue name: every queue).",
        )
        parser.add_argument(
            "--concurrency",
            "-c",
            type=concurrency,
            default=1,
            metavar="N",
            help="How many jobs run at once, each in its own child process: 1 to "
            f"{MAX_CONCURRENCY} (for more, run more workers). Default: 1.",
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
            "changes (Django's autoreloader, as runserver). Running jobs finish first; "
            "broken code (a SyntaxError) is reported and the worker waits for the fix.",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=tasks_per_child,
            default=None,
            metavar="N",
            help="Replace a pool process with a fresh one after it has run N jobs (as "
            "Celery's option of that name): a leak in task code cannot grow for ever. "
            "Default: never.",
        )
        parser.add_argument(
            "--max-memory-per-child",
            type=memory_per_child,
            default=None,
            metavar="KB",
            help="Replace a pool process after the job during which its peak resident "
            "memory passed KB kilobytes (as Celery's option of that name). A running job "
            "is never stopped for it. Default: never.",
        )
        add_backend_argument(parser)
        parser.add_argument(
            "--grace-period",
            type=grace_period,
            default=None,
            metavar="SECONDS",
            help="On SIGTERM, how long running jobs may take to finish before they are "
            f"stopped and put back to READY: 0 to {MAXIMUMS['GRACE_PERIOD'][1]}. Default: "
            "the GRACE_PERIOD option (30).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = database_backend(options["backend"])
        queues = chosen_queues(backend, options["queues"])
        self._configure_logging(options["verbosity"])
        worker = WorkerLoop(
            backend,
            WorkerOptions(
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
