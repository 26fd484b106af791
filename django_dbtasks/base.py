"""Our ``Task`` and ``TaskResult``: Django's own, plus retries, timeouts and waiting.

``DbTask`` is a subclass of the standard ``Task`` dataclass, so everything
written against Django's API (``enqueue``, ``using``, ``get_result``) works on
it unchanged. ``DatabaseBackend.task_class`` is ``DbTask``, so even the
standard ``@task`` decorator returns one when our backend is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from . import registry
from . import sensitive as redaction
from . import unique as uniqueness
from .compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    DEFAULT_TASK_QUEUE_NAME,
    InvalidTask,
    Task,
    TaskResult,
)
from .exceptions import ResultTimeout
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

    def delay(self, *args: Any, **kwargs: Any) -> TaskResult:
        """Enqueue the task; an alias of ``enqueue()`` for people coming from Celery."""
        return self.enqueue(*args, **kwargs)

    def enqueue_many(self, calls: Calls) -> list[TaskResult]:
        """Enqueue one job per ``(args, kwargs)`` pair, in bulk and in one transaction."""
        backend = self.get_backend()
        pairs = [(tuple(args), dict(kwargs)) for args, kwargs in calls]
        if hasattr(backend, "enqueue_many"):
            return cast(list[TaskResult], backend.enqueue_many(self, pairs))
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

    def cancel(self) -> bool:
        """Cancel the job if it has not started; return whether it was cancelled."""
        backend = self.task.get_backend()
        cancelled = cast(bool, backend.cancel(self.id))  # type: ignore[attr-defined]
        self.refresh()
        return cancelled


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
