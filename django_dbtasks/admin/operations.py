"""The operator actions on jobs, retry and cancel, and the sentence that reports them.

Each is a conditional UPDATE (see ``queries.retry`` and ``queries.cancel_many``)
so a worker racing the operator wins or loses cleanly: the status condition
is checked on the row as it is written, never read first and written later.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from .. import queries
from ..exceptions import JobCancelled, exception_path
from ..models import Job, JobStatus
from . import setup

_RETRYABLE = [JobStatus.FAILED, JobStatus.CANCELLED]

#: Ids per UPDATE statement, so "select all" over many rows stays a few statements.
CHUNK = 1000


@dataclass
class Outcome:
    """Which jobs an action changed, and for each reason how many it skipped."""

    changed: list[int] = field(default_factory=list)
    #: Unique jobs not retried because their key has an unfinished job.
    conflicts: list[int] = field(default_factory=list)
    #: The other skipped jobs, counted by their status.
    skipped: Counter[str] = field(default_factory=Counter)


def retry(job_ids: list[int]) -> Outcome:
    """Make FAILED and CANCELLED jobs READY again; skip the others, saying why.

    A unique job cannot be retried while another job with its key is READY
    or RUNNING (the partial unique index ``dbtasks_job_unique_unfinished``
    forbids it): those are retried one by one, each in a savepoint, and a
    conflict skips that job instead of failing the whole action.
    """
    outcome = Outcome()
    db, connection = setup.database(), setup.connection()
    with transaction.atomic(using=db):
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            outcome.changed += queries.retry(connection, chunk, unique=False)
            unique = Job.objects.using(db).filter(
                pk__in=chunk, unique_key__isnull=False, status__in=_RETRYABLE
            )
            for job_id in unique.values_list("pk", flat=True):
                try:
                    with transaction.atomic(using=db):
                        outcome.changed += queries.retry(connection, [job_id], unique=True)
                except IntegrityError:
                    outcome.conflicts.append(job_id)
    _count_others(outcome, job_ids, db)
    return outcome


def cancel(job_ids: list[int], username: str) -> Outcome:
    """Cancel the READY jobs; a job already claimed by a worker is skipped, not stopped."""
    error = {
        "exception_class_path": exception_path(JobCancelled),
        "traceback": f"Cancelled before it started, by {username} in the admin.",
        "message": f"Cancelled in the admin by {username}",
    }
    outcome = Outcome()
    db, connection = setup.database(), setup.connection()
    with transaction.atomic(using=db):
        for start in range(0, len(job_ids), CHUNK):
            outcome.changed += queries.cancel_many(
                connection, job_ids[start : start + CHUNK], error
            )
    _count_others(outcome, job_ids, db)
    return outcome


def _count_others(outcome: Outcome, job_ids: list[int], db: str) -> None:
    """Count the jobs left alone by their status as it is now."""
    done = set(outcome.changed) | set(outcome.conflicts)
    rest = [i for i in job_ids if i not in done]
    for start in range(0, len(rest), CHUNK):
        rows = Job.objects.using(db).filter(pk__in=rest[start : start + CHUNK])
        outcome.skipped.update(rows.values_list("status", flat=True))


def _label(status: str) -> str:
    return str(JobStatus(status).label).lower() if status in JobStatus.values else status


def describe(outcome: Outcome, verb: str, rule: str) -> str:
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
    if not reasons:
        return text
    total = sum(outcome.skipped.values()) + len(outcome.conflicts)
    return f"{text} Skipped {total}: {'; '.join(reasons)}."


def _jobs(count: int, noun: str = "job") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
