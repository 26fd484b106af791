"""What the worker tells the world: Django's task signals and its own log lines.

Every line is logfmt (see ``logfmt.py``) and begins with the thing it is
about (``worker=`` or ``job=``), so one ``grep job=42`` finds a job's whole
story across workers. Levels are chosen for alerting: a retry is a warning,
a job that failed for good (or was rescued from a dead worker) an error or
a warning, a success information.

``task_started`` is sent by the pool process that runs the job, where the
task runs (as Django's own backends do); ``task_finished`` here, in the
worker's main process, once the outcome is written and its status known.
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
from .logfmt import Fields, quote
from .outages import first_line

logger = logging.getLogger("django_dbtasks.worker")


class Reporter:
    """Sends ``task_finished`` and writes every log line of a worker."""

    def __init__(self, worker_id: str, sender: type) -> None:
        self.worker_id = worker_id
        self.sender = sender  # the backend class: Django's signals are sent by it

    # The worker's life

    def worker_started(self, **details: Any) -> None:
        logger.info("%s", Fields(worker=self.worker_id, event="started", **details))
        paths = ",".join(registry.registered_paths())
        logger.info("%s", Fields(worker=self.worker_id, tasks=paths))

    def worker_stopped(self, processed: int) -> None:
        logger.info("%s", Fields(worker=self.worker_id, event="stopped", processed=processed))

    def stop_requested(self, signal_name: str, grace_period: float, running: int) -> None:
        logger.info(
            "%s",
            Fields(
                worker=self.worker_id,
                event="stopping",
                signal=signal_name,
                grace_period=f"{grace_period:g}s",
                running=running,
                detail="taking no new jobs; send the signal again to exit at once",
            ),
        )

    def stop_forced(self, signal_name: str) -> None:
        logger.warning(
            "%s", Fields(worker=self.worker_id, event="exiting now", signal=f"second {signal_name}")
        )

    def grace_over(self, grace_period: float, running: int) -> None:
        logger.warning(
            "%s",
            Fields(
                worker=self.worker_id,
                event="grace period over",
                grace_period=f"{grace_period:g}s",
                stopping_running=running,
            ),
        )

    def released(self, count: int, why: str) -> None:
        """Jobs this worker held and gave back to READY (at stop, or lost track of)."""
        logger.warning("%s", Fields(worker=self.worker_id, event="released", jobs=count, why=why))

    def step_failed(self, what: str) -> None:
        """A shutdown step raised (logged with its traceback); the next steps still run."""
        logger.exception(
            "%s", Fields(worker=self.worker_id, event="shutdown step failed", step=what)
        )

    # Jobs

    def job_finished(self, job: ClaimedJob, outcome: Outcome, status: str | None) -> None:
        """Log the outcome now in the table and send ``task_finished`` (None: discarded).

        ``task_started`` was sent by the pool process that ran the job (see
        ``execution.run``); this one is sent here, once the status is known.
        """
        self._log_outcome(job, outcome, status)
        if status is None:
            return
        task = registry.lookup(job.task_path)
        if task is None:
            return
        try:
            result = running_result(task, job)
        except Exception:
            logger.exception("%s", Fields(job=job.id, event="no TaskResult for task_finished"))
            return
        object.__setattr__(result, "status", TaskResultStatus(status))
        if outcome.error:
            object.__setattr__(result, "errors", [task_error(outcome.error)])
        self._send(task_finished, job, result, outcome)

    def rescued(self, job_id: int, task_path: str, status: str) -> None:
        logger.warning(
            "%s",
            Fields(
                job=job_id,
                task=task_path,
                outcome="RESCUED",
                status=status,
                reason="lease expired (its worker died or froze)",
                next="it runs alone, to tell whether it is the cause"
                if status == "READY"
                else None,
            ),
        )

    def outcome_refused(self, job: ClaimedJob, refusal: BaseException) -> None:
        logger.error(
            "%s",
            Fields(
                job=job.id,
                task=job.task_path,
                event="the database refused its outcome",
                error=f"{type(refusal).__name__}: {first_line(refusal)}",
            ),
        )

    def turn_refused(self, refusal: BaseException, outcomes: int) -> None:
        logger.error(
            "%s",
            Fields(
                worker=self.worker_id,
                event="the database refused this turn's writes",
                error=f"{type(refusal).__name__}: {first_line(refusal)}",
                writing_one_by_one=outcomes,
            ),
        )

    def outcome_dropped(self, job: ClaimedJob) -> None:
        logger.error(
            "%s",
            Fields(
                job=job.id,
                event="the database refused even a plain failure",
                next="it is released at the next heartbeat",
            ),
        )

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome, status: str | None) -> None:
        if status is None:
            logger.warning(
                "%s",
                Fields(
                    job=job.id,
                    task=job.task_path,
                    outcome="DISCARDED",
                    duration=f"{outcome.duration:.3f}s",
                    worker=self.worker_id,
                    reason="lease lost (the job was rescued and belongs to another run now)",
                ),
            )
            return
        if outcome.succeeded:
            label, level = "SUCCESSFUL", logging.INFO
        elif status == TaskResultStatus.READY:
            label, level = "RETRY", logging.WARNING  # a retry is a warning ...
        else:
            label, level = "FAILED", logging.ERROR  # ... a job failed for good an error
        if not logger.isEnabledFor(level):
            return  # one line per job: not even its fields are built when it is not shown
        error = ""
        if outcome.error:
            message = outcome.error.get("message") or outcome.error["exception_class_path"]
            error = f" error={quote(message)}"
        # The same logfmt as ``Fields`` gives, written out: one line per job is on the
        # worker's hot path, and only the task path and the error may need quotes.
        logger.log(
            level,
            "job=%s task=%s outcome=%s duration=%.3fs attempt=%d/%d%s",
            job.id,
            quote(job.task_path),
            label,
            outcome.duration,
            job.attempts,
            job.max_attempts,
            error,
        )

    def _send(
        self, signal_: Any, job: ClaimedJob, result: DbTaskResult, outcome: Outcome | None
    ) -> None:
        """Send a task signal; a receiver's bug must not stop the worker."""
        try:
            if outcome is not None and outcome.succeeded:
                object.__setattr__(result, "_return_value", json.loads(outcome.return_value_json))
            if outcome is not None and outcome.error and result.status == TaskResultStatus.FAILED:
                _send_while_handling(signal_, self.sender, result, outcome.error)
            else:
                signal_.send(self.sender, task_result=result)
        except Exception:
            logger.exception("%s", Fields(job=job.id, event="a signal receiver raised"))


def _send_while_handling(
    signal_: Any, sender: type, result: DbTaskResult, error: dict[str, Any]
) -> None:
    """Send ``task_finished`` for a failed job inside an exception handler, as Django does.

    Django's own receiver logs a failed task with ``sys.exc_info()`` (and error
    trackers read it there too). The exception was raised in a pool process;
    here it is carried by a ``TaskFailed`` whose text is its traceback.
    """
    try:
        raise TaskFailed(error.get("traceback") or error["exception_class_path"])
    except TaskFailed:
        signal_.send(sender, task_result=result)
