"""Run one claimed job's task function and describe what happened.

This runs inside a pool child process (see ``pool.py``); it never touches
the job table, so the parent alone decides what an outcome means.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from . import progress, registry
from .base import DbTask, DbTaskResult
from .compat import TaskContext, TaskResultStatus
from .exceptions import TaskNotRegistered, exception_path
from .queries import ClaimedJob
from .serialization import dumps_return_value


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt, sent from the child to the parent."""

    job_id: int
    succeeded: bool
    return_value_json: str = "null"
    error: dict[str, Any] | None = None
    duration: float = 0.0
    #: ``time.monotonic()`` when the attempt ended (the same clock in every process).
    finished_at: float = 0.0


def error_entry(
    exc_type: type[BaseException], text: str, message: str | None = None
) -> dict[str, Any]:
    """One failed attempt as stored in ``Job.errors`` (Django's TaskError, plus a summary)."""
    summary = message or f"{exc_type.__name__}: {text.strip().splitlines()[0] if text else ''}"
    return {"exception_class_path": exception_path(exc_type), "traceback": text, "message": summary}


def running_result(task: DbTask, job: ClaimedJob) -> DbTaskResult:
    """The TaskResult of a job being run: the task's context, and the worker's signals."""
    return DbTaskResult(
        task=task,
        id=str(job.id),
        status=TaskResultStatus.RUNNING,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=None,
        last_attempted_at=None,
        args=job.args,
        kwargs=job.kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=job.worker_ids,
    )


def _call(job: ClaimedJob) -> Any:
    task = registry.lookup(job.task_path)
    if task is None:
        raise TaskNotRegistered(registry.not_registered_message(job.task_path))
    database = getattr(task.get_backend(), "database", "default")
    with progress.running(job.id, job.lease_token, database):
        if not task.takes_context:
            return task.call(*job.args, **job.kwargs)
        context: Any = TaskContext(task_result=running_result(task, job))
        return task.call(context, *job.args, **job.kwargs)


def run(job: ClaimedJob) -> Outcome:
    """Call the job's task; any exception becomes a failed outcome with its traceback."""
    started = time.monotonic()
    try:
        value = _call(job)
        encoded = dumps_return_value(value)
    except Exception as exc:
        ended = time.monotonic()
        error = error_entry(
            type(exc),
            "".join(traceback.format_exception(exc)),
            message=traceback.format_exception_only(exc)[0].strip(),
        )
        return Outcome(
            job_id=job.id,
            succeeded=False,
            error=error,
            duration=ended - started,
            finished_at=ended,
        )
    ended = time.monotonic()
    return Outcome(
        job_id=job.id,
        succeeded=True,
        return_value_json=encoded,
        duration=ended - started,
        finished_at=ended,
    )
