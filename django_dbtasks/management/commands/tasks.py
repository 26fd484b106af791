"""``manage.py tasks``: look at the queues from the shell (``status``, ``failed``, ``health``).

Thin: each subcommand parses its options, reads ``inspection`` (``health``
then applies ``alerts``, the overview's rules) and prints what ``reports``
writes: text for people, or with ``--json`` the shape docs/operations.md
documents. ``health`` exits as a Nagios plugin: 0 OK, 1 warning, 2
critical, 3 unknown (the job table could not be read).
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from django_dbtasks import alerts, inspection
from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.conf import DAY, MAXIMUMS
from django_dbtasks.durations import parse_duration, seconds_at_most, whole_number
from django_dbtasks.management import reports
from django_dbtasks.management.backends import (
    add_backend_argument,
    chosen_queues,
    database_backend,
)
from django_dbtasks.outages import first_line

#: Linux's largest process id (``pid_max`` at most 2**22).
MAX_PID = 2**22
#: Most groups ``failed`` lists: more than a screen is for the admin's filters.
MAX_GROUPS = 1000


def failed_since(value: str) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise argparse.ArgumentTypeError("must be more than 0, such as 1h or 7d")
    return seconds


def group_limit(value: str) -> int:
    return whole_number(value, MAX_GROUPS, "filter the admin's job list for more")


def wait_seconds(value: str) -> float:
    limit, _, why = MAXIMUMS["ALERT_WAIT_SECONDS"]
    seconds = seconds_at_most(value, limit, why.split(";")[0])
    if seconds == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds (leave it out: no limit)")
    return seconds


def heartbeat_seconds(value: str) -> float:
    seconds = seconds_at_most(value, DAY, "a heartbeat that old is a dead worker's")
    if seconds == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds, such as 30")
    return seconds


def process_id(value: str) -> int:
    return whole_number(value, MAX_PID, "no process has a larger id")


def host_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "needs a host name; give --hostname alone for this machine's"
        )
    return value.strip()


class Command(BaseCommand):
    help = (
        "Look at the task queues from the shell: 'status' (queues and workers now), "
        "'failed' (recent failures by task and exception) and 'health' (an exit code for "
        "probes and Nagios). Each takes --json. 'manage.py tasks SUBCOMMAND --help' for more."
    )
    # Read-only, and a probe runs it every few seconds: the system checks are
    # 'manage.py check's business (some open the database, which must fail as UNKNOWN).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", title="subcommands", required=True
        )
        status = commands.add_parser(
            "status",
            help="Queues (ready, due, running, failed, oldest due wait) and workers (live "
            "and dead, what each runs).",
            description="Per queue: jobs ready (due or not), due now, running and failed, "
            "the oldest due job's wait and the live workers serving it. Per worker, live "
            "or dead (no heartbeat for LEASE seconds): host, pid, concurrency, last "
            "heartbeat, and each job it runs with how long it has run.",
        )
        self._common(status)
        self._failed_arguments(
            commands.add_parser(
                "failed",
                help="Jobs failed for good lately, grouped by task and exception class, "
                "with counts and the latest message.",
                description="Jobs FAILED in the last --since, grouped by task and by the "
                "exception class of their last error, largest group first, each with the "
                "latest job's id and message. Retried attempts are not counted: only jobs "
                "that gave up (see the metrics for every attempt).",
            )
        )
        self._health_arguments(
            commands.add_parser(
                "health",
                help="Exit 0 when healthy, else 1 (warning) or 2 (critical): for liveness "
                "and readiness probes and Nagios.",
                description="Without options, checks the admin overview's rules: a queue "
                "with due jobs and no live worker (critical), an oldest due job waiting "
                "longer than ALERT_WAIT_SECONDS (warning), a worker that died in the last "
                "hour (warning). Options choose other checks instead, each critical when "
                "it fails. Prints what failed and why; exits 3 if the job table cannot be "
                "read. Example liveness probe: 'manage.py tasks health --hostname "
                "--heartbeat-within 30'.",
            )
        )

    def _failed_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            type=failed_since,
            default=DAY,
            metavar="AGE",
            help="How far back: seconds or 30m, 12h, 7d, 2w (at most 36500d). Default: 24h.",
        )
        parser.add_argument(
            "--limit",
            type=group_limit,
            default=20,
            metavar="N",
            help=f"Show the N largest groups, 1 to {MAX_GROUPS}. Default: 20.",
        )
        self._common(parser)

    def _health_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--require-workers",
            action="store_true",
            help="Every queue has at least one live worker, whether jobs wait or not.",
        )
        parser.add_argument(
            "--max-wait",
            type=wait_seconds,
            metavar="SECONDS",
            help="The oldest due job of each queue has waited less than SECONDS.",
        )
        parser.add_argument(
            "--hostname",
            nargs="?",
            const=socket.gethostname(),
            type=host_name,
            metavar="NAME",
            help="A worker on this host (NAME, default this machine's name: "
            f"{socket.gethostname()}) heartbeated within --heartbeat-within seconds.",
        )
        parser.add_argument(
            "--pid",
            type=process_id,
            metavar="PID",
            help="The worker with this process id (on --hostname, default this machine) "
            "heartbeated within --heartbeat-within seconds.",
        )
        parser.add_argument(
            "--heartbeat-within",
            type=heartbeat_seconds,
            metavar="SECONDS",
            help="For --hostname and --pid (alone: this host's worker). Default: the "
            "backend's LEASE, after which a worker counts as dead.",
        )
        self._common(parser)

    @staticmethod
    def _common(parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Only this queue (repeatable). Default: every queue.",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print JSON (its shape: docs/operations.md)."
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = database_backend(options["backend"])
        queues = chosen_queues(backend, options["queues"]) if options["queues"] else []
        if options["subcommand"] == "health":
            sys.exit(self.health(backend, queues, options))
        if options["subcommand"] == "failed":
            self.failed(backend, queues, options)
            return
        try:
            snapshot = self._snapshot(backend, queues)
        except DatabaseError as error:
            raise CommandError(unreadable(backend, error))
        if options["json"]:
            self.stdout.write(reports.as_json(reports.status_document(backend.alias, snapshot)))
        else:
            self.stdout.write(reports.status_text(backend.alias, snapshot))

    def failed(self, backend: DatabaseBackend, queues: list[str], options: dict[str, Any]) -> None:
        try:
            groups = inspection.recent_failures(
                backend.config.DATABASE, backend.alias, options["since"], options["limit"], queues
            )
        except DatabaseError as error:
            raise CommandError(unreadable(backend, error))
        if options["json"]:
            document = reports.failed_document(backend.alias, options["since"], groups)
            self.stdout.write(reports.as_json(document))
        else:
            self.stdout.write(reports.failed_text(backend.alias, options["since"], groups))

    def health(self, backend: DatabaseBackend, queues: list[str], options: dict[str, Any]) -> int:
        """Check, print the verdict, and return the exit code."""
        checks = chosen_checks(options) or DEFAULT_CHECKS
        snapshot, problems, error = None, [], ""
        try:
            snapshot = self._snapshot(backend, queues)
        except DatabaseError as failure:
            error = unreadable(backend, failure)
        else:
            problems = health_problems(snapshot, backend, options)
        if options["json"]:
            self.stdout.write(reports.as_json(reports.health_document(checks, problems, error)))
        else:
            self.stdout.write(reports.health_text(snapshot, problems, error))
        return alerts.UNKNOWN_EXIT_CODE if error else alerts.exit_code(problems)

    @staticmethod
    def _snapshot(backend: DatabaseBackend, queues: list[str]) -> inspection.Snapshot:
        """The backend's queues and workers now (only ``queues``' if any are named)."""
        snapshot = inspection.take(
            backend.config.DATABASE,
            inspection.configured_queues_by_alias([backend]),
            backend.config.LEASE,
            aliases=[backend.alias],
        )
        return snapshot.only(queues) if queues else snapshot


#: What ``health`` checks when no option chooses: the overview's banners.
DEFAULT_CHECKS = ["unserved", "wait", "died"]


def chosen_checks(options: dict[str, Any]) -> list[str]:
    """The checks the options ask for, by ``alerts.Problem.check`` name (none: [])."""
    checks = []
    if options["require_workers"]:
        checks.append("no-worker")
    if options["max_wait"] is not None:
        checks.append("wait")
    if any(options[name] is not None for name in ("hostname", "pid", "heartbeat_within")):
        checks.append("stale")
    return checks


def health_problems(
    snapshot: inspection.Snapshot, backend: DatabaseBackend, options: dict[str, Any]
) -> list[alerts.Problem]:
    """What the chosen checks find; no check chosen: the overview's rules."""
    checks = chosen_checks(options)
    if not checks:
        return alerts.default_problems(snapshot, alerts.wait_limits([backend]))
    problems = []
    if "no-worker" in checks:
        problems += alerts.queues_without_workers(snapshot)
    if "wait" in checks:
        limits = {backend.alias: options["max_wait"]}
        problems += alerts.long_waits(snapshot, limits, alerts.CRITICAL)
    if "stale" in checks:
        within = options["heartbeat_within"] or backend.config.LEASE
        hostname = options["hostname"] or socket.gethostname()
        problems += alerts.stale_workers(snapshot, hostname, options["pid"], within)
    return problems


def unreadable(backend: DatabaseBackend, error: DatabaseError) -> str:
    """What to do when the job table cannot be read."""
    return (
        f"Cannot read the job table in database {backend.config.DATABASE!r}: "
        f"{first_line(error)}. Is the database server running, and has 'manage.py "
        "migrate' been run?"
    )
