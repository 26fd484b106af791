"""Errors raised (or recorded on jobs) by django-dbtasks."""

from __future__ import annotations

from .compat import InvalidTask


class ArgumentNotSerializable(InvalidTask, TypeError):
    """A task argument or keyword argument cannot be stored as JSON."""


class ResultNotStorable(ValueError):
    """A task's return value cannot be stored in the job table (unstorable text, size)."""


class TaskNotRegistered(LookupError):
    """A job names a task path that no ``@task`` function in this process has."""


class ResultTimeout(TimeoutError):
    """``wait()`` gave up before the job finished."""


class JobCancelled(Exception):
    """Recorded as the error of a job cancelled before it started."""


class JobTimedOut(Exception):
    """Recorded as the error of an attempt stopped by the task's ``timeout``."""


class WorkerCrashed(Exception):
    """Recorded when the process running an attempt died (or was killed)."""


class TaskFailed(Exception):
    """Carries a failed attempt's traceback (from its pool process) into the worker's log.

    ``task_finished`` is sent while this is being handled, so that Django's
    own log line for a failed task, and error trackers, show the traceback.
    """


class PoisonJob(Exception):
    """Recorded when a job's runs killed their worker too many times in a row."""


def exception_path(exc_type: type[BaseException]) -> str:
    """Return the dotted path Django's ``TaskError.exception_class_path`` expects."""
    return f"{exc_type.__module__}.{exc_type.__qualname__}"
