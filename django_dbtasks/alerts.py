"""The health rules: what is wrong with the queues now, for ``tasks health`` and the overview.

Each rule reads an ``inspection.Snapshot`` and returns the ``Problem``s it
finds; none is a healthy answer. The overview's warning banners are the
``default_problems``: a queue with due jobs and no live worker, a worker that
died in the last hour, an oldest due job waiting longer than the alias's
``ALERT_WAIT_SECONDS``. ``manage.py tasks health`` applies the same rules, or
the ones its options choose, and exits as a Nagios plugin does (``exit_code``).
No queries, no output: the snapshot is read elsewhere, the words printed elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .backend import DatabaseBackend
from .durations import short
from .inspection import QueueSnapshot, Snapshot

#: Severities, with the exit code a Nagios plugin gives for each (0 is OK, 3 UNKNOWN).
WARNING, CRITICAL = "warning", "critical"
EXIT_CODES = {WARNING: 1, CRITICAL: 2}
UNKNOWN_EXIT_CODE = 3

#: How long a dead worker stays worth a warning: after that it is history.
RECENT_DEATH_SECONDS = 3600.0


@dataclass(frozen=True)
class Problem:
    """One thing wrong, said so that a person on call knows what to look at."""

    check: str  # the rule's name, stable: "unserved", "wait", "died", "no-worker", "stale"
    severity: str
    message: str
    alias: str = ""
    queue: str = ""
    worker: str = ""


def _where(queue: QueueSnapshot, several: bool) -> str:
    return f"queue {queue.alias}/{queue.name}" if several else f"queue {queue.name!r}"


def _several_aliases(snapshot: Snapshot) -> bool:
    return len({queue.alias for queue in snapshot.queues}) > 1


def unserved_queues(snapshot: Snapshot) -> list[Problem]:
    """A queue with due jobs and no live worker: nothing will run them."""
    several = _several_aliases(snapshot)
    return [
        Problem(
            "unserved",
            CRITICAL,
            f"{_where(queue, several)} has {queue.due} due job(s) and no live worker: "
            "start 'manage.py runtasks' for it.",
            queue.alias,
            queue.name,
        )
        for queue in snapshot.queues
        if queue.due and not queue.workers
    ]


def long_waits(
    snapshot: Snapshot, limits: Mapping[str, float], severity: str = WARNING
) -> list[Problem]:
    """A queue whose oldest due job has waited more than its alias's limit (0: no limit)."""
    several = _several_aliases(snapshot)
    found = []
    for queue in snapshot.queues:
        limit = limits.get(queue.alias, 0.0)
        if limit and queue.oldest_due_wait is not None and queue.oldest_due_wait > limit:
            found.append(
                Problem(
                    "wait",
                    severity,
                    f"{_where(queue, several)}: the oldest due job has waited "
                    f"{short(queue.oldest_due_wait)}, more than {short(limit)}; its workers "
                    "are too few or stuck.",
                    queue.alias,
                    queue.name,
                )
            )
    return found


def recent_deaths(snapshot: Snapshot, within: float = RECENT_DEATH_SECONDS) -> list[Problem]:
    """A worker that stopped heartbeating without stopping, less than ``within`` s ago."""
    return [
        Problem(
            "died",
            WARNING,
            f"worker {worker.hostname}:{worker.pid} ({worker.id}) died: no heartbeat for "
            f"{short(worker.heartbeat_age)} and it never said it stopped (killed, out of "
            "memory, or its host went away). Its jobs are run again by other workers.",
            worker.alias,
            worker=worker.id,
        )
        for worker in snapshot.workers
        if not worker.live and worker.heartbeat_age < within
    ]


def default_problems(snapshot: Snapshot, limits: Mapping[str, float]) -> list[Problem]:
    """The overview's banners, and what ``tasks health`` checks when asked nothing else."""
    return [*unserved_queues(snapshot), *long_waits(snapshot, limits), *recent_deaths(snapshot)]


def queues_without_workers(snapshot: Snapshot) -> list[Problem]:
    """Every queue has at least one live worker, due jobs or not (``--require-workers``)."""
    several = _several_aliases(snapshot)
    return [
        Problem(
            "no-worker",
            CRITICAL,
            f"{_where(queue, several)} has no live worker.",
            queue.alias,
            queue.name,
        )
        for queue in snapshot.queues
        if not queue.workers
    ]


def stale_workers(
    snapshot: Snapshot, hostname: str, pid: int | None, within: float
) -> list[Problem]:
    """This host's worker (the one with ``pid``, or any) heartbeated within ``within`` s."""
    mine = [w for w in snapshot.workers if w.hostname == hostname]
    if pid is not None:
        mine = [w for w in mine if w.pid == pid]
    which = f"pid {pid} on {hostname}" if pid is not None else f"on {hostname}"
    fresh = [w for w in mine if w.heartbeat_age <= within]
    if fresh:
        return []
    if not mine:
        message = f"no running worker {which} (none registered, or it stopped)."
    else:
        latest = min(mine, key=lambda w: w.heartbeat_age)
        message = (
            f"the worker {which} last heartbeated {short(latest.heartbeat_age)} ago, more "
            f"than {short(within)} ({latest.id}, {latest.state})."
        )
    return [Problem("stale", CRITICAL, message, worker=mine[0].id if mine else "")]


def wait_limits(backends: Iterable[DatabaseBackend]) -> dict[str, float]:
    """Each alias's ``ALERT_WAIT_SECONDS``: how long its oldest due job may wait."""
    return {backend.alias: backend.config.ALERT_WAIT_SECONDS for backend in backends}


def exit_code(problems: Iterable[Problem]) -> int:
    """0 when there are none, else the worst severity's code (1 warning, 2 critical)."""
    return max((EXIT_CODES[problem.severity] for problem in problems), default=0)
