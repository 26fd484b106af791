"""The operator actions on jobs, retry and cancel, and the sentence that reports them.

Each is a conditional UPDATE (see ``queries.retry`` and ``queries.cancel_many``)
so a worker racing the operator wins or loses cleanly: the status condition
is checked on the row as it is written, never read first and written later.
The rows to update are found through the status indexes (failed and
cancelled rows for a retry, ready rows for a cancel), so "select all" over a
large table touches only the rows that can change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet

from .. import queries
from ..errors import error_entry
from ..exceptions import JobCancelled
from ..models import JobStatus
from . import setup

RETRYABLE = [JobStatus.FAILED, JobStatus.CANCELLED]
CANCELLABLE = [JobStatus.READY]

#: Ids per UPDATE statement.
CHUNK = 1000


@dataclass
class ActionReport:
    """Which jobs an action changed, and why it left the others alone."""

    changed: list[int] = field(default_factory=list)
    #: Unique jobs not retried because their key has an unfinished job.
    conflicts: list[int] = field(default_factory=list)
    #: Jobs skipped for their status, counted by status.
    skipped: Counter[str] = field(default_factory=Counter)
    #: Jobs whose status changed between the selection and the update (a worker won).
    raced: int = 0


def retry(selection: QuerySet[Any]) -> ActionReport:
    """Make the FAILED and CANCELLED jobs of ``selection`` READY again; skip the others.

    A unique job cannot be retried while another job with its key is READY
    or RUNNING (the partial unique index ``dbtasks_job_unique_unfinished``
    forbids it): those are retried one by one, each in a savepoint, and a
    conflict skips that job instead of failing the whole action.
    """
    selected = _count_by_status(selection)
    candidates = selection.filter(status__in=RETRYABLE)
    plain = list(candidates.filter(unique_key__isnull=True).values_list("pk", flat=True))
    unique = list(candidates.filter(unique_key__isnull=False).values_list("pk", flat=True))
    outcome = ActionReport()
    db, connection = setup.database(), setup.connection()
    with transaction.atomic(using=db):
        for start in range(0, len(plain), CHUNK):
            outcome.changed += queries.retry(connection, plain[start : start + CHUNK], unique=False)
        for job_id in unique:
            try:
                with transaction.atomic(using=db):
                    outcome.changed += queries.retry(connection, [job_id], unique=True)
            except IntegrityError:
                outcome.conflicts.append(job_id)
    _account(outcome, selected, RETRYABLE)
    return outcome


def cancel(selection: QuerySet[Any], username: str) -> ActionReport:
    """Cancel the READY jobs of ``selection``; a job a worker has claimed is not stopped."""
    error = error_entry(
        JobCancelled,
        f"Cancelled before it started, by {username} in the admin.",
        message=f"Cancelled in the admin by {username}",
    )
    selected = _count_by_status(selection)
    ready = list(selection.filter(status__in=CANCELLABLE).values_list("pk", flat=True))
    outcome = ActionReport()
    db, connection = setup.database(), setup.connection()
    with transaction.atomic(using=db):
        for start in range(0, len(ready), CHUNK):
            outcome.changed += queries.cancel_many(connection, ready[start : start + CHUNK], error)
    _account(outcome, selected, CANCELLABLE)
    return outcome


def _count_by_status(selection: QuerySet[Any]) -> Counter[str]:
    rows = selection.order_by().values("status").annotate(count=Count("pk"))
    return Counter({row["status"]: row["count"] for row in rows})


def _account(outcome: ActionReport, selected: Counter[str], eligible: list[JobStatus]) -> None:
    """Explain every selected job the action did not change."""
    outcome.skipped = Counter({s: n for s, n in selected.items() if s not in eligible and n})
    expected = sum(selected[s] for s in eligible)
    outcome.raced = max(0, expected - len(outcome.changed) - len(outcome.conflicts))


def _label(status: str) -> str:
    return str(JobStatus(status).label).lower() if status in JobStatus.values else status


def describe(outcome: ActionReport, verb: str, rule: str) -> str:
    """``Retried 3 jobs. Skipped 2: 1 running, 1 successful (only ... can be ...).``"""
    text = f"{verb} {_jobs(len(outcome.changed))}."
    reasons = []
    if outcome.skipped:
        by_status = ", ".join(f"{n} {_label(s)}" for s, n in sorted(outcome.skipped.items()))
        reasons.append(f"{by_status} ({rule})")
    if outcome.conflicts:
        reasons.append(
            f"{_jobs(len(outcome.conflicts), 'unique job')} whose key already has a ready "
            "or running job (retry once that one has finished)"
        )
    if outcome.raced:
        reasons.append(f"{_jobs(outcome.raced)} whose status changed meanwhile")
    if not reasons:
        return text
    total = sum(outcome.skipped.values()) + len(outcome.conflicts) + outcome.raced
    return f"{text} Skipped {total}: {'; '.join(reasons)}."


def _jobs(count: int, noun: str = "job") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
