"""``DatabaseBackend``: Django's task backend contract, stored in a table.

``enqueue()`` inserts a ``Job`` row through the configured database alias,
inside the caller's transaction: if it rolls back, the job never existed,
and no worker can see the row before it commits.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from . import queries, registry, tracing
from .base import DbTask, DbTaskResult
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResultDoesNotExist,
    TaskResultStatus,
    send_each,
    task_enqueued,
)
from .conf import Options
from .errors import error_entry, task_error
from .exceptions import JobCancelled, TaskNotRegistered
from .models import Job
from .serialization import encode_arguments, encode_calls, holds_containers

#: Rows per INSERT statement in ``enqueue_many()`` (all in one transaction).
BULK_SIZE = 1000

_RESULT_STATUS = {
    "READY": TaskResultStatus.READY,
    "RUNNING": TaskResultStatus.RUNNING,
    "SUCCESSFUL": TaskResultStatus.SUCCESSFUL,
    "FAILED": TaskResultStatus.FAILED,
    # Django has no "cancelled": a cancelled job "was unable to start", which is FAILED,
    # and its errors say JobCancelled.
    "CANCELLED": TaskResultStatus.FAILED,
}


@functools.lru_cache(maxsize=1024)
def _call_signature(func: Callable[..., Any], takes_context: bool) -> inspect.Signature | None:
    """The signature a call to the task must fit: without its context parameter, if any."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # a callable Python cannot describe: the worker will tell
    if takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def check_call(task: Task, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` if the task function cannot take these arguments.

    As Celery's call-time check does: a call that can never succeed is
    refused at ``enqueue()``, before a row is written, instead of burning
    every attempt in a worker.
    """
    signature = _call_signature(task.func, task.takes_context)
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(
            f"Cannot enqueue {task.module_path}: {error}; the task is "
            f"{task.func.__name__}{signature}."
        ) from None


def check_calls(task: Task, calls: list[tuple[list[Any], dict[str, Any]]]) -> None:
    """``check_call`` for each call, once per shape of call.

    Whether a call fits a signature depends only on how many positional
    arguments it has and which keywords, not on their values, so a batch of
    calls of one shape is checked once; the first call that does not fit is
    the one named.
    """
    seen = set()
    for args, kwargs in calls:
        shape = (len(args), *kwargs)
        if shape not in seen:
            check_call(task, args, kwargs)
            seen.add(shape)


def _job_id(result_id: Any) -> int | None:
    """A result id as a job's primary key, or None if no job can have it.

    Never a database error for a malformed id: text that is not a whole
    number, or one outside the column's 64-bit range, names no job.
    """
    if isinstance(result_id, bool):
        return None
    try:
        job_id = int(str(result_id).strip()) if not isinstance(result_id, int) else result_id
    except (TypeError, ValueError):
        return None
    return job_id if 1 <= job_id < 2**63 else None


class DatabaseBackend(BaseTaskBackend):
    task_class = DbTask

    # Jobs can wait until run_after (stored in the row, compared to the DB clock).
    supports_defer = True
    # Coroutine functions run in the worker through asgiref's async_to_sync.
    supports_async_task = True
    # Results are rows, readable from any process.
    supports_get_result = True
    # Workers claim the highest priority first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # A configuration mistake is kept, not raised, so that ``manage.py check``
        # can report it cleanly; any real use of the backend raises it.
        self.config_error: ImproperlyConfigured | None = None
        self._validated: set[tuple[Any, ...]] = set()
        self._config: Options | None = None
        try:
            self._config = self._load_config(alias, params)
        except ImproperlyConfigured as error:
            self.config_error = error

    @staticmethod
    def _load_config(alias: str, params: dict[str, Any]) -> Options:
        if not apps.is_installed("django_dbtasks"):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}] uses django_dbtasks.backend.DatabaseBackend but "
                "'django_dbtasks' is not in INSTALLED_APPS: add it there and run "
                "'manage.py migrate' to create the job table."
            )
        config = Options.from_dict(params.get("OPTIONS"), alias)
        if config.DATABASE not in connections.settings:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['DATABASE'] is {config.DATABASE!r}, which "
                f"is not in DATABASES (known: {', '.join(connections.settings)})."
            )
        return config

    @property
    def config(self) -> Options:
        if self._config is None:
            assert self.config_error is not None
            raise self.config_error
        return self._config

    @property
    def database(self) -> str:
        return self.config.DATABASE

    # Enqueueing

    def validate_task(self, task: Task) -> None:
        """Django's checks, done once per distinct task variant (they inspect the function).

        A configuration error is not raised here: Django validates each task as
        its module defines it, inside ``django.setup()``, where it would be a
        traceback. ``check()`` reports it (E001) and ``enqueue()`` raises it.
        """
        if task.run_after is not None and not isinstance(task.run_after, datetime):
            raise InvalidTask(
                f"run_after must be an aware datetime, not a {type(task.run_after).__name__}; "
                'for "in ten minutes" write .using(run_after=timezone.now() + '
                "timedelta(minutes=10)) (django.utils.timezone)."
            )
        aware = task.run_after is None or timezone.is_aware(task.run_after)
        variant = (task.func, task.takes_context, task.priority, task.queue_name, aware)
        if (variant, settings.USE_TZ) not in self._validated:
            super().validate_task(task)
            self._validated.add((variant, settings.USE_TZ))

    def _insert(
        self,
        task: Task,
        calls: list[tuple[str, str]],
        unique_key: str | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> list[tuple[int, datetime | None]]:
        """Insert jobs of ``task``, one per encoded call; return ``(id, enqueued_at)`` of each.

        With ``unique_key`` (one call), the list is empty when the key has an
        unfinished job already (see ``queries.insert_jobs``).
        """
        return queries.insert_jobs(
            connections[self.database],
            **self._job_columns(task),
            calls=calls,
            unique_key=unique_key,
            trace_context=trace_context,
        )

    def _job_columns(self, task: Task) -> dict[str, Any]:
        """The columns every job of ``task`` shares, as both insert statements take them."""
        return {
            "backend": self.alias,
            "task_path": task.module_path,
            "queue_name": task.queue_name,
            "priority": task.priority,
            "max_attempts": getattr(task, "max_attempts", 1),
            "run_after": task.run_after,
        }

    def _is_unique(self, task: Task) -> bool:
        return isinstance(task, DbTask) and task.unique is not None and task.unique is not False

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> DbTaskResult:
        with tracing.enqueueing(task, self.alias) as traced:
            return self._enqueue(task, args, kwargs, traced)

    def _enqueue(
        self, task: Task, args: Any, kwargs: Any, traced: tracing.SpanScope
    ) -> DbTaskResult:
        """``enqueue()`` inside its span (``traced``: the context the row stores)."""
        self.config  # noqa: B018 - raises the configuration error, if any, first
        self.validate_task(task)
        args = list(args)
        check_call(task, args, kwargs)
        encoded = encode_arguments(task.module_path, args, kwargs)
        if self._is_unique(task):
            result, inserted = self._insert_unique(task, args, kwargs, encoded, traced.context)
            traced.enqueued(result.id, duplicate=not inserted)
            if not inserted:
                return result  # the unfinished job with its key: nothing was enqueued
        else:
            [(job_id, enqueued_at)] = self._insert(task, [encoded], trace_context=traced.context)
            result = self._new_result(task, job_id, args, kwargs, enqueued_at)
            traced.enqueued(job_id)
        task_enqueued.send(type(self), task_result=result)
        return result

    def _insert_unique(
        self,
        task: Task,
        args: list[Any],
        kwargs: dict[str, Any],
        encoded: tuple[str, str],
        trace_context: dict[str, str] | None = None,
    ) -> tuple[DbTaskResult, bool]:
        """Insert a unique job, or find the unfinished job that has its key.

        Returns the result, and whether it is a new job. The partial unique
        index decides (``ON CONFLICT DO NOTHING``): a racing insert of the same
        key waits for the first one's transaction, then inserts nothing, and
        we return the winner. If the winner finished in between, we try again.
        """
        assert isinstance(task, DbTask)
        key = task.unique_key(args, kwargs)
        for _ in range(10):
            inserted = self._insert(task, [encoded], unique_key=key, trace_context=trace_context)
            if inserted:
                [(job_id, enqueued_at)] = inserted
                return self._new_result(task, job_id, args, kwargs, enqueued_at), True
            existing = (
                Job.objects.using(self.database)
                .filter(task_path=task.module_path, unique_key=key)
                .filter(status__in=["READY", "RUNNING"])
                .first()
            )
            if existing is not None:
                return self.result_from_job(existing, task), False
        raise IntegrityError(
            f"Could not enqueue unique job {task.module_path} (key {key}): its "
            "duplicates kept finishing between our insert and our lookup."
        )

    def enqueue_many(
        self, task: Task, calls: Iterable[tuple[Iterable[Any], dict[str, Any]]]
    ) -> list[DbTaskResult]:
        """Insert one job per ``(args, kwargs)``, 1,000 per INSERT, all or none.

        Per job, only what the standard API asks for: a result, and one
        ``task_enqueued`` per result. The rest is per batch: one check per
        shape of call, one JSON document and one INSERT per 1,000 jobs, one
        look-up of the signal's receivers (see docs/performance.md), and one
        span, whose context every job of the call keeps (docs/tracing.md).
        """
        with tracing.enqueueing(task, self.alias, "enqueue_many") as traced:
            return self._enqueue_many(task, calls, traced)

    def _enqueue_many(
        self,
        task: Task,
        calls: Iterable[tuple[Iterable[Any], dict[str, Any]]],
        traced: tracing.SpanScope,
    ) -> list[DbTaskResult]:
        """``enqueue_many()`` inside its span."""
        self.config  # noqa: B018 - raises the configuration error, if any, first
        self.validate_task(task)
        pairs = [(list(args), dict(kwargs)) for args, kwargs in calls]
        check_calls(task, pairs)
        if self._is_unique(task):
            # Each unique job may turn out to be a duplicate: one by one, one transaction.
            with transaction.atomic(using=self.database):
                each = [self.enqueue(task, args, kwargs) for args, kwargs in pairs]
            traced.enqueued_many(len(each))
            return each
        results: list[DbTaskResult] = []
        chunks = [pairs[start : start + BULK_SIZE] for start in range(0, len(pairs), BULK_SIZE)]
        # One INSERT is atomic by itself (and a transaction around it costs two round
        # trips); several share one, so that all of them are enqueued or none.
        atomic = (
            transaction.atomic(using=self.database) if len(chunks) > 1 else contextlib.nullcontext()
        )
        with atomic:
            for chunk in chunks:
                document = encode_calls(task.module_path, chunk)
                inserted = self._insert_batch(task, document, traced.context)
                normalize = holds_containers(document, len(chunk))
                results += DbTaskResult.enqueued(task, self.alias, chunk, inserted, normalize)
        traced.enqueued_many(len(results))
        send_each(task_enqueued, type(self), results)
        return results

    def _insert_batch(
        self, task: Task, calls: str, trace_context: dict[str, str] | None = None
    ) -> list[tuple[int, datetime | None]]:
        """Insert the jobs of ``task`` whose calls are the JSON document ``calls``."""
        return queries.insert_batch(
            connections[self.database],
            **self._job_columns(task),
            calls=calls,
            trace_context=trace_context,
        )

    def _new_result(
        self, task: Task, job_id: int, args: list[Any], kwargs: dict[str, Any], enqueued_at: Any
    ) -> DbTaskResult:
        """The result of a job just enqueued: READY, nothing run yet."""
        return DbTaskResult.build(
            task,
            job_id,
            TaskResultStatus.READY,
            backend=self.alias,
            args=args,
            kwargs=kwargs,
            enqueued_at=enqueued_at,
        )

    # Reading results

    def get_result(self, result_id: Any) -> DbTaskResult:
        job_id = _job_id(result_id)
        try:
            if job_id is None:
                raise Job.DoesNotExist
            # Another alias's job is not ours to show, even on the same database.
            job = Job.objects.using(self.database).get(pk=job_id, backend=self.alias)
        except Job.DoesNotExist:
            raise TaskResultDoesNotExist(f"No job with id {result_id!r}.") from None
        return self.result_from_job(job)

    def result_from_job(self, job: Any, task: Task | None = None) -> DbTaskResult:
        """Build a standard ``TaskResult`` (our subclass) from a ``Job`` row."""
        if task is None:
            registered = registry.lookup(job.task_path)
            if registered is None:
                raise TaskNotRegistered(registry.not_registered_message(job.task_path))
            task = registered
        return DbTaskResult.build(
            self._as_enqueued(task, job),
            job.pk,
            _RESULT_STATUS[job.status],
            backend=self.alias,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            enqueued_at=job.enqueued_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_attempted_at=job.last_attempted_at,
            errors=[task_error(entry) for entry in job.errors],
            worker_ids=list(job.worker_ids),
            return_value=job.return_value,
        )

    def _as_enqueued(self, task: Task, job: Any) -> Task:
        """The task as ``using()`` shaped it for this job: the row's priority, queue and
        ``run_after`` (None when the job was never deferred: it is then its enqueue time).

        A copy with its fields set, not ``using()``: a queue since removed from
        ``QUEUES`` must not make an old job's result unreadable.
        """
        run_after = None if job.run_after == job.enqueued_at else job.run_after
        wanted = {
            "priority": job.priority,
            "queue_name": job.queue_name,
            "run_after": run_after,
            "backend": self.alias,
        }
        if all(getattr(task, name) == value for name, value in wanted.items()):
            return task
        task = copy.copy(task)
        for name, value in wanted.items():
            object.__setattr__(task, name, value)
        return task

    # Operating on jobs

    def cancel(self, result_id: Any) -> bool:
        """Cancel a job that has not started yet; return whether it was cancelled."""
        error = error_entry(JobCancelled, "Cancelled before it started.")
        job_id = _job_id(result_id)
        if job_id is None:
            return False
        cancelled = queries.cancel_many(connections[self.database], [job_id], error, self.alias)
        return cancelled == [job_id]

    # System checks. Django's task framework calls ``check()`` on 6.0+ (and on 5.2
    # with the backport's app installed); ``checks.check_task_settings`` does otherwise.

    #: The database vendors a job table may live on.
    SUPPORTED_VENDORS = frozenset({"postgresql", "sqlite"})

    def check(self, **kwargs: Any) -> list[django_checks.CheckMessage]:
        """Problems with this backend's configuration, for ``manage.py check``.

        A configuration error (E001) is reported alone: the database and the
        other settings cannot be trusted until it is fixed.
        """
        if self.config_error is not None:
            return [self._config_error_message()]
        # An empty QUEUES means "any queue name", as in Django (E004 no longer exists).
        return [*self._vendor_messages(), *self._use_tz_messages()]

    def _check_target(self) -> str:
        """How the messages name this backend: its TASKS entry."""
        return f"TASKS[{self.alias!r}]"

    def _config_error_message(self) -> django_checks.CheckMessage:
        """E001: the TASKS entry cannot be used as written (kept from ``__init__``)."""
        return django_checks.Error(
            str(self.config_error),
            hint="docs/configuration.md lists every option with its default and bounds.",
            id="django_dbtasks.E001",
            obj=self._check_target(),
        )

    def _vendor_messages(self) -> list[django_checks.CheckMessage]:
        """E002: the claim and lease queries exist for PostgreSQL and SQLite only."""
        vendor = connections[self.database].vendor
        if vendor in self.SUPPORTED_VENDORS:
            return []
        where = self._check_target()
        return [
            django_checks.Error(
                f"{where} stores jobs in database {self.database!r}, a {vendor} database; "
                "django-dbtasks supports PostgreSQL and SQLite.",
                hint="Point OPTIONS['DATABASE'] at a PostgreSQL (or SQLite) database alias.",
                id="django_dbtasks.E002",
                obj=where,
            )
        ]

    def _use_tz_messages(self) -> list[django_checks.CheckMessage]:
        """E003: run_after, leases and heartbeats are compared on the database's clock in UTC."""
        if settings.USE_TZ:
            return []
        return [
            django_checks.Error(
                "django-dbtasks compares times on the database's clock in UTC and needs "
                "USE_TZ = True.",
                hint="Set USE_TZ = True (Django's default since 5.0).",
                id="django_dbtasks.E003",
            )
        ]
