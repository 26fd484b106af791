"""Run one claimed job's task function and describe what happened.

This runs inside a pool child process (see ``pool.py``); it never touches
the job table, so the parent alone decides what an outcome means. Whatever
the task does (returns, raises, even ``SystemExit``), the outcome holds only
text the job table can store, so writing it can fail for no other job.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from . import progress, registry
from .base import DbTask, DbTaskResult
from .claimed import ClaimedJob
from .compat import TaskContext, TaskResultStatus
from .conf import Options
from .errors import MAX_MESSAGE_CHARS, error_entry, storable_text
from .exceptions import TaskNotRegistered
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


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """The error entry of an exception raised by a task (or while handling its job)."""
    try:
        text = "".join(traceback.format_exception(exc))
        message = traceback.format_exception_only(exc)[0].strip()
    except BaseException:
        text = message = f"{type(exc).__name__} (its traceback could not be formatted)"
    return error_entry(type(exc), text, message=message)


def failed(job_id: int, exc: BaseException, context: str) -> Outcome:
    """A failed outcome for a job that broke before its task could run."""
    error = describe_exception(exc)
    error["message"] = storable_text(f"{context}: {error['message']}", MAX_MESSAGE_CHARS)
    return Outcome(job_id=job_id, succeeded=False, error=error, finished_at=time.monotonic())


def running_result(task: DbTask, job: ClaimedJob) -> DbTaskResult:
    """The TaskResult of a job being run: the task's context, and the worker's signals."""
    return DbTaskResult.build(
        task,
        job.id,
        TaskResultStatus.RUNNING,
        backend=task.backend,
        args=job.args,
        kwargs=job.kwargs,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        worker_ids=job.worker_ids,
    )


def _call(job: ClaimedJob) -> str:
    """Run the task and return its value as JSON text the job table can store."""
    task = registry.lookup(job.task_path)
    if task is None:
        raise TaskNotRegistered(registry.not_registered_message(job.task_path))
    backend = task.get_backend()
    database = getattr(backend, "database", "default")
    with progress.running(job.id, job.lease_token, database):
        if not task.takes_context:
            value = task.call(*job.args, **job.kwargs)
        else:
            context: Any = TaskContext(task_result=running_result(task, job))
            value = task.call(context, *job.args, **job.kwargs)
    # Django's own @task may name another backend; ours has the option, others the default.
    config = getattr(backend, "config", Options())
    return dumps_return_value(value, config.MAX_RESULT_BYTES)


def run(job: ClaimedJob) -> Outcome:
    """Call the job's task; anything it raises becomes a failed outcome with its traceback.

    ``BaseException`` too: ``sys.exit()`` or ``KeyboardInterrupt`` raised by
    task code ends that job as a failure with its own class, as in Django's
    backends, and the pool process goes on.
    """
    started = time.monotonic()
    try:
        encoded = _call(job)
    except BaseException as exc:
        ended = time.monotonic()
        error = describe_exception(exc)
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
