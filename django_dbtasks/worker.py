"""The worker loop: claim ready jobs, hand them to the pool, record outcomes.

No SQL lives here (see ``queries.py``) and no argument parsing (see the
``runtasks`` command). ``Worker.step()`` is one iteration, so tests can drive
the loop one turn at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils.crypto import get_random_string

from . import queries, registry
from .backend import DatabaseBackend
from .base import DbTaskResult
from .compat import TaskError, TaskResultStatus, task_finished, task_started
from .exceptions import PoisonJob, TaskNotRegistered
from .execution import Outcome, error_entry
from .pool import Finished, Pool
from .queries import ClaimedJob

logger = logging.getLogger("django_dbtasks.worker")
T = TypeVar("T")

#: Errors that mean "the database is unreachable right now", not "this job is bad".
CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: Seconds between sweeps that forget long-dead workers.
WORKER_CLEANUP_INTERVAL = 300.0


class DatabaseUnavailable(Exception):
    """The worker could not reach its database at start."""


@dataclass
class WorkerSettings:
    queues: list[str]
    concurrency: int = 1
    burst: bool = False
    grace_period: float | None = None  # None: the backend's GRACE_PERIOD option


@dataclass
class _Timers:
    heartbeat: float = 0.0
    cleanup: float = 0.0
    db_retry: float = 0.0
    db_backoff: float = 0.0
    last_claim_empty: bool = False


@dataclass
class _Stop:
    requested: bool = False
    forced: bool = False
    grace_deadline: float | None = None
    signals: list[int] = field(default_factory=list)


def new_worker_id() -> str:
    host = socket.gethostname().split(".")[0][:30]
    return f"{host}-{os.getpid()}-{get_random_string(6).lower()}"


class Worker:
    def __init__(self, backend: DatabaseBackend, settings: WorkerSettings) -> None:
        self.backend = backend
        self.config = backend.config
        self.settings = settings
        self.grace_period = (
            self.config.GRACE_PERIOD if settings.grace_period is None else settings.grace_period
        )
        self.id = new_worker_id()
        self.pool = Pool(settings.concurrency, self.id, before_fork=connections.close_all)
        self.timers = _Timers()
        self.stop = _Stop()
        self.pending: list[Finished] = []  # outcomes not yet written (database down)
        self.processed = 0
        self._wakeup_r, self._wakeup_w = -1, -1
        self._previous_handlers: dict[int, Any] = {}

    @property
    def database_down(self) -> bool:
        """Whether the last database operation failed for want of a connection."""
        return bool(self.timers.db_backoff)

    @property
    def connection(self) -> Any:
        return connections[self.config.DATABASE]

    # Lifecycle

    def run(self) -> int:
        """Serve until stopped (or, with ``burst``, until no job is ready); return exit code."""
        self.start()
        try:
            while self.step():
                pass
        finally:
            self.shutdown()
        return 1 if self.stop.forced else 0

    def start(self) -> None:
        registry.autodiscover()
        self.check_database()
        queries.register_worker(
            self.connection,
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.settings.queues,
            self.settings.concurrency,
        )
        self._install_signal_handlers()
        self.pool.start()
        self.timers.heartbeat = time.monotonic() + self.config.HEARTBEAT_INTERVAL
        logger.info(
            "worker=%s started host=%s pid=%s queues=%s concurrency=%s database=%s burst=%s",
            self.id,
            socket.gethostname(),
            os.getpid(),
            ",".join(self.settings.queues),
            self.settings.concurrency,
            self.config.DATABASE,
            self.settings.burst,
        )
        logger.info("worker=%s tasks=%s", self.id, ", ".join(registry.registered_paths()))

    def check_database(self) -> None:
        """Raise ``DatabaseUnavailable`` with advice if the job table cannot be reached."""
        from .models import Job

        alias = self.config.DATABASE
        try:
            self.connection.ensure_connection()
        except CONNECTION_ERRORS as error:
            settings_dict = self.connection.settings_dict
            where = settings_dict.get("HOST") or settings_dict.get("NAME")
            raise DatabaseUnavailable(
                f"Cannot connect to database {alias!r} ({where}): {str(error).strip()}. "
                "Is the database server running, and are DATABASES settings right?"
            ) from error
        try:
            Job.objects.using(alias).exists()
        except DatabaseError as error:
            raise DatabaseUnavailable(
                f"The job table is missing in database {alias!r} ({str(error).strip()}): "
                "run 'python manage.py migrate'."
            ) from error

    def shutdown(self) -> None:
        kill = self.stop.forced or bool(self.pool.running())
        self.pool.stop(kill=kill)
        self._flush_pending()
        released = self._db(lambda: queries.release(self.connection, self.id)) or 0
        if released:
            logger.warning("worker=%s put %d unfinished job(s) back to READY", self.id, released)
        self._db(lambda: queries.mark_worker_stopped(self.connection, self.id))
        self._restore_signal_handlers()
        connections.close_all()
        logger.info("worker=%s stopped processed=%d", self.id, self.processed)

    # One turn of the loop

    def step(self) -> bool:
        """Do one iteration; return False when the worker should exit."""
        now = time.monotonic()
        if self.stop.forced:
            return False
        if self.stop.requested:
            if not self.pool.running():
                return False
            if self.stop.grace_deadline is not None and now >= self.stop.grace_deadline:
                logger.warning(
                    "worker=%s grace period of %gs is over; stopping %d running job(s)",
                    self.id,
                    self.grace_period,
                    len(self.pool.running()),
                )
                return False
        self._flush_pending()
        if now >= self.timers.heartbeat:
            self._maintenance(now)
        claimed = 0
        if not self.stop.requested and not self.pending and now >= self.timers.db_retry:
            claimed = self._claim_and_dispatch()
        if self.settings.burst and not claimed and not self.pool.running() and not self.pending:
            if now >= self.timers.db_retry:
                return False
        finished, woke = self.pool.wait(self._wait_timeout(claimed), [self._wakeup_r])
        if woke:
            self._drain_wakeup()
        for item in finished:
            self._record(item)
        return True

    def _wait_timeout(self, claimed: int) -> float:
        now = time.monotonic()
        limits = [self.timers.heartbeat - now]
        deadline = self.pool.next_deadline()
        if deadline is not None:
            limits.append(deadline - now)
        if self.stop.grace_deadline is not None:
            limits.append(self.stop.grace_deadline - now)
        if self.timers.db_retry > now:
            limits.append(self.timers.db_retry - now)
        if claimed and self.pool.idle_count():
            limits.append(0.0)  # more may be ready right away
        elif not self.pool.idle_count():
            pass  # busy: wait for a child to finish
        else:
            limits.append(self.config.POLL_INTERVAL)
        return max(0.0, min(limits))

    def _claim_and_dispatch(self) -> int:
        idle = self.pool.idle_count()
        if not idle:
            return 0
        jobs = self._db(
            lambda: queries.claim(
                self.connection, self.settings.queues, idle, self.id, self.config.LEASE
            )
        )
        for job in jobs or []:
            self._dispatch(job)
        return len(jobs or [])

    def _dispatch(self, job: ClaimedJob) -> None:
        task = registry.lookup(job.task_path)
        if task is None:
            # Never imported, never run: the row is failed for good, the worker goes on.
            error = error_entry(TaskNotRegistered, registry.not_registered_message(job.task_path))
            self._record(Finished(job, Outcome(job_id=job.id, succeeded=False, error=error)))
            return
        self._send_signal(task_started, job, TaskResultStatus.RUNNING)
        self.pool.submit(job, task.timeout)

    # Recording outcomes

    def _record(self, item: Finished) -> None:
        job, outcome = item.job, item.outcome
        task = registry.lookup(job.task_path)
        applied: bool | None
        if outcome.succeeded:
            status: str = TaskResultStatus.SUCCESSFUL
            applied = self._db(
                lambda: queries.complete(
                    self.connection, job.id, job.lease_token, outcome.return_value_json
                )
            )
        else:
            retry_in = None if task is None else task.retry_delay_after(job.attempts)
            written = self._db(
                lambda: queries.fail_attempt(
                    self.connection, job.id, job.lease_token, outcome.error or {}, retry_in
                )
            )
            if written is None and self.database_down:
                applied = None  # the database is down, not the lease lost
            else:
                applied = written is not None
                status = written or TaskResultStatus.FAILED
        if applied is None:
            self.pending.append(item)  # database down: write it when it is back
            return
        self.processed += 1
        self._log_outcome(job, outcome, status, applied)
        if applied and task is not None:
            self._send_signal(task_finished, job, status, outcome)

    def _flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for index, item in enumerate(pending):
            self._record(item)
            if self.pending:  # still down: keep the rest in order
                self.pending.extend(pending[index + 1 :])
                return

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome, status: str, applied: bool) -> None:
        if not applied:
            logger.warning(
                "job=%s task=%s outcome=DISCARDED duration=%.3fs worker=%s reason=lease lost "
                "(the job was rescued and belongs to another run now)",
                job.id,
                job.task_path,
                outcome.duration,
                self.id,
            )
            return
        label = "SUCCESSFUL" if outcome.succeeded else ("RETRY" if status == "READY" else "FAILED")
        error = ""
        if outcome.error:
            last_line = outcome.error.get("traceback", "").strip().splitlines()[-1:]
            error = f" error={last_line[0] if last_line else outcome.error['exception_class_path']}"
        log = logger.info if outcome.succeeded else logger.warning
        log(
            "job=%s task=%s outcome=%s duration=%.3fs attempt=%d/%d%s",
            job.id,
            job.task_path,
            label,
            outcome.duration,
            job.attempts,
            job.max_attempts,
            error,
        )

    def _send_signal(
        self, signal_: Any, job: ClaimedJob, status: str, outcome: Outcome | None = None
    ) -> None:
        task = registry.lookup(job.task_path)
        if task is None or not signal_.receivers:
            return
        errors = []
        if outcome is not None and outcome.error:
            errors.append(
                TaskError(
                    exception_class_path=outcome.error["exception_class_path"],
                    traceback=outcome.error.get("traceback", ""),
                )
            )
        result = DbTaskResult(
            task=task,
            id=str(job.id),
            status=TaskResultStatus(status),
            enqueued_at=job.enqueued_at,
            started_at=job.started_at,
            finished_at=None,
            last_attempted_at=None,
            args=job.args,
            kwargs=job.kwargs,
            backend=self.backend.alias,
            errors=errors,
            worker_ids=job.worker_ids,
        )
        if outcome is not None and outcome.succeeded:
            import json

            object.__setattr__(result, "_return_value", json.loads(outcome.return_value_json))
        try:
            signal_.send(type(self.backend), task_result=result)
        except Exception:
            logger.exception("job=%s a %s receiver raised", job.id, "signal")

    # Maintenance: heartbeat, rescue, cleanup

    def _maintenance(self, now: float) -> None:
        self.timers.heartbeat = now + self.config.HEARTBEAT_INTERVAL
        held = [job.lease_token for job in self.pool.running()]
        held += [item.job.lease_token for item in self.pending]
        self._db(lambda: queries.heartbeat(self.connection, self.id, held, self.config.LEASE))
        orphans = self._db(lambda: queries.release(self.connection, self.id, held))
        if orphans:
            logger.warning(
                "worker=%s put back %d job(s) it had claimed but lost track of", self.id, orphans
            )
        poison = error_entry(
            PoisonJob,
            f"This job's runs ended with their worker dying {self.config.MAX_CRASHES} times "
            "in a row (killed, out of memory, or stopped heartbeating), so it is FAILED as "
            "poison instead of being run again. Check the workers' logs and memory use.",
        )
        rescued = self._db(
            lambda: queries.rescue_expired(self.connection, self.config.MAX_CRASHES, poison)
        )
        for job_id, task_path, status in rescued or []:
            logger.warning(
                "job=%s task=%s outcome=RESCUED status=%s reason=lease expired (its worker "
                "died or froze)",
                job_id,
                task_path,
                status,
            )
        if now >= self.timers.cleanup:
            self.timers.cleanup = now + WORKER_CLEANUP_INTERVAL
            self._db(
                lambda: queries.delete_dead_workers(self.connection, self.config.WORKER_RETENTION)
            )

    def _db(self, operation: Callable[[], T]) -> T | None:
        """Run a database operation; on a lost connection log, back off and return None."""
        try:
            result = operation()
        except CONNECTION_ERRORS as error:
            backoff = min(max(self.timers.db_backoff * 2, 0.5), 10.0)
            if not self.timers.db_backoff:
                logger.error(
                    "worker=%s database unavailable (%s); retrying with backoff up to 10s",
                    self.id,
                    str(error).strip().splitlines()[0] if str(error).strip() else error,
                )
            self.timers.db_backoff = backoff
            self.timers.db_retry = time.monotonic() + backoff
            try:
                self.connection.close()
            except DatabaseError:
                pass
            return None
        if self.timers.db_backoff:
            logger.warning("worker=%s database reachable again", self.id)
            self.timers.db_backoff = 0.0
        return result

    # Signals

    def _install_signal_handlers(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        if self._wakeup_w != -1:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            self._wakeup_r = self._wakeup_w = -1

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.stop.requested:
            self.stop.forced = True
            logger.warning("worker=%s second %s: exiting now", self.id, name)
            return
        self.stop.requested = True
        self.stop.grace_deadline = time.monotonic() + self.grace_period
        logger.info(
            "worker=%s got %s: taking no new jobs, waiting up to %gs for %d running job(s) "
            "(send it again to exit at once)",
            self.id,
            name,
            self.grace_period,
            len(self.pool.running()),
        )
