"""Our ``Task`` and ``TaskResult``: Django's own, plus retries, timeouts and waiting.

``DbTask`` is a subclass of the standard ``Task`` dataclass, so everything
written against Django's API (``enqueue``, ``using``, ``get_result``) works on
it unchanged. ``DatabaseBackend.task_class`` is ``DbTask``, so even the
standard ``@task`` decorator returns one when our backend is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

from django.utils import timezone
from django.utils.module_loading import import_string

from . import registry
from . import sensitive as redaction
from . import unique as uniqueness
from .compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    DEFAULT_TASK_QUEUE_NAME,
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
)
from .exceptions import ResultTimeout, TaskFailed
from .retry import Backoff, RetryDelay, delay_for

Calls = Iterable[tuple[Iterable[Any], dict[str, Any]]]

#: The retry delay of tasks that set none: 1 s, 2 s, 4 s, ... up to an hour, with jitter.
DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True, kw_only=True)
class DbTask(Task):
    #: Attempts before the job is FAILED for good (a worker crash does not use one).
    max_attempts: int = 1
    #: Seconds between attempts: a number, a ``Backoff``, or ``f(attempt) -> seconds``.
    retry_delay: RetryDelay = DEFAULT_BACKOFF
    #: Seconds an attempt may run before it is stopped and counted as failed.
    timeout: float | None = None
    #: At most one unfinished job per key: True (all arguments), argument name(s), or f(...).
    unique: uniqueness.Unique = None
    #: Arguments shown redacted in the admin and the logs: True (all) or argument name(s).
    sensitive: redaction.Sensitive = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidTask(
                f"max_attempts must be a whole number >= 1, got {self.max_attempts!r}."
            )
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float) and self.timeout > 0
        ):
            raise InvalidTask(
                f"timeout must be a positive number of seconds, got {self.timeout!r}."
            )
        if not (callable(self.retry_delay) or isinstance(self.retry_delay, int | float)):
            raise InvalidTask(
                "retry_delay must be seconds, a Backoff(...) or a function of the attempt "
                f"number, got {self.retry_delay!r}."
            )
        uniqueness.validate(self.func, self.unique, self.takes_context)
        redaction.validate(self.func, self.sensitive, self.takes_context)
        Task.__post_init__(self)
        registry.register(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by the task's path, as Django 6's ``Task`` does (the backport cannot):
        the module attribute is the task, not its function."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["func"] = self.module_path
        return (_unpickle_task, (type(self), values))

    def delay(self, *args: Any, **kwargs: Any) -> TaskResult:
        """Enqueue the task; an alias of ``enqueue()`` for people coming from Celery."""
        return self.enqueue(*args, **kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> TaskResult:
        """Celery's ``apply_async``: ``using()`` plus ``enqueue()``, for existing call sites.

        ``countdown`` (seconds) and ``eta`` become ``run_after``, ``queue`` the
        queue name and ``priority`` the priority (Django's scale: higher runs
        first, -100 to 100). Any other Celery option raises ``TypeError``
        naming what to use instead, or saying there is nothing.
        """
        if options:
            name = next(iter(options))
            raise TypeError(f"apply_async({name}=...) is not supported: {_instead_of(name)}.")
        if countdown is not None and eta is not None:
            raise TypeError("apply_async() takes countdown or eta, not both.")
        changes: dict[str, Any] = {}
        if countdown is not None:
            changes["run_after"] = timezone.now() + timedelta(seconds=countdown)
        if eta is not None:
            changes["run_after"] = eta
        if queue is not None:
            changes["queue_name"] = queue
        if priority is not None:
            changes["priority"] = priority
        task = self.using(**changes) if changes else self
        return task.enqueue(*(args or ()), **(kwargs or {}))

    def s(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(_NO_CANVAS.format(name="s"))

    def si(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(_NO_CANVAS.format(name="si"))

    def signature(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(_NO_CANVAS.format(name="signature"))

    def map(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(_NO_CANVAS.format(name="map"))

    def chunks(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(_NO_CANVAS.format(name="chunks"))

    def enqueue_many(self, calls: Calls) -> list[TaskResult]:
        """Enqueue one job per ``(args, kwargs)`` pair, in bulk and in one transaction."""
        backend = self.get_backend()
        if hasattr(backend, "enqueue_many"):
            return cast(list[TaskResult], backend.enqueue_many(self, calls))  # it copies each
        pairs = [(tuple(args), dict(kwargs)) for args, kwargs in calls]
        return [backend.enqueue(self, list(args), kwargs) for args, kwargs in pairs]

    def unique_key(self, args: Any, kwargs: dict[str, Any]) -> str | None:
        """The key that identifies this call among unfinished jobs, if the task is unique."""
        return uniqueness.key_for(self.func, self.unique, self.takes_context, args, kwargs)

    def redact(self, args: Any, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """The call's arguments as people may see them: sensitive values replaced."""
        return redaction.redact(self.func, self.sensitive, self.takes_context, args, kwargs)

    def retry_delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        return delay_for(self.retry_delay, attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class DbTaskResult(TaskResult):  # type: ignore[misc]  # the stubs miss that it is frozen
    """A standard ``TaskResult`` that can also wait for its job and cancel it."""

    @classmethod
    def build(
        cls,
        task: Task,
        job_id: int,
        status: TaskResultStatus,
        *,
        backend: str,
        args: list[Any],
        kwargs: dict[str, Any],
        enqueued_at: datetime | None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        last_attempted_at: datetime | None = None,
        errors: list[TaskError] | None = None,
        worker_ids: list[str] | None = None,
        return_value: Any = None,
    ) -> DbTaskResult:
        """The result of job ``job_id``: every result our code makes is built here.

        What is not given is what a job has before it runs: no times but its
        enqueue time, no errors, no workers, no return value. The lists are
        used as given, not copied.
        """
        result = cls(
            task=task,
            id=str(job_id),
            status=status,
            enqueued_at=enqueued_at,
            started_at=started_at,
            finished_at=finished_at,
            last_attempted_at=last_attempted_at,
            args=args,
            kwargs=kwargs,
            backend=backend,
            errors=[] if errors is None else errors,
            worker_ids=[] if worker_ids is None else worker_ids,
        )
        if return_value is not None:
            object.__setattr__(result, "_return_value", return_value)
        return result

    @classmethod
    def enqueued(
        cls,
        task: Task,
        backend: str,
        calls: list[tuple[list[Any], dict[str, Any]]],
        inserted: list[tuple[int, datetime | None]],
        normalize: bool = True,
    ) -> list[DbTaskResult]:
        """The results of jobs just inserted, one per call: what ``build`` makes, built faster.

        ``enqueue_many()`` makes a thousand at a time, and there a frozen
        dataclass's ``__init__`` (each field through ``object.__setattr__``) and
        Django's ``__post_init__`` (``normalize_json`` of the arguments, even when
        they hold nothing to normalize) cost more than the INSERT. Here each slot
        is set directly, and Django's ``__post_init__`` runs only if
        ``normalize``: the caller may pass False when no call holds a list or
        a dict (the arguments of plain values are their own normal form;
        ``serialization.holds_containers`` tells). ``tests/test_enqueue_many.py``
        holds the two equal.
        """
        put_task, put_id, put_status, put_enqueued_at, put_args, put_kwargs, put_backend = (
            _READY_SLOTS.given
        )
        empty_lists, nones = _READY_SLOTS.empty_lists, _READY_SLOTS.nones
        new, ready, results = object.__new__, TaskResultStatus.READY, []
        for (args, kwargs), (job_id, enqueued_at) in zip(calls, inserted, strict=True):
            result = new(cls)
            put_task(result, task)
            put_id(result, str(job_id))
            put_status(result, ready)
            put_enqueued_at(result, enqueued_at)
            put_args(result, args)
            put_kwargs(result, kwargs)
            put_backend(result, backend)
            for put in empty_lists:
                put(result, [])
            for put, value in nones:
                put(result, value)
            if normalize:
                result.__post_init__()
            results.append(result)
        return results

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> DbTaskResult:
        """Block until the job is finished (like Celery's ``AsyncResult.get``).

        Raise ``ResultTimeout`` if it is not finished after ``timeout`` seconds.
        The result is refreshed in place and returned.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.refresh()
        while not self.is_finished:
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(
                    f"Job {self.id} ({self.task.module_path}) is still {self.status} "
                    f"after {timeout:g} s."
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)
            self.refresh()
        return self

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Celery's ``AsyncResult.get()``: wait, then the return value or the error.

        Waits like ``wait()`` (``ResultTimeout``, a ``TimeoutError``, after
        ``timeout`` seconds). A SUCCESSFUL job gives its return value. A FAILED
        one raises its last error, re-created as Celery does: the recorded
        class with the recorded message when the class can be built that way,
        else ``TaskFailed`` carrying the traceback text; with
        ``propagate=False`` that exception is returned instead of raised.
        """
        self.wait(timeout=timeout)
        if self.status == TaskResultStatus.SUCCESSFUL:
            return self.return_value
        error = _recreated(self.errors[-1]) if self.errors else TaskFailed(str(self.status))
        if propagate:
            raise error
        return error

    def cancel(self) -> bool:
        """Cancel the job if it has not started; return whether it was cancelled."""
        backend = self.task.get_backend()
        cancelled = cast(bool, backend.cancel(self.id))  # type: ignore[attr-defined]
        self.refresh()
        return cancelled


class _ReadySlots:
    """How ``DbTaskResult.enqueued`` fills a result: one setter per slot of its fields.

    ``given`` are the fields a new job's result takes from its call, in
    ``enqueued``'s order; every other field is in ``empty_lists`` (a fresh
    list each) or in ``nones`` with the value a READY result has (its default,
    or None), so that no slot is left unset.
    """

    GIVEN = ("task", "id", "status", "enqueued_at", "args", "kwargs", "backend")
    EMPTY_LISTS = ("errors", "worker_ids")

    def __init__(self, cls: type) -> None:
        named = {field.name: field for field in fields(cls)}
        missing = {*self.GIVEN, *self.EMPTY_LISTS} - set(named)
        assert not missing, f"TaskResult has no field {missing}"
        self.given = [getattr(cls, name).__set__ for name in self.GIVEN]
        self.empty_lists = [getattr(cls, name).__set__ for name in self.EMPTY_LISTS]
        self.nones = [
            (getattr(cls, name).__set__, None if field.default is MISSING else field.default)
            for name, field in named.items()
            if name not in {*self.GIVEN, *self.EMPTY_LISTS}
        ]
        assert all(field.default_factory is MISSING for field in named.values())


#: Why a Celery canvas method is missing (see docs/celery.md, "What we do not do").
_NO_CANVAS = (
    "DbTask has no .{name}(): django-dbtasks has no Celery canvas (signatures, chains, "
    "groups, chords, map, chunks). Enqueue the next task at the end of a task, or use "
    "enqueue_many() for a group of one task; see docs/celery.md."
)

#: What to use instead of each Celery ``apply_async`` option we do not take.
_CELERY_OPTIONS = {
    "expires": "there is no expiry; cancel() a job that should no longer run",
    "time_limit": "set timeout= on the @task decorator",
    "soft_time_limit": "there is no soft limit; timeout= on the @task decorator is hard",
    "task_id": "job ids are assigned by the database (result.id)",
    "link": "there are no callbacks; enqueue the next task at the end of the task",
    "link_error": "there are no error callbacks; catch the error in the task",
    "retry": "enqueue() writes in your transaction and never needs a publish retry",
    "retry_policy": "enqueue() writes in your transaction and never needs a publish retry",
    "exchange": "there are no exchanges; use queue=",
    "routing_key": "there is no routing; use queue=",
    "serializer": "arguments are always JSON",
    "compression": "arguments are stored as JSON in the job table, uncompressed",
    "ignore_result": "results are rows; delete old ones with manage.py prunetasks",
    "headers": "there are no message headers; pass the data as arguments",
    "shadow": "the admin and the logs show the task's own path",
}


def _unpickle_task(cls: type[DbTask], values: dict[str, Any]) -> DbTask:
    path = values["func"]
    try:
        values["func"] = import_string(path).func
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Expected {path!r} to point to a task.") from error
    return cls(**values)


def _instead_of(option: str) -> str:
    return _CELERY_OPTIONS.get(option, "there is no equivalent (see docs/celery.md)")


def _recreated(error: Any) -> BaseException:
    """The recorded error as an exception object (see ``DbTaskResult.get``)."""
    lines = error.traceback.strip().splitlines()
    last = lines[-1] if lines else error.exception_class_path
    message = last.split(": ", 1)[1] if ": " in last else ""
    try:
        exc_class = import_string(error.exception_class_path)
        if isinstance(exc_class, type) and issubclass(exc_class, BaseException):
            return exc_class(message) if message else exc_class()
    except Exception:  # a class that moved, or that one string cannot build
        pass
    return TaskFailed(error.traceback or error.exception_class_path)


def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int = 0,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    max_attempts: int = 1,
    retry_delay: RetryDelay = DEFAULT_BACKOFF,
    timeout: float | None = None,
    unique: uniqueness.Unique = None,
    sensitive: redaction.Sensitive = None,
) -> Any:
    """Django's ``@task`` plus ``max_attempts``, ``retry_delay``, ``timeout``, ``unique``
    and ``sensitive``."""

    def wrapper(func: Callable[..., Any]) -> DbTask:
        return DbTask(
            func=func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            timeout=timeout,
            unique=unique,
            sensitive=sensitive,
        )

    if function is not None:
        return wrapper(function)
    return wrapper


_READY_SLOTS = _ReadySlots(DbTaskResult)
