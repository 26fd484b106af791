"""The worker loop: claim ready jobs, hand them to the pool, record outcomes.

No SQL lives here (see ``queries.py``) and no argument parsing (see the
``runtasks`` command). ``Worker.step()`` is one iteration, so tests can drive
the loop one turn at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.utils.crypto import get_random_string

from . import queries, registry
from .backend import DatabaseBackend
from .base import DbTaskResult
from .compat import TaskError, TaskResultStatus, task_finished, task_started
from .exceptions import PoisonJob, TaskNotRegistered
from .execution import Outcome, error_entry, running_result
from .notify import Listener
from .pool import Finished, Pool
from .queries import ClaimedJob
from .scheduler import Scheduler

logger = logging.getLogger("django_dbtasks.worker")
T = TypeVar("T")

#: Errors that mean "the database is unreachable right now", not "this job is bad".
CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: Seconds between sweeps that forget long-dead workers.
WORKER_CLEANUP_INTERVAL = 300.0
#: Longest wait between two looks at the schedule table (new or edited schedules).
SCHEDULE_CHECK_INTERVAL = 1.0


class DatabaseUnavailable(Exception):
    """The worker could not reach its database at start."""


@dataclass
class WorkerSettings:
    queues: list[str]
    concurrency: int = 1
    burst: bool = False
    grace_period: float | None = None  # None: the backend's GRACE_PERIOD option
    scheduler: bool = True  # run the cron scheduler in this worker


@dataclass
class _Timers:
    heartbeat: float = 0.0
    cleanup: float = 0.0
    db_retry: float = 0.0
    db_backoff: float = 0.0
    next_poll: float = 0.0
    schedule: float = 0.0


class Pace:
    """How many jobs to claim ahead of the free pool processes.

    An exponential moving average of job durations turns the
    ``PREFETCH_SECONDS`` budget into a number of jobs: a stream of no-op jobs
    is claimed (and completed) a hundred per statement, while hour-long jobs
    are claimed one per free process and never wait behind each other.
    """

    def __init__(self, budget: float, max_batch: int) -> None:
        self.budget = budget
        self.max_batch = max_batch
        self.average: float | None = None

    def observe(self, duration: float) -> None:
        duration = max(duration, 1e-5)
        self.average = duration if self.average is None else 0.9 * self.average + 0.1 * duration

    def ahead(self) -> int:
        if self.average is None or not self.budget:
            return 0
        return min(self.max_batch, int(self.budget / self.average))


@dataclass
class _Stop:
    requested: bool = False
    forced: bool = False
    grace_deadline: float | None = None


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
        self.pool = Pool(
            settings.concurrency,
            before_fork=connections.close_all,
            timeout_of=self._timeout_of,
        )
        self.timers = _Timers()
        self.stop = _Stop()
        self.finished: list[Finished] = []  # outcomes not yet written
        self.finished_since: float | None = None  # when the oldest of them arrived
        per_child = max(1, self.config.MAX_BATCH // settings.concurrency)
        self.pace = Pace(self.config.PREFETCH_SECONDS, per_child)
        self.more_ready = True  # the last claim was full: more jobs may be waiting
        self.notified = False
        self.listener: Listener | None = None
        self.scheduler = Scheduler(self.config.DATABASE) if settings.scheduler else None
        self._in_flight: dict[int, DbTaskResult] = {}  # task_started's result, per job
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
        if self.scheduler is not None:
            self.scheduler.sync_declared()
        self._install_signal_handlers()
        self.pool.start()
        if self.config.NOTIFY and self.connection.vendor == "postgresql":
            self.listener = Listener(self.connection)
        self.timers.heartbeat = time.monotonic() + self.config.HEARTBEAT_INTERVAL
        logger.info(
            "worker=%s started host=%s pid=%s queues=%s concurrency=%s database=%s burst=%s "
            "scheduler=%s",
            self.id,
            socket.gethostname(),
            os.getpid(),
            ",".join(self.settings.queues),
            self.settings.concurrency,
            self.config.DATABASE,
            self.settings.burst,
            self.scheduler is not None,
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
        kill = self.stop.forced or bool(self.pool.holding())
        self.pool.stop(kill=kill)
        self._sync(claim=False)
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
            self.pool.drop_backlog()  # never started: released to other workers on exit
            if not self.pool.holding():
                return False
            if self.stop.grace_deadline is not None and now >= self.stop.grace_deadline:
                logger.warning(
                    "worker=%s grace period of %gs is over; stopping %d running job(s)",
                    self.id,
                    self.grace_period,
                    self.pool.holding(),
                )
                return False
        if now >= self.timers.heartbeat:
            self._maintenance(now)
        if self.scheduler is not None and now >= self.timers.schedule and not self.stop.requested:
            self._schedule(now)
        self._sync(claim=self._should_claim(now))
        if self.settings.burst and self._drained():
            return False
        extra = [self._wakeup_r]
        listening = self._listen()
        if listening is not None:
            extra.append(listening)
        finished, ready = self.pool.wait(self._wait_timeout(), extra)
        if self._wakeup_r in ready:
            self._drain_wakeup()
        if listening is not None and listening in ready:
            self.notified = bool(self._db(lambda: bool(self.listener and self.listener.drain())))
        self.finished.extend(finished)
        return True

    def _schedule(self, now: float) -> None:
        """Fire due cron schedules; look again when the next is due (or within a second)."""
        assert self.scheduler is not None
        delay = self._db(self.scheduler.tick)
        wait = SCHEDULE_CHECK_INTERVAL if delay is None else min(delay, SCHEDULE_CHECK_INTERVAL)
        self.timers.schedule = now + wait
        self.more_ready = True  # a fire may have enqueued jobs for us

    def _should_claim(self, now: float) -> bool:
        if self.stop.requested or now < self.timers.db_retry:
            return False
        return self.more_ready or self.notified or now >= self.timers.next_poll

    def _claim_limit(self) -> int:
        """How many jobs to claim now: room in the pool, in sizable batches."""
        self.pool.capacity = 1 + self.pace.ahead()
        room = min(self.pool.free_slots(), self.config.MAX_BATCH)
        if room <= 0:
            return 0
        if not self.pool.has_idle_child() and room < self.pool.size * self.pool.capacity // 2:
            return 0  # enough work in hand: claim when it runs low, in a bigger batch
        return room

    def _drained(self) -> bool:
        """Burst mode: nothing running or unwritten, and the last claim came back short."""
        return not (self.pool.holding() or self.finished or self.more_ready or self.database_down)

    def _wait_timeout(self) -> float:
        now = time.monotonic()
        limits = [self.timers.heartbeat - now]
        if self.finished:
            since = self.finished_since if self.finished_since is not None else now
            limits.append(since + self.config.PREFETCH_SECONDS - now)
        deadline = self.pool.next_deadline()
        if deadline is not None:
            limits.append(deadline - now)
        if self.stop.grace_deadline is not None:
            limits.append(self.stop.grace_deadline - now)
        if self.scheduler is not None and not self.stop.requested:
            limits.append(self.timers.schedule - now)
        if self.database_down:
            limits.append(self.timers.db_retry - now)
        elif self._claim_limit() and not self.stop.requested:
            limits.append(0.0 if self.more_ready else self.timers.next_poll - now)
        return max(0.0, min(limits))

    def _listen(self) -> int | None:
        """The notification socket to wait on, (re)starting LISTEN if needed."""
        if self.listener is None or self.database_down:
            return None
        if self._db(self.listener.ensure) is None and self.database_down:
            return None
        return self.listener.fileno()

    def _sync(self, claim: bool) -> None:
        """Write finished outcomes and claim more jobs, in one transaction (or statement).

        One commit per loop turn, however many jobs finished: that, not the
        SQL, is what bounds throughput on a disk that fsyncs each commit.
        If the database is unreachable, nothing changes here: the outcomes
        stay in ``self.finished`` and are written when it is back.
        """
        limit = self._claim_limit() if claim else 0
        outcomes = list(self.finished) if self._outcomes_due() else []
        if not outcomes and not limit:
            return

        # A lone statement (a claim, or the completion of a batch of successes) is
        # atomic by itself: in autocommit it costs one round trip, not three.
        failures = sum(1 for item in outcomes if not item.outcome.succeeded)
        statements = failures + (failures < len(outcomes)) + bool(limit)

        def write_and_claim() -> tuple[list[tuple[Finished, str | None]], list[ClaimedJob]]:
            in_transaction = (
                transaction.atomic(using=self.config.DATABASE)
                if statements > 1
                else contextlib.nullcontext()
            )
            with in_transaction:
                written = self._write_outcomes(outcomes)
                claimed = (
                    queries.claim(
                        self.connection, self.settings.queues, limit, self.id, self.config.LEASE
                    )
                    if limit
                    else []
                )
            return written, claimed

        result = self._db(write_and_claim)
        if result is None:
            return
        written, claimed = result
        del self.finished[: len(outcomes)]
        if outcomes:
            self.finished_since = None
        for item, status in written:
            self._after_write(item, status)
        if limit:
            self.notified = False
            self.more_ready = len(claimed) == limit
            if not self.more_ready:
                self.timers.next_poll = time.monotonic() + self.config.POLL_INTERVAL
            self._start(claimed)

    def _outcomes_due(self) -> bool:
        """Whether to write the finished outcomes now, or let more join the batch.

        They wait while the pool still has jobs in hand, up
        to ``PREFETCH_SECONDS`` (or ``MAX_BATCH`` outcomes), so a stream of
        fast jobs costs one commit per batch instead of one per job.
        """
        if not self.finished:
            return False
        if self.finished_since is None:
            self.finished_since = time.monotonic()
        return (
            not self.pool.holding()
            or self.stop.requested
            or len(self.finished) >= self.config.MAX_BATCH
            or time.monotonic() - self.finished_since >= self.config.PREFETCH_SECONDS
        )

    def _start(self, jobs: list[ClaimedJob]) -> None:
        """Hand freshly claimed jobs to the pool; fail unregistered ones at once."""
        runnable = []
        for job in jobs:
            if registry.lookup(job.task_path) is None:
                # Never imported, never run: the row is failed for good, the worker goes on.
                message = registry.not_registered_message(job.task_path)
                outcome = Outcome(
                    job_id=job.id, succeeded=False, error=error_entry(TaskNotRegistered, message)
                )
                self.finished.append(Finished(job, outcome))
                continue
            self._send_signal(task_started, job, TaskResultStatus.RUNNING)
            runnable.append(job)
        self.pool.submit(runnable)

    @staticmethod
    def _timeout_of(job: ClaimedJob) -> float | None:
        task = registry.lookup(job.task_path)
        return None if task is None else task.timeout

    # Recording outcomes

    def _write_outcomes(self, outcomes: list[Finished]) -> list[tuple[Finished, str | None]]:
        """Write outcomes (inside the caller's transaction); return each one's new status.

        The status is None when the write did not apply: the worker lost the
        job's lease, and its outcome belongs to nobody.
        """
        completed = queries.complete_many(
            self.connection,
            [
                (item.job.id, item.job.lease_token, item.outcome.return_value_json)
                for item in outcomes
                if item.outcome.succeeded
            ],
        )
        written: list[tuple[Finished, str | None]] = []
        for item in outcomes:
            status: str | None
            if item.outcome.succeeded:
                status = TaskResultStatus.SUCCESSFUL if item.job.id in completed else None
            else:
                task = registry.lookup(item.job.task_path)
                retry_in = None if task is None else task.retry_delay_after(item.job.attempts)
                status = queries.fail_attempt(
                    self.connection,
                    item.job.id,
                    item.job.lease_token,
                    item.outcome.error or {},
                    retry_in,
                )
            written.append((item, status))
        return written

    def _after_write(self, item: Finished, status: str | None) -> None:
        self.processed += 1
        if item.outcome.succeeded:
            self.pace.observe(item.outcome.duration)
        self._log_outcome(item.job, item.outcome, status)
        if status is None:
            self._in_flight.pop(item.job.id, None)
        else:
            self._send_signal(task_finished, item.job, status, item.outcome)

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome, status: str | None) -> None:
        if status is None:
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
            message = outcome.error.get("message") or outcome.error["exception_class_path"]
            error = f" error={message}"
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
        """Send task_started (``outcome`` None) or task_finished with a TaskResult.

        The result built for task_started is kept and updated for
        task_finished: one object per job, not two, on the worker's hot path.
        """
        result = self._in_flight.pop(job.id, None)
        if outcome is None or result is None:
            task = registry.lookup(job.task_path)
            if task is None:
                return
            result = running_result(task, job)
        if outcome is None:
            self._in_flight[job.id] = result
        else:
            object.__setattr__(result, "status", TaskResultStatus(status))
            if outcome.error:
                error = TaskError(
                    exception_class_path=outcome.error["exception_class_path"],
                    traceback=outcome.error.get("traceback", ""),
                )
                object.__setattr__(result, "errors", [error])
            elif outcome.succeeded:
                value = json.loads(outcome.return_value_json)
                object.__setattr__(result, "_return_value", value)
        try:
            signal_.send(type(self.backend), task_result=result)
        except Exception:
            # A receiver's bug must not stop the worker; the job's outcome stands.
            logger.exception("job=%s a receiver of %s raised", job.id, status)

    # Maintenance: heartbeat, rescue, cleanup

    def _maintenance(self, now: float) -> None:
        self.timers.heartbeat = now + self.config.HEARTBEAT_INTERVAL
        held = [job.lease_token for job in self.pool.running()]
        held += [item.job.lease_token for item in self.finished]
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
        self.pool.stop_starting_jobs()
        logger.info(
            "worker=%s got %s: taking no new jobs, waiting up to %gs for %d running job(s) "
            "(send it again to exit at once)",
            self.id,
            name,
            self.grace_period,
            self.pool.holding(),
        )
