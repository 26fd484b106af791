"""The worker loop: claim ready jobs, hand them to the pool, record outcomes.

No SQL lives here (see ``queries.py``) and no argument parsing (see the
``runtasks`` command). ``Worker.step()`` is one iteration, so tests can drive
the loop one turn at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
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

from . import execution, queries, registry
from .backend import DatabaseBackend
from .base import DbTaskResult
from .claimed import ClaimedJob
from .compat import TaskError, TaskResultStatus, task_finished, task_started
from .exceptions import ArgumentNotSerializable, PoisonJob, TaskFailed, TaskNotRegistered
from .execution import Outcome, error_entry, running_result
from .notify import Listener
from .outages import is_outage, sqlstate
from .pool import Finished, Limits, Pool
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
    max_tasks_per_child: int | None = None  # recycle a pool process after N jobs
    max_memory_per_child: int | None = None  # ... or once its peak RSS passes N KB


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
            limits=Limits(settings.max_tasks_per_child, settings.max_memory_per_child),
        )
        self.timers = _Timers()
        self.stop = _Stop()
        self.finished: list[Finished] = []  # outcomes not yet written
        self.finished_since: float | None = None  # when the oldest of them arrived
        per_child = max(1, self.config.MAX_BATCH // settings.concurrency)
        self.pace = Pace(self.config.PREFETCH_SECONDS, per_child)
        self.more_ready = True  # the last claim was full: more jobs may be waiting
        #: A suspect (a job whose worker died while holding it) may be waiting: claim
        #: nothing else until the pool is empty, then claim it alone.
        self.suspects_waiting = False
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
            self.backend.alias,
        )
        if self.scheduler is not None:
            self.scheduler.sync_declared()
        self._install_signal_handlers()
        self.pool.start()
        if self.config.NOTIFY and self.connection.vendor == "postgresql":
            self.listener = Listener(self.connection)
        # Rescue before the first claim: a burst worker started from cron may find
        # nothing READY and exit before its first heartbeat would have come.
        self._maintenance(time.monotonic())
        logger.info(
            "worker=%s started host=%s pid=%s queues=%s concurrency=%s database=%s burst=%s "
            "scheduler=%s",
            self.id,
            socket.gethostname(),
            os.getpid(),
            ",".join(self.settings.queues) or "*",
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
        """Stop the pool, write what finished, release the rest, say so: each step
        runs even if an earlier one failed, so nothing stays held by a stopped worker."""
        kill = self.stop.forced or bool(self.pool.holding())
        self._each_step(lambda: self.pool.stop(kill=kill), "stopping the pool")
        self._each_step(lambda: self._sync(claim=False), "writing the last outcomes")
        released = self._db(lambda: queries.release(self.connection, self.id)) or 0
        if released:
            logger.warning("worker=%s put %d unfinished job(s) back to READY", self.id, released)
        self._db(lambda: queries.mark_worker_stopped(self.connection, self.id))
        self._each_step(self._restore_signal_handlers, "restoring signal handlers")
        self._each_step(connections.close_all, "closing connections")
        logger.info("worker=%s stopped processed=%d", self.id, self.processed)

    def _each_step(self, step: Callable[[], object], what: str) -> None:
        try:
            step()
        except Exception:
            logger.exception("worker=%s failed while %s; going on with the shutdown", self.id, what)

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
        """How many jobs to claim now: room in the pool, in sizable batches.

        While a suspect may be waiting, nothing until the worker holds nothing,
        then that one job alone (see ``queries.claim``).
        """
        if self.suspects_waiting:
            return 0 if self.pool.holding() or self.finished else 1
        self.pool.capacity = 1 + self.pace.ahead()
        room = min(self.pool.free_slots(), self.config.MAX_BATCH)
        if room <= 0:
            return 0
        if not self.pool.has_idle_child() and room < self.pool.size * self.pool.capacity // 2:
            return 0  # enough work in hand: claim when it runs low, in a bigger batch
        return room

    def _drained(self) -> bool:
        """Burst mode: nothing running or unwritten, and the last claim came back short."""
        return not (
            self.pool.holding()
            or self.finished
            or self.more_ready
            or self.suspects_waiting
            or self.database_down
        )

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
        solo = bool(limit) and self.suspects_waiting
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
                        self.connection,
                        self.settings.queues,
                        limit,
                        self.id,
                        self.config.LEASE,
                        suspects=solo,
                        backend=self.backend.alias,
                    )
                    if limit
                    else []
                )
            return written, claimed

        try:
            result = self._db(write_and_claim, raise_refusal=True)
        except DatabaseError as refusal:
            self._refused(outcomes, refusal)
            return
        if result is None:
            return
        written, claimed = result
        self._written(len(outcomes), written)
        if limit:
            self.notified = False
            if solo:
                self.suspects_waiting = bool(claimed)  # one at a time, until none is left
                self.more_ready = True
            else:
                self.more_ready = len(claimed) == limit
            if not self.more_ready:
                self.timers.next_poll = time.monotonic() + self.config.POLL_INTERVAL
            self._start(claimed)

    def _written(self, count: int, written: list[tuple[Finished, str | None]]) -> None:
        """The first ``count`` unwritten outcomes are in the table now: forget them."""
        del self.finished[:count]
        if count:
            self.finished_since = None
        for item, status in written:
            self._after_write(item, status)

    def _refused(self, outcomes: list[Finished], refusal: DatabaseError) -> None:
        """The database refused the turn's statements (not an outage): find out why.

        Each outcome is then written on its own. One the database refuses is
        replaced by a failed attempt that says why (and, if even that is
        refused, by one holding no text of the job's), so the refusal ends
        the job that caused it and no other. A claim refused on its own is
        logged and tried again after the poll interval, never in a tight loop.
        """
        logger.error(
            "worker=%s the database refused this turn's writes (%s: %s); writing %d "
            "outcome(s) one by one",
            self.id,
            type(refusal).__name__,
            _first_line(refusal),
            len(outcomes),
        )
        if not outcomes:
            self.more_ready = False
            self.timers.next_poll = time.monotonic() + max(self.config.POLL_INTERVAL, 1.0)
            return
        written: list[tuple[Finished, str | None]] = []
        for done, item in enumerate(outcomes):
            result = self._write_alone(item)
            if result is _OUTAGE:
                self._written(done, written)  # the rest waits for the database
                return
            if result is not _DROPPED:
                written.append(result)
        self._written(len(outcomes), written)

    def _write_alone(self, item: Finished) -> Any:
        """Write one outcome by itself; on refusal, write a failure that says why.

        Returns ``(outcome written, new status)``, or ``_OUTAGE`` / ``_DROPPED``.
        """
        for attempt in range(3):
            try:
                written = self._db(functools.partial(self._write_outcomes, [item]), True)
            except DatabaseError as refusal:
                logger.error(
                    "job=%s task=%s the database refused its outcome (%s: %s)",
                    item.job.id,
                    item.job.task_path,
                    type(refusal).__name__,
                    _first_line(refusal),
                )
                item = Finished(item.job, _refused_outcome(item, refusal, plain=attempt > 0))
                continue
            if written is None:
                return _OUTAGE
            return written[0]
        logger.error(
            "job=%s the database refused even a plain failure; it is released at the next "
            "heartbeat",
            item.job.id,
        )
        return _DROPPED

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
        """Hand freshly claimed jobs to the pool; fail at once those that cannot run."""
        runnable = []
        for job in jobs:
            error = None
            if registry.lookup(job.task_path) is None:
                # Never imported, never run: the row is failed for good, the worker goes on.
                error = error_entry(
                    TaskNotRegistered, registry.not_registered_message(job.task_path)
                )
            elif job.unrunnable:
                error = error_entry(
                    ArgumentNotSerializable,
                    f"The job's row cannot be run ({job.unrunnable}), so it was never run. "
                    "enqueue() never writes such a row: this one was written some other way "
                    "(SQL, another program, an older release).",
                )
            if error is not None:
                outcome = Outcome(job_id=job.id, succeeded=False, error=error)
                self.finished.append(Finished(job, outcome))
                continue
            try:
                self._send_signal(task_started, job, TaskResultStatus.RUNNING)
            except Exception as exc:  # the framework cannot build its TaskResult (deep args)
                failure = execution.failed(job.id, exc, "The job's TaskResult could not be built")
                self.finished.append(Finished(job, failure))
                continue
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
        # A retry is a warning; a job that failed for good is an error: alerts can tell.
        log = {"SUCCESSFUL": logger.info, "RETRY": logger.warning}.get(label, logger.error)
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
            try:
                result = running_result(task, job)
            except Exception:
                if outcome is None:
                    raise  # task_started: ``_start`` fails the job
                logger.exception("job=%s no TaskResult for task_finished", job.id)
                return
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
        try:
            if outcome is not None and outcome.succeeded:
                value = json.loads(outcome.return_value_json)
                object.__setattr__(result, "_return_value", value)
            if outcome is not None and outcome.error and status == TaskResultStatus.FAILED:
                _send_while_handling(signal_, type(self.backend), result, outcome.error)
            else:
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
        deaths = max(self.config.MAX_CRASHES, 2)
        poison = error_entry(
            PoisonJob,
            f"This job's runs ended with their worker dying {deaths} times in a row "
            f"(killed, out of memory, or stopped heartbeating); the last {deaths - 1} "
            "time(s) it was the only job that worker held. So it is FAILED as poison "
            "instead of being run again. Check the workers' logs and memory use.",
        )
        rescued = self._db(
            lambda: queries.rescue_expired(self.connection, self.config.MAX_CRASHES, poison)
        )
        for job_id, task_path, status in rescued or []:
            logger.warning(
                "job=%s task=%s outcome=RESCUED status=%s reason=lease expired (its worker "
                "died or froze)%s",
                job_id,
                task_path,
                status,
                "; it runs alone next, to tell whether it is the cause"
                if status == "READY"
                else "",
            )
        waiting = self._db(
            lambda: queries.suspect_waiting(
                self.connection, self.settings.queues, self.backend.alias
            )
        )
        self.suspects_waiting = bool(waiting)
        if now >= self.timers.cleanup:
            self.timers.cleanup = now + WORKER_CLEANUP_INTERVAL
            self._db(
                lambda: queries.delete_dead_workers(self.connection, self.config.WORKER_RETENTION)
            )

    def _db(self, operation: Callable[[], T], raise_refusal: bool = False) -> T | None:
        """Run a database operation; on an outage log, back off and return None.

        A refusal (see ``outages.py``) is no outage: retrying the same work
        cannot help. It is raised if ``raise_refusal`` (the caller finds the
        job that caused it), else logged with its traceback, and None returned.
        """
        try:
            result = operation()
        except DatabaseError as error:
            if not is_outage(error, self.connection):
                if raise_refusal:
                    raise
                logger.exception("worker=%s the database refused a statement", self.id)
                return None
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


#: What ``Worker._write_alone`` returns when the write must wait for the database,
#: and when it was given up (the job stays RUNNING until it is released).
_OUTAGE = object()
_DROPPED = object()


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _refused_outcome(item: Finished, refusal: DatabaseError, plain: bool) -> Outcome:
    """A failed attempt in place of an outcome the database refused to store.

    ``plain`` leaves out every word of the job's own (its error text may be
    what the database refused): only the refusal's class and SQLSTATE remain.
    """
    if plain:
        text = (
            f"The database refused to store this attempt's outcome ({type(refusal).__name__}, "
            f"SQLSTATE {sqlstate(refusal) or 'unknown'})."
        )
    else:
        text = (
            "The database refused to store this attempt's outcome: "
            f"{type(refusal).__name__}: {str(refusal).strip()}"
        )
    error = error_entry(type(refusal), text)
    return Outcome(
        job_id=item.job.id,
        succeeded=False,
        error=error,
        duration=item.outcome.duration,
        finished_at=item.outcome.finished_at,
    )
