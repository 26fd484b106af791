"""Run one claimed job's task function and describe what happened.

This runs inside a pool child process (see ``pool.py``); it never touches
the job table, so the parent alone decides what an outcome means. Django's
``task_started`` is sent here, where the task runs; ``task_finished`` is
sent in the same process once the parent has written the outcome (only then
is the status known: see ``announcing.py``). Whatever
the task does (returns, raises, even ``SystemExit``), the outcome holds only
text the job table can store, so writing it can fail for no other job.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from . import progress, registry, tracing
from .base import DbTask, DbTaskResult
from .claimed import ClaimedJob
from .compat import TaskContext, TaskResultStatus, task_started
from .conf import Options
from .errors import MAX_MESSAGE_CHARS, error_entry, storable_text
from .exceptions import TaskNotRegistered
from .logfmt import Fields
from .serialization import dumps_return_value

logger = logging.getLogger("django_dbtasks.worker")


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


def _task(job: ClaimedJob) -> DbTask:
    task = registry.lookup(job.task_path)
    if task is None:
        raise TaskNotRegistered(registry.not_registered_message(job.task_path))
    return task


def _announce(task: DbTask, job: ClaimedJob, result: DbTaskResult) -> None:
    """Send ``task_started`` here, in the process that runs the task, as Django's backends do.

    A receiver's error is logged and the job runs all the same (as a
    ``task_finished`` receiver's error does not change the job's outcome).
    """
    try:
        task_started.send(type(task.get_backend()), task_result=result)
    except Exception:
        logger.exception("%s", Fields(job=job.id, event="a task_started receiver raised"))


def _call(task: DbTask, job: ClaimedJob, result: DbTaskResult) -> str:
    """Run the task and return its value as JSON text the job table can store."""
    backend = task.get_backend()
    database = getattr(backend, "database", "default")
    with progress.running(job.id, job.lease_token, database):
        if not task.takes_context:
            value = task.call(*job.args, **job.kwargs)
        else:
            value = task.call(TaskContext(task_result=result), *job.args, **job.kwargs)
    # Django's own @task may name another backend; ours has the option, others the default.
    config = getattr(backend, "config", Options())
    return dumps_return_value(value, config.MAX_RESULT_BYTES)


def run(job: ClaimedJob) -> Outcome:
    """Call the job's task and describe what happened (see ``attempt``)."""
    return attempt(job)[0]


def attempt(job: ClaimedJob) -> tuple[Outcome, DbTaskResult | None]:
    """Call the job's task; anything it raises becomes a failed outcome with its traceback.

    ``BaseException`` too: ``sys.exit()`` or ``KeyboardInterrupt`` raised by
    task code ends that job as a failure with its own class, as in Django's
    backends, and the pool process goes on. Before the call, the job's
    ``TaskResult`` is built (the task's context holds it) and ``task_started``
    sent; a job whose result Django cannot build fails without running.
    Returns the outcome and that result (None if it was never built), which
    ``task_finished`` carries once the outcome is written. The attempt runs
    inside its span, when one is recorded (see ``tracing``).
    """
    with tracing.running(job) as traced:
        outcome, result = _attempt(job)
        traced.ended(job, outcome.error)
    return outcome, result


def _attempt(job: ClaimedJob) -> tuple[Outcome, DbTaskResult | None]:
    """``attempt()`` without its span."""
    started = time.monotonic()
    result = None
    try:
        task = _task(job)
        try:
            result = running_result(task, job)
        except Exception as exc:
            return failed(job.id, exc, "The job's TaskResult could not be built"), None
        _announce(task, job, result)
        encoded = _call(task, job, result)
    except BaseException as exc:
        ended = time.monotonic()
        error = describe_exception(exc)
        outcome = Outcome(
            job_id=job.id,
            succeeded=False,
            error=error,
            duration=ended - started,
            finished_at=ended,
        )
        return outcome, result
    ended = time.monotonic()
    outcome = Outcome(
        job_id=job.id,
        succeeded=True,
        return_value_json=encoded,
        duration=ended - started,
        finished_at=ended,
    )
    return outcome, result
