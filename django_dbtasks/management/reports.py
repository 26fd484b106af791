"""What ``manage.py tasks`` prints: text for people, and JSON of a documented shape.

Pure formatting of what ``inspection`` and ``alerts`` return: no queries. The
JSON shapes are a public contract (docs/operations.md): keys are only ever
added, never renamed or removed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django_dbtasks import alerts, inspection
from django_dbtasks.durations import short


def as_json(document: dict[str, Any]) -> str:
    """The document as indented JSON, times in ISO 8601."""
    return json.dumps(document, indent=2, default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, indented by two: a header line, then rows."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


# status


def status_document(alias: str, snapshot: inspection.Snapshot) -> dict[str, Any]:
    """``tasks status --json``."""
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
        return "\n".join(lines)
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
    body = table(header, rows)
    lines.append(body[0])
    for worker, line in zip(snapshot.workers, body[1:], strict=True):
        lines.append(line)
        lines += [
            f"      job {job.id} {job.task_path} ({job.queue_name}), running for "
            f"{short(job.running_for)}"
            for job in worker.running
        ]
    return "\n".join(lines)


# failed


def failed_document(
    alias: str, since: float, groups: list[inspection.FailureGroup]
) -> dict[str, Any]:
    """``tasks failed --json``."""
    return {
        "backend": alias,
        "since_seconds": since,
        "groups": [
            {
                "task": group.task_path,
                "exception": group.exception,
                "jobs": group.jobs,
                "latest_finished_at": group.latest_finished_at,
                "latest_job": group.latest_job,
                "latest_message": group.latest_message,
            }
            for group in groups
        ],
    }


#: Characters of a message ``failed`` prints on a line (the JSON has it whole).
MESSAGE_WIDTH = 160


def failed_text(alias: str, since: float, groups: list[inspection.FailureGroup]) -> str:
    """``tasks failed``: one block per group, its latest message beneath it."""
    title = f"Jobs of backend {alias!r} failed in the last {short(since)}"
    if not groups:
        return f"{title}: none."
    lines = [f"{title}, by task and exception (largest first):"]
    rows = [
        [
            str(group.jobs),
            group.task_path,
            group.exception or "(no error kept)",
            f"job {group.latest_job}",
            group.latest_finished_at.isoformat(sep=" ", timespec="seconds")
            if group.latest_finished_at
            else "-",
        ]
        for group in groups
    ]
    body = table(["JOBS", "TASK", "EXCEPTION", "LATEST", "FINISHED"], rows)
    lines.append(body[0])
    for group, line in zip(groups, body[1:], strict=True):
        lines.append(line)
        message = " ".join(group.latest_message.split())
        if message:
            cut = message if len(message) <= MESSAGE_WIDTH else message[: MESSAGE_WIDTH - 1] + "…"
            lines.append(f"      {cut}")
    return "\n".join(lines)


# health


def health_document(
    checks: list[str], problems: list[alerts.Problem], error: str = ""
) -> dict[str, Any]:
    """``tasks health --json``: the verdict, its exit code, and each problem found."""
    code = alerts.UNKNOWN_EXIT_CODE if error else alerts.exit_code(problems)
    document: dict[str, Any] = {
        "status": verdict(code).lower(),
        "exit_code": code,
        "checks": checks,
        "problems": [
            {
                "check": problem.check,
                "severity": problem.severity,
                "message": problem.message,
                "backend": problem.alias,
                "queue": problem.queue,
                "worker": problem.worker,
            }
            for problem in problems
        ],
    }
    if error:
        document["error"] = error
    return document


def verdict(code: int) -> str:
    """A Nagios plugin's word for its exit code."""
    return {0: "OK", 1: "WARNING", 2: "CRITICAL"}.get(code, "UNKNOWN")


def health_text(
    snapshot: inspection.Snapshot | None, problems: list[alerts.Problem], error: str = ""
) -> str:
    """Nagios's form: one summary line (``CRITICAL - ...``), then every problem on its own."""
    if error or snapshot is None:
        return f"UNKNOWN - {error}"
    code = alerts.exit_code(problems)
    if not problems:
        waits = [q.oldest_due_wait for q in snapshot.queues if q.oldest_due_wait is not None]
        live = sum(1 for worker in snapshot.workers if worker.live)
        return (
            f"OK - {len(snapshot.queues)} queue(s), {live} live worker(s), oldest due job "
            f"waits {short(max(waits, default=None))}"
        )
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    lines = [f"{verdict(code)} - {problems[0].message}{more}"]
    lines += [f"{problem.severity.upper()}: {problem.message}" for problem in problems]
    return "\n".join(lines)
