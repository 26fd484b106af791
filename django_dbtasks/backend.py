"""``DatabaseBackend``: Django's task backend contract, stored in a table.

``enqueue()`` inserts a ``Job`` row through the configured database alias,
inside the caller's transaction: if it rolls back, the job never existed,
and no worker can see the row before it commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connections, transaction

from . import queries, registry
from .base import DbTask, DbTaskResult
from .compat import (
    BaseTaskBackend,
    Task,
    TaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from .conf import Options
from .exceptions import JobCancelled, TaskNotRegistered, exception_path
from .serialization import check_arguments

_RESULT_STATUS = {
    "READY": TaskResultStatus.READY,
    "RUNNING": TaskResultStatus.RUNNING,
    "SUCCESSFUL": TaskResultStatus.SUCCESSFUL,
    "FAILED": TaskResultStatus.FAILED,
    # Django has no "cancelled": a cancelled job "was unable to start", which is FAILED,
    # and its errors say JobCancelled.
    "CANCELLED": TaskResultStatus.FAILED,
}


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
        self.config  # noqa: B018 - raises the configuration error, if any, first
        super().validate_task(task)

    def _new_job(self, task: Task, args: Iterable[Any], kwargs: dict[str, Any]) -> Any:
        from .models import Job

        args = list(args)
        check_arguments(task.module_path, args, kwargs)
        job = Job(
            task_path=task.module_path,
            queue_name=task.queue_name,
            priority=task.priority,
            args=args,
            kwargs=kwargs,
            max_attempts=getattr(task, "max_attempts", 1),
            unique_key=task.unique_key(args, kwargs) if isinstance(task, DbTask) else None,
        )
        if task.run_after is not None:
            job.run_after = task.run_after
        return job

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> DbTaskResult:
        self.validate_task(task)
        job = self._new_job(task, args, kwargs)
        if job.unique_key is not None:
            existing = self._insert_unique(job)
            if existing is not None:
                return self.result_from_job(existing, task)
        else:
            job.save(using=self.database, force_insert=True)
        result = self.result_from_job(job, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def _insert_unique(self, job: Any) -> Any:
        """Insert a unique job, or return the unfinished job that has its key.

        The partial unique index decides: a racing insert of the same key
        waits for the first one's transaction and then fails, and we return
        the winner. If the winner finished in between, we try again.
        """
        from .models import Job

        for _ in range(10):
            try:
                with transaction.atomic(using=self.database):
                    job.save(using=self.database, force_insert=True)
                return None
            except IntegrityError:
                job.pk = None
                existing = (
                    Job.objects.using(self.database)
                    .filter(task_path=job.task_path, unique_key=job.unique_key)
                    .filter(status__in=["READY", "RUNNING"])
                    .first()
                )
                if existing is not None:
                    return existing
        raise IntegrityError(
            f"Could not enqueue unique job {job.task_path} (key {job.unique_key}): its "
            "duplicates kept finishing between our insert and our lookup."
        )

    def enqueue_many(
        self, task: Task, calls: Iterable[tuple[Iterable[Any], dict[str, Any]]]
    ) -> list[DbTaskResult]:
        """Insert one job per ``(args, kwargs)`` with multi-row INSERTs in one transaction."""
        from .models import Job

        self.validate_task(task)
        if getattr(task, "unique", None):
            # Each unique job may turn out to be a duplicate: one by one, one transaction.
            with transaction.atomic(using=self.database):
                return [self.enqueue(task, list(args), kwargs) for args, kwargs in calls]
        jobs = [self._new_job(task, args, kwargs) for args, kwargs in calls]
        with transaction.atomic(using=self.database):
            Job.objects.using(self.database).bulk_create(jobs, batch_size=5000)
        results = [self.result_from_job(job, task) for job in jobs]
        for result in results:
            task_enqueued.send(type(self), task_result=result)
        return results

    # Reading results

    def get_result(self, result_id: Any) -> DbTaskResult:
        from .models import Job

        try:
            job = Job.objects.using(self.database).get(pk=int(result_id))
        except (ValueError, TypeError, Job.DoesNotExist):
            raise TaskResultDoesNotExist(f"No job with id {result_id!r}.")
        return self.result_from_job(job)

    def result_from_job(self, job: Any, task: Task | None = None) -> DbTaskResult:
        """Build a standard ``TaskResult`` (our subclass) from a ``Job`` row."""
        if task is None:
            registered = registry.lookup(job.task_path)
            if registered is None:
                raise TaskNotRegistered(registry.not_registered_message(job.task_path))
            task = registered
        result = DbTaskResult(
            task=task,
            id=str(job.pk),
            status=_RESULT_STATUS[job.status],
            enqueued_at=job.enqueued_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            last_attempted_at=job.last_attempted_at,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            backend=self.alias,
            errors=[
                TaskError(
                    exception_class_path=entry["exception_class_path"],
                    traceback=entry.get("traceback", ""),
                )
                for entry in job.errors
            ],
            worker_ids=list(job.worker_ids),
        )
        object.__setattr__(result, "_return_value", job.return_value)
        return result

    # Operating on jobs

    def cancel(self, result_id: Any) -> bool:
        """Cancel a job that has not started yet; return whether it was cancelled."""
        error = {
            "exception_class_path": exception_path(JobCancelled),
            "traceback": "Cancelled before it started.",
        }
        connection = connections[self.database]
        return queries.cancel(connection, int(result_id), error)

    def check(self, **kwargs: Any) -> list[django_checks.CheckMessage]:
        from .checks import check_backend

        return check_backend(self)
