"""The worker's side duties: heartbeat, orphan release, rescue, dead-worker cleanup, tallies.

Each runs on its own timer from ``Maintenance.run_due(now, held)``, called
once per loop turn; a turn with nothing due costs nothing. They are the
recovery half of the guarantees: leases are extended while a job runs,
jobs of dead workers are taken back and their suspects found, and rows of
long-dead workers are forgotten. With each heartbeat, what the worker
counted for the metrics since the last one is added to the tally table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import queries, tallies
from .conf import Options
from .errors import error_entry
from .exceptions import PoisonJob
from .outages import OutageGuard
from .reporting import Reporter
from .tallies import Tallies

#: Seconds between sweeps that forget long-dead workers.
WORKER_CLEANUP_INTERVAL = 300.0


class Maintenance:
    """Owns the heartbeat and cleanup timers and the statements they run."""

    def __init__(
        self,
        connection: Callable[[], Any],
        guard: OutageGuard,
        reporter: Reporter,
        config: Options,
        worker_id: str,
        queues: list[str],
        alias: str,
        tallies: Tallies | None = None,
    ) -> None:
        self.connection = connection
        self.guard = guard
        self.reporter = reporter
        self.config = config
        self.worker_id = worker_id
        self.queues = queues
        self.alias = alias
        self.tallies = tallies or Tallies(alias)
        self.heartbeat_due = 0.0  # monotonic time of the next heartbeat
        self.cleanup_due = 0.0  # ... and of the next sweep of dead workers

    def run_due(self, now: float, held_tokens: Callable[[], list[str]]) -> bool | None:
        """Run what is due; ``held_tokens()`` gives the lease tokens the worker holds.

        Returns None when no heartbeat was due, else whether a suspect (a job
        whose worker died while holding it) waits to be run alone. The tokens
        are asked for only when a heartbeat is due, not at every turn.
        """
        if now < self.heartbeat_due:
            return None
        self.heartbeat_due = now + self.config.HEARTBEAT_INTERVAL
        held = held_tokens()
        self.heartbeat(held)
        self.release_orphans(held)
        self.rescue()
        self.write_tallies()
        waiting = self.guard.run(
            lambda: queries.suspect_waiting(self.connection(), self.queues, self.alias)
        )
        if now >= self.cleanup_due:
            self.cleanup_due = now + WORKER_CLEANUP_INTERVAL
            self.forget_dead_workers()
        return bool(waiting)

    def heartbeat(self, held: list[str]) -> None:
        """Prove this worker is alive and extend the leases of the jobs it holds."""
        self.guard.run(
            lambda: queries.heartbeat(self.connection(), self.worker_id, held, self.config.LEASE)
        )

    def release_orphans(self, held: list[str]) -> None:
        """Give back claims this worker lost track of (committed, but the reply was lost)."""
        orphans = self.guard.run(lambda: queries.release(self.connection(), self.worker_id, held))
        if orphans:
            self.reporter.released(orphans, why="claimed but lost track of")

    def rescue(self) -> None:
        """Take back the jobs of workers whose leases expired; fail poison jobs."""
        rescued = self.guard.run(
            lambda: queries.rescue_expired(
                self.connection(), self.config.MAX_CRASHES, self.poison_error()
            )
        )
        for job_id, task_path, status, alias, queue in rescued or []:
            self.reporter.rescued(job_id, task_path, status)
            outcome = tallies.POISON if status == "FAILED" else tallies.RESCUED
            self.tallies.outcome(queue, task_path, outcome, alias=alias)

    def write_tallies(self) -> None:
        """Add what was counted since the last heartbeat to the totals (kept if that fails)."""
        rows = self.tallies.take()
        if rows and self.guard.run(lambda: queries.add_tallies(self.connection(), rows)) is None:
            self.tallies.put_back(rows)

    def forget_dead_workers(self) -> None:
        self.guard.run(
            lambda: queries.delete_dead_workers(self.connection(), self.config.WORKER_RETENTION)
        )

    def poison_error(self) -> dict[str, Any]:
        """The error entry of a job failed as poison: it killed its worker, alone, again."""
        deaths = max(self.config.MAX_CRASHES, 2)
        return error_entry(
            PoisonJob,
            f"This job's runs ended with their worker dying {deaths} times in a row "
            f"(killed, out of memory, or stopped heartbeating); the last {deaths - 1} "
            "time(s) it was the only job that worker held. So it is FAILED as poison "
            "instead of being run again. Check the workers' logs and memory use.",
        )
