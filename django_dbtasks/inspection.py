"""What the queues and workers look like now: the read side that operators' tools share.

``take()`` reads a ``Snapshot`` in three statements: the per-queue counts with
the oldest due job's wait (``queries.queue_counts``: one statement, each part
bounded by a partial index, so its cost follows what waits and runs, never the
finished history), the workers with their state (``WorkerQuerySet.with_state``,
by the database's clock) and the jobs they are running. ``manage.py tasks``,
the admin overview, the health rules (``alerts``) and the Prometheus collector
(``metrics``) all read it, so they cannot disagree about what is live or due.
It also says which backends are configured and how long a heartbeat holds.
Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, router
from django.db.models import DurationField, ExpressionWrapper, F
from django.db.models.functions import Now

from . import queries
from .backend import DatabaseBackend
from .compat import task_backends
from .conf import Options
from .models import Job, Worker, WorkerState

# The configuration


def database_backends() -> list[DatabaseBackend]:
    """Every configured ``DatabaseBackend`` that loaded without a configuration error."""
    found = []
    for alias in getattr(settings, "TASKS", {}) or {}:
        try:
            backend = task_backends[alias]
        except Exception:  # a broken TASKS entry is the system checks' business
            continue
        if isinstance(backend, DatabaseBackend) and backend.config_error is None:
            found.append(backend)
    return found


def configured_queues_by_alias(
    backends: Iterable[DatabaseBackend] | None = None,
) -> dict[str, list[str]]:
    """Each alias of our backend and the queues its TASKS entry names (none: any name)."""
    chosen = database_backends() if backends is None else backends
    return {backend.alias: sorted(getattr(backend, "queues", ())) for backend in chosen}


def liveness_seconds(backends: Iterable[DatabaseBackend] | None = None) -> float:
    """Seconds without a heartbeat after which a worker counts as dead: the longest LEASE.

    That is when its jobs are rescued too, so "dead" here means what it means
    to the queue.
    """
    chosen = database_backends() if backends is None else backends
    return max((backend.config.LEASE for backend in chosen), default=Options.LEASE)


def jobs_database() -> str:
    """The alias the job table is read through (the router's, as the ORM and the admin do)."""
    return router.db_for_write(Job)


# The snapshot


@dataclass
class RunningJob:
    """A RUNNING job, and how long its current attempt has run (database clock)."""

    id: int
    task_path: str
    queue_name: str
    running_for: float | None


@dataclass
class WorkerSnapshot:
    """One ``runtasks`` process as its row and its running jobs show it."""

    id: str
    alias: str
    hostname: str
    pid: int
    queues: list[str]  # empty: every queue of its alias
    concurrency: int
    state: str  # a ``WorkerState`` value
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: float  # seconds, by the database's clock
    running: list[RunningJob] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.state == WorkerState.LIVE

    def serves(self, alias: str, queue: str) -> bool:
        """Whether this worker takes jobs of ``queue`` in ``alias`` (no queues: all of them)."""
        return self.alias == alias and (not self.queues or queue in self.queues)


@dataclass
class QueueSnapshot:
    """One queue of one alias: what waits, runs and failed, and the live workers serving it."""

    alias: str
    name: str
    ready: int = 0  # READY, due or not
    due: int = 0  # READY and due now
    running: int = 0
    failed: int = 0  # FAILED rows kept (until pruned)
    cancelled: int = 0
    oldest_due_wait: float | None = None  # seconds the oldest due job has waited
    workers: list[WorkerSnapshot] = field(default_factory=list)  # live ones only


@dataclass
class Snapshot:
    """The queues and workers of one moment, and the liveness rule that sorted them."""

    queues: list[QueueSnapshot]
    workers: list[WorkerSnapshot]
    liveness: float

    def only(self, names: Iterable[str]) -> Snapshot:
        """The part about the queues ``names``: those queues, and the workers serving one."""
        wanted = set(names)
        return Snapshot(
            queues=[queue for queue in self.queues if queue.name in wanted],
            workers=[w for w in self.workers if any(w.serves(w.alias, n) for n in wanted)],
            liveness=self.liveness,
        )


def queue_names(worker: Worker) -> list[str]:
    """The worker's queues; a stored value of the wrong shape gives the names it holds."""
    queues: Any = worker.queues
    if isinstance(queues, str):
        return [queues]
    if not isinstance(queues, list):
        return []
    return [name for name in queues if isinstance(name, str)]


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _age(column: str) -> ExpressionWrapper:
    """How long ago ``column`` was, by the database's clock (as the liveness rule measures)."""
    return ExpressionWrapper(Now() - F(column), output_field=DurationField())


def workers(
    database: str, liveness: float, stopped: bool = False, jobs: bool = True
) -> list[WorkerSnapshot]:
    """Live and dead workers (and cleanly stopped ones if ``stopped``), newest first,
    each with the jobs it runs (unless ``jobs`` is false: one statement fewer)."""
    rows = (
        Worker.objects.using(database)
        .with_state(liveness)
        .annotate(heartbeat_age=_age("last_heartbeat_at"))
    )
    if not stopped:
        rows = rows.exclude(stopped_at__isnull=False)
    found = [
        WorkerSnapshot(
            id=row.id,
            alias=row.backend,
            hostname=row.hostname,
            pid=row.pid,
            queues=queue_names(row),
            concurrency=row.concurrency,
            state=row.state,  # type: ignore[attr-defined]
            started_at=row.started_at,
            last_heartbeat_at=row.last_heartbeat_at,
            heartbeat_age=max(0.0, _seconds(row.heartbeat_age) or 0.0),  # type: ignore[attr-defined]
        )
        for row in rows.order_by("-started_at", "id")
    ]
    by_id = {worker.id: worker for worker in found}
    if by_id and jobs:
        running = (
            Job.objects.using(database)
            .running()
            .filter(claimed_by__in=list(by_id))
            .annotate(running_for=_age("last_attempted_at"))
            .order_by("id")
            .values_list("id", "task_path", "queue_name", "claimed_by", "running_for")
        )
        for job_id, task_path, queue_name, claimed_by, running_for in running:
            by_id[claimed_by].running.append(
                RunningJob(job_id, task_path, queue_name, _seconds(running_for))
            )
    return found


def queues(
    database: str, configured: dict[str, list[str]], settled: bool = True
) -> dict[tuple[str, str], QueueSnapshot]:
    """Every configured queue and every queue that holds jobs, by ``(alias, name)``."""
    found: dict[tuple[str, str], QueueSnapshot] = {}

    def entry(key: tuple[str, str]) -> QueueSnapshot:
        return found.setdefault(key, QueueSnapshot(alias=key[0], name=key[1]))

    for alias, names in configured.items():
        for name in names:
            entry((alias, name))
    for key, status, count, due, wait in queries.queue_counts(connections[database], settled):
        queue = entry(key)
        if status == "READY":
            queue.ready, queue.due, queue.oldest_due_wait = count, due, wait
        elif status == "RUNNING":
            queue.running = count
        elif status == "FAILED":
            queue.failed = count
        else:
            queue.cancelled = count
    return found


def take(
    database: str,
    configured: dict[str, list[str]],
    liveness: float,
    aliases: Iterable[str] | None = None,
    settled: bool = True,
    jobs: bool = True,
) -> Snapshot:
    """Read the queues and workers of ``database`` (only ``aliases``' if given).

    ``settled=False`` leaves out the FAILED and CANCELLED counts, ``jobs=False``
    the jobs each worker runs: the metrics need neither.
    """
    wanted = None if aliases is None else set(aliases)
    by_key = queues(database, configured, settled)
    found = workers(database, liveness, jobs=jobs)
    if wanted is not None:
        by_key = {key: queue for key, queue in by_key.items() if key[0] in wanted}
        found = [worker for worker in found if worker.alias in wanted]
    for (alias, name), queue in by_key.items():
        queue.workers = [w for w in found if w.live and w.serves(alias, name)]
    return Snapshot(
        queues=[by_key[key] for key in sorted(by_key)], workers=found, liveness=liveness
    )


# Failures


@dataclass
class FailureGroup:
    """Jobs of one task that failed for good with one exception class, lately."""

    task_path: str
    exception: str | None  # the class path of the last error (None: the row holds none)
    jobs: int
    latest_finished_at: datetime | None
    latest_job: int
    latest_message: str  # the latest job's last error, one line ("" if none was kept)


def recent_failures(
    database: str, alias: str, seconds: float, limit: int, queues: Iterable[str] = ()
) -> list[FailureGroup]:
    """The ``limit`` largest groups of jobs FAILED in the last ``seconds``, by task and
    exception class (``queries.recent_failures``: the window's FAILED rows only)."""
    rows = queries.recent_failures(connections[database], alias, seconds, limit, list(queues))
    return [
        FailureGroup(
            task, exception, jobs, latest_at, latest_id, message if isinstance(message, str) else ""
        )
        for task, exception, jobs, latest_at, latest_id, message in rows
    ]
