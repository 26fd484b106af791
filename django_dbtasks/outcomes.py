"""Outcomes of finished attempts: held in a batch, written with the turn's claim.

One commit per loop turn, however many jobs finished: that, not the SQL, is
what bounds throughput on a disk that fsyncs each commit. So outcomes wait
in an ``OutcomeBatch`` while the pool still has jobs in hand (up to
``PREFETCH_SECONDS``, or ``MAX_BATCH`` of them), and ``write_turn`` writes
them all, at most one statement per kind (successes, then failures and
retries), in the same transaction as the next claim.

If the database is unreachable nothing is lost: the outcomes stay in the
batch and are written when it is back. If it refuses the turn (a value it
cannot store: see ``outages.py``), each outcome is written alone, and one
it refuses again is replaced by a failed attempt that says why, so the
refusal ends the job that caused it and no other.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction

from . import queries, registry
from .claimed import ClaimedJob
from .compat import TaskResultStatus
from .errors import error_entry
from .execution import Outcome
from .outages import OutageGuard, sqlstate
from .pool import Finished
from .reporting import Reporter

#: How many times one outcome is offered to a database that refuses it: as it
#: is, as a failure that quotes the refusal, as a plain failure.
WRITE_ALONE_TRIES = 3


@dataclass(frozen=True)
class ClaimRequest:
    """The claim of one turn (see ``queries.claim``)."""

    queues: list[str]
    limit: int
    worker_id: str
    lease_seconds: float
    backend: str
    suspects: bool = False


@dataclass
class Turn:
    """What one write of the batch did.

    ``written`` holds each outcome written with the job's new status (None:
    the write did not apply, the worker had lost the job's lease).
    ``claimed`` is None when no claim ran (none asked, an outage, a refusal);
    ``refused`` says the database refused the turn.
    """

    written: list[tuple[Finished, str | None]]
    claimed: list[ClaimedJob] | None = None
    refused: bool = False


def write_turn(
    connection: Any, database: str, outcomes: list[Finished], claim: ClaimRequest | None
) -> tuple[list[tuple[Finished, str | None]], list[ClaimedJob] | None]:
    """Write ``outcomes`` and run ``claim``, as one transaction when that takes several statements.

    At most one statement per kind: successes (``complete_many``), failures
    and retries (``fail_many``), the claim. A lone statement is atomic by
    itself, and in autocommit it costs one round trip instead of three.
    """
    successes = [
        (item.job.id, item.job.lease_token, item.outcome.return_value_json)
        for item in outcomes
        if item.outcome.succeeded
    ]
    failures = [
        (item.job.id, item.job.lease_token, item.outcome.error or {}, retry_in(item.job))
        for item in outcomes
        if not item.outcome.succeeded
    ]
    # This function issues every statement of the turn, so it alone decides.
    statements = bool(successes) + bool(failures) + (claim is not None)
    atomic = transaction.atomic(using=database) if statements > 1 else contextlib.nullcontext()
    statuses: dict[int, str] = {}
    claimed = None
    with atomic:
        if successes:
            completed = queries.complete_many(connection, successes)
            statuses.update(dict.fromkeys(completed, TaskResultStatus.SUCCESSFUL))
        if failures:
            statuses.update(queries.fail_many(connection, failures))
        if claim is not None:
            claimed = queries.claim(
                connection,
                claim.queues,
                claim.limit,
                claim.worker_id,
                claim.lease_seconds,
                suspects=claim.suspects,
                backend=claim.backend,
            )
    return [(item, statuses.get(item.job.id)) for item in outcomes], claimed


def retry_in(job: ClaimedJob) -> float | None:
    """Seconds until a failed job's next attempt, or None to fail it for good."""
    task = registry.lookup(job.task_path)
    return None if task is None else task.retry_delay_after(job.attempts)


