"""What the worker tells the world: Django's task signals and its own log lines.

Every line is logfmt (see ``logfmt.py``) and begins with the thing it is
about (``worker=`` or ``job=``), so one ``grep job=42`` finds a job's whole
story across workers. Levels are chosen for alerting: a job that failed for
good is an ERROR (``outcome=FAILED``, or ``outcome=POISON`` when its worker
died once too often), an attempt that will be retried or a job rescued from
a dead worker a WARNING, a success INFO. An alert on ERROR lines fires once
per job that gave up, never for a retry.

Django's task signals are sent where the task runs, as Django's own
backends do: ``task_started`` by the pool process before the call, and
``task_finished`` once the outcome is written (see ``announcing.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from . import registry, tallies
from .claimed import ClaimedJob
from .execution import Outcome
from .logfmt import Fields, quote
from .outages import first_line

logger = logging.getLogger("django_dbtasks.worker")

#: The log line's outcome and level: a retry is a warning, a job failed for good an error.
LABELS = {
    tallies.SUCCESSFUL: ("SUCCESSFUL", logging.INFO),
    tallies.RETRIED: ("RETRY", logging.WARNING),
    tallies.FAILED: ("FAILED", logging.ERROR),
}


class Reporter:
    """Writes every log line of a worker."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id

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

    def outcome_written(self, job: ClaimedJob, outcome: Outcome, status: str | None) -> None:
        """Log an outcome now in the table (``status`` None: discarded, the lease was lost).

        Its ``task_finished`` is sent by ``announcing.send_task_finished``,
        in the pool process that ran the job when it can.
        """
        self._log_outcome(job, outcome, status)

    def rescued(self, job_id: int, task_path: str, status: str) -> None:
        """A dead worker's job taken back: READY again is a warning, FAILED as poison an error."""
        if status == "FAILED":
            logger.error(
                "%s",
                Fields(
                    job=job_id,
                    task=task_path,
                    outcome="POISON",
                    status=status,
                    reason="its worker died again while it ran alone: it is failed for good",
                ),
            )
            return
        logger.warning(
            "%s",
            Fields(
                job=job_id,
                task=task_path,
                outcome="RESCUED",
                status=status,
                reason="lease expired (its worker died or froze)",
                next="it runs alone, to tell whether it is the cause",
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
        label, level = LABELS[tallies.ending(outcome.succeeded, status)]
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
