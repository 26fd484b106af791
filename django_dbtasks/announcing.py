"""Django's ``task_finished``, sent once a job's outcome is in the table.

Only the write knows the status (SUCCESSFUL, FAILED, or READY for a retry;
nothing at all if the worker lost the job's lease), so the signal follows
the write. It is sent by the pool process that ran the job, where the task
ran, as Django's own backends send it: the worker's main process writes a
turn's outcomes and hands each pool process the statuses of its own jobs
(see ``pool.py``, "Announcing"). The main process sends it itself for jobs
no pool process can speak for: crashes, timeouts, jobs that failed before
they ran, outcomes the database refused, and pool processes that are gone
or too busy to send it within ``pool.ANNOUNCE_WITHIN`` seconds.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from . import registry
from .base import DbTaskResult
from .claimed import ClaimedJob
from .compat import TaskResultStatus, task_finished
from .errors import task_error
from .exceptions import TaskFailed
from .execution import Outcome, running_result
from .logfmt import Fields

logger = logging.getLogger("django_dbtasks.worker")


def send_task_finished(
    job: ClaimedJob, outcome: Outcome, status: str, result: DbTaskResult | None = None
) -> None:
    """Send ``task_finished`` for a written outcome; a receiver's bug must not stop anyone.

    ``result`` is the ``TaskResult`` the attempt ran with (its task's
    context held it), updated in place as Django's ``ImmediateBackend``
    does; without one (the main process), it is built from the job.
    """
    task = registry.lookup(job.task_path)
    if task is None:
        return
    try:
        if result is None:
            result = running_result(task, job)
        object.__setattr__(result, "status", TaskResultStatus(status))
        if outcome.error:
            object.__setattr__(result, "errors", [task_error(outcome.error)])
        if outcome.succeeded:
            object.__setattr__(result, "_return_value", json.loads(outcome.return_value_json))
    except Exception:
        logger.exception("%s", Fields(job=job.id, event="no TaskResult for task_finished"))
        return
    sender = type(task.get_backend())
    try:
        if outcome.error and result.status == TaskResultStatus.FAILED:
            _send_while_handling(sender, result, outcome.error)
        else:
            task_finished.send(sender, task_result=result)
    except BaseException:
        # Even ``sys.exit()`` in a receiver: in a pool process it would end the
        # process between two jobs, and the next job would be blamed for the crash.
        logger.exception("%s", Fields(job=job.id, event="a signal receiver raised"))


def _send_while_handling(sender: type, result: DbTaskResult, error: dict[str, Any]) -> None:
    """Send ``task_finished`` for a failed job inside an exception handler, as Django does.

    Django's own receiver logs a failed task with ``sys.exc_info()`` (and error
    trackers read it there too). The exception may have been raised in
    another process, or in an earlier turn of this one; it is carried by a
    ``TaskFailed`` whose text is its traceback.
    """
    try:
        raise TaskFailed(error.get("traceback") or error["exception_class_path"])
    except TaskFailed:
        task_finished.send(sender, task_result=result)