class OutcomeBatch:
    """The outcomes not yet in the table, when they are due, and writing them."""

    def __init__(
        self,
        connection: Callable[[], Any],
        database: str,
        guard: OutageGuard,
        reporter: Reporter,
        prefetch_seconds: float,
        max_batch: int,
    ) -> None:
        self.connection = connection
        self.database = database
        self.guard = guard
        self.reporter = reporter
        self.prefetch_seconds = prefetch_seconds
        self.max_batch = max_batch
        self.pending: list[Finished] = []
        self.oldest_at: float | None = None  # when the oldest pending outcome arrived

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, finished: list[Finished], now: float) -> None:
        if finished and not self.pending:
            self.oldest_at = now
        self.pending.extend(finished)

    def tokens(self) -> list[str]:
        """Lease tokens of the pending outcomes' jobs: still held, the heartbeat extends them."""
        return [item.job.lease_token for item in self.pending]

    def due_at(self) -> float | None:
        """When the pending outcomes are due by age alone (None: there are none)."""
        if not self.pending:
            return None
        return (self.oldest_at or 0.0) + self.prefetch_seconds

    def due(self, now: float, pool_busy: bool, stopping: bool) -> bool:
        """Whether to write now, or let more outcomes join the batch.

        They wait while the pool still has jobs in hand, up to
        ``PREFETCH_SECONDS`` or ``MAX_BATCH`` outcomes.
        """
        due_at = self.due_at()
        if due_at is None:
            return False
        return not pool_busy or stopping or len(self.pending) >= self.max_batch or now >= due_at

    def write(self, outcomes: list[Finished], claim: ClaimRequest | None, now: float) -> Turn:
        """Write ``outcomes`` (the first of ``pending``) and run ``claim``, in one turn."""
        try:
            result = self.guard.run(
                lambda: write_turn(self.connection(), self.database, outcomes, claim),
                raise_refusal=True,
            )
        except DatabaseError as refusal:
            self.reporter.turn_refused(refusal, len(outcomes))
            return Turn(self._write_one_by_one(outcomes, now), refused=True)
        if result is None:
            return Turn([])  # an outage: everything stays pending
        written, claimed = result
        self._forget(len(outcomes), now)
        return Turn(written, claimed)

    def _forget(self, count: int, now: float) -> None:
        """The first ``count`` pending outcomes are in the table now."""
        del self.pending[:count]
        if count:
            self.oldest_at = now if self.pending else None

    def _write_one_by_one(
        self, outcomes: list[Finished], now: float
    ) -> list[tuple[Finished, str | None]]:
        """Write each outcome on its own; stop at an outage (the rest stays pending)."""
        written: list[tuple[Finished, str | None]] = []
        for done, item in enumerate(outcomes):
            result = self._write_alone(item)
            if result is _OUTAGE:
                self._forget(done, now)
                return written
            if result is not _DROPPED:
                written.append(result)
        self._forget(len(outcomes), now)
        return written

    def _write_alone(self, item: Finished) -> Any:
        """Write one outcome by itself; on refusal, write a failure that says why.

        Returns ``(outcome written, new status)``, or ``_OUTAGE`` / ``_DROPPED``.
        """
        for attempt in range(WRITE_ALONE_TRIES):
            try:
                result = self.guard.run(
                    functools.partial(write_turn, self.connection(), self.database, [item], None),
                    raise_refusal=True,
                )
            except DatabaseError as refusal:
                self.reporter.outcome_refused(item.job, refusal)
                item = Finished(item.job, refused_outcome(item, refusal, plain=attempt > 0))
                continue
            if result is None:
                return _OUTAGE
            return result[0][0]
        self.reporter.outcome_dropped(item.job)
        return _DROPPED


#: What ``OutcomeBatch._write_alone`` returns when the write must wait for the
#: database, and when it was given up (the job stays RUNNING until it is released).
_OUTAGE = object()
_DROPPED = object()


def refused_outcome(item: Finished, refusal: DatabaseError, plain: bool) -> Outcome:
    """A failed attempt in place of an outcome the database refused to store.

    ``plain`` leaves out every word of the job's own (its error text may be
    what the database refused): only the refusal's class and SQLSTATE remain.
    """
    if plain:
        text = (
            f"The database refused to store this attempt's outcome ({type(refusal).__name__}, "
            f"SQLSTATE {sqlstate(refusal) or 'unknown'})."
        )
    else:
        text = (
            "The database refused to store this attempt's outcome: "
            f"{type(refusal).__name__}: {str(refusal).strip()}"
        )
    return Outcome(
        job_id=item.job.id,
        succeeded=False,
        error=error_entry(type(refusal), text),
        duration=item.outcome.duration,
        finished_at=item.outcome.finished_at,
    )
