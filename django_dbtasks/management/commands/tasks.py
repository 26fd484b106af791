"""``manage.py tasks``: look at the queues from the shell (``status``, ``failed``, ``health``).

Thin: each subcommand parses its options, reads ``inspection`` (and for
``health`` applies ``alerts``), and prints text for people or, with
``--json``, the documented shape for programs (docs/operations.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from django_dbtasks import inspection
from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.durations import short
from django_dbtasks.management.backends import (
    add_backend_argument,
    chosen_queues,
    database_backend,
)
from django_dbtasks.outages import first_line


class Command(BaseCommand):
    help = (
        "Look at the task queues from the shell: 'status' (queues and workers now), "
        "'failed' (recent failures by task and exception) and 'health' (an exit code for "
        "probes and Nagios). Each takes --json. 'manage.py tasks SUBCOMMAND --help' for more."
    )

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
            "--json", action="store_true", help="Print JSON (shape: docs/operations.md)."
        )
        add_backend_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        backend = database_backend(options["backend"])
        queues = chosen_queues(backend, options["queues"]) if options["queues"] else []
        try:
            snapshot = self._snapshot(backend, queues)
        except DatabaseError as error:
            raise CommandError(unreadable(backend, error))
        if options["json"]:
            self._json(status_document(backend.alias, snapshot))
        else:
            self.stdout.write(status_text(backend.alias, snapshot))

    @staticmethod
    def _snapshot(backend: DatabaseBackend, queues: list[str]) -> inspection.Snapshot:
        """The backend's queues and workers now (only ``queues``' if any are named)."""
        snapshot = inspection.take(
            backend.config.DATABASE,
            inspection.configured_queues_by_alias([backend]),
            backend.config.LEASE,
            aliases=[backend.alias],
        )
        return _only(snapshot, queues) if queues else snapshot

    def _json(self, document: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(document, indent=2, default=_iso))


def unreadable(backend: DatabaseBackend, error: DatabaseError) -> str:
    """What to do when the job table cannot be read."""
    return (
        f"Cannot read the job table in database {backend.config.DATABASE!r}: "
        f"{first_line(error)}. "
        "Is the database server running, and has 'manage.py migrate' been run?"
    )


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _only(snapshot: inspection.Snapshot, queues: Sequence[str]) -> inspection.Snapshot:
    """The snapshot's part about ``queues``: those queues, and the workers serving one."""
    kept = [queue for queue in snapshot.queues if queue.name in queues]
    workers = [w for w in snapshot.workers if any(w.serves(w.alias, name) for name in queues)]
    return inspection.Snapshot(queues=kept, workers=workers, liveness=snapshot.liveness)


# status


def status_document(alias: str, snapshot: inspection.Snapshot) -> dict[str, Any]:
    """``tasks status --json``: the shape docs/operations.md documents."""
    return {
        "backend": alias,
        "liveness_seconds": snapshot.liveness,
        "queues": [
            {
                "queue": queue.name,
                "ready": queue.ready,
                "due": queue.due,
                "running": queue.running,
                "failed": queue.failed,
                "cancelled": queue.cancelled,
                "oldest_due_wait_seconds": queue.oldest_due_wait,
                "live_workers": [worker.id for worker in queue.workers],
            }
            for queue in snapshot.queues
        ],
        "workers": [
            {
                "id": worker.id,
                "state": worker.state,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "queues": worker.queues,
                "concurrency": worker.concurrency,
                "started_at": worker.started_at,
                "last_heartbeat_at": worker.last_heartbeat_at,
                "heartbeat_age_seconds": worker.heartbeat_age,
                "running": [
                    {
                        "id": job.id,
                        "task": job.task_path,
                        "queue": job.queue_name,
                        "running_seconds": job.running_for,
                    }
                    for job in worker.running
                ],
            }
            for worker in snapshot.workers
        ],
    }


def status_text(alias: str, snapshot: inspection.Snapshot) -> str:
    """``tasks status``: a table of queues, then one of workers with the jobs they run."""
    lines = [f"Queues of backend {alias!r}:"]
    rows = [
        [
            queue.name,
            str(queue.ready),
            str(queue.due),
            str(queue.running),
            str(queue.failed),
            short(queue.oldest_due_wait),
            str(len(queue.workers)),
        ]
        for queue in snapshot.queues
    ]
    header = ["QUEUE", "READY", "DUE", "RUNNING", "FAILED", "OLDEST DUE", "LIVE WORKERS"]
    lines += table(header, rows) if rows else ["  none configured and no jobs yet"]
    lines += ["", f"Workers (dead: no heartbeat for {snapshot.liveness:g} s):"]
    if not snapshot.workers:
        lines.append("  none (start one with 'manage.py runtasks')")
    header = ["STATE", "HOST", "PID", "CONCURRENCY", "QUEUES", "HEARTBEAT", "RUNNING"]
    rows = [
        [
            worker.state if worker.live else worker.state.upper(),  # DEAD stands out
            worker.hostname,
            str(worker.pid),
            str(worker.concurrency),
            ",".join(worker.queues) or "*",
            f"{short(worker.heartbeat_age)} ago",
            str(len(worker.running)),
        ]
        for worker in snapshot.workers
    ]
    body = table(header, rows) if rows else []
    lines += body[:1]
    for worker, line in zip(snapshot.workers, body[1:], strict=True):
        lines.append(line)
        lines += [
            f"      job {job.id} {job.task_path} ({job.queue_name}), running for "
            f"{short(job.running_for)}"
            for job in worker.running
        ]
    return "\n".join(lines)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, indented by two: a header line, then rows."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
