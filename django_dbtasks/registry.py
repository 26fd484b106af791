"""Which tasks this process knows, by dotted path.

A job row names its task by path. The worker runs a row only if that path is
in this registry, which holds exactly the functions decorated with ``@task``:
a path is never imported to find a callable, so a row saying ``os.system``
can never run anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.module_loading import autodiscover_modules

if TYPE_CHECKING:
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
