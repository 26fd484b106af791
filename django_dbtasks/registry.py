"""Which tasks this process knows, by dotted path.

A job row names its task by path. The worker runs a row only if that path is
in this registry, which holds exactly the functions decorated with ``@task``:
a path is never imported to find a callable, so a row saying ``os.system``
can never run anything.

It also answers, for a stored row, what its task declares about it: which
paths have ``sensitive`` arguments and how a row's arguments are shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

from .sensitive import REDACTED

if TYPE_CHECKING:  # for annotations only: base imports this module to register each task
    from .base import DbTask

_tasks: dict[str, DbTask] = {}
_discovered = False


def register(task: DbTask) -> None:
    """Remember a task under its path; the first definition wins over ``using()`` copies."""
    _tasks.setdefault(task.module_path, task)


def autodiscover() -> None:
    """Import the ``tasks`` module of every installed app, as Celery does."""
    global _discovered
    autodiscover_modules("tasks")
    _discovered = True


def lookup(task_path: str) -> DbTask | None:
    """Return the registered task for a path, discovering task modules once if needed."""
    found = _tasks.get(task_path)
    if found is None and not _discovered:
        autodiscover()
        found = _tasks.get(task_path)
    return found


def registered_paths() -> list[str]:
    """Every registered task's path, sorted; task modules are discovered once if needed."""
    if not _discovered:
        autodiscover()
    return sorted(_tasks)


def not_registered_message(task_path: str) -> str:
    return (
        f"Task {task_path!r} is not registered: no function decorated with @task has this "
        "path in this process (tasks are found in the tasks.py module of each installed "
        "app and in modules those import). Was the task renamed or moved while jobs were "
        "queued, or is a worker running old code? Rows are never run by importing the "
        "path they name."
    )


# What a registered task declares about its stored rows


def is_sensitive(task_path: str) -> bool:
    """Whether the registered task of this path declares ``sensitive`` arguments."""
    task = lookup(task_path)
    return task is not None and bool(task.sensitive)


def sensitive_task_paths() -> list[str]:
    """Paths of registered tasks that declare ``sensitive`` arguments."""
    return [task_path for task_path in registered_paths() if is_sensitive(task_path)]


def redact_job(task_path: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """Redact a stored job's arguments by the declaration of its registered task.

    A path that names no registered task shows its arguments as stored: such
    a row never runs (see above), and hiding them would hide why. A row
    whose ``args`` is not a JSON list or ``kwargs`` not a JSON object
    (written by SQL, or by an older or buggy version) is returned as stored,
    but for a sensitive task both are redacted whole: a malformed value is
    replaced by ``REDACTED``, a list or object has every value replaced.
    """
    task = lookup(task_path)
    if isinstance(args, list) and isinstance(kwargs, dict):
        return task.redact(args, kwargs) if task is not None else (list(args), dict(kwargs))
    if task is None or not task.sensitive:
        return args, kwargs
    return (
        [REDACTED] * len(args) if isinstance(args, list) else REDACTED,
        dict.fromkeys(kwargs, REDACTED) if isinstance(kwargs, dict) else REDACTED,
    )
