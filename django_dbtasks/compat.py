"""The one place that knows where Django's task API lives.

Django >= 6.0 ships it as ``django.tasks``; on Django 5.2 the ``django-tasks``
backport provides the same API as ``django_tasks`` (install
``django-dbtasks-queue[compat]``). Everything else in this package imports from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import django
from django.core.exceptions import ImproperlyConfigured

# Type checking runs against Django 6's stubs; the else branch is the 5.2 fallback.
if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.base import task as standard_task
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started
else:  # pragma: no cover - exercised by the Django 5.2 CI job
    try:
        from django_tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            DEFAULT_TASK_QUEUE_NAME,
            task_backends,
        )
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import (  # type: ignore[attr-defined,no-redef]
            TASK_MAX_PRIORITY,
            TASK_MIN_PRIORITY,
            Task,
            TaskContext,
            TaskError,
            TaskResult,
            TaskResultStatus,
        )
        from django_tasks.base import task as standard_task
        from django_tasks.exceptions import (  # type: ignore[no-redef]
            InvalidTaskError as InvalidTask,
        )
        from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
        from django_tasks.signals import task_enqueued, task_finished, task_started
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"django-dbtasks on Django {django.get_version()} needs the django-tasks "
            "backport (Django >= 6.0 has the task API built in). Install it with: "
            "pip install 'django-dbtasks-queue[compat]'"
        ) from exc


def send_each(signal: Any, sender: Any, results: Sequence[Any]) -> None:
    """``signal.send(sender, task_result=result)`` for each result, in order.

    Receivers are looked up once for the batch rather than once per result
    (``Signal._live_receivers``, what ``send()`` itself does, in Django 5.0+), and
    nothing is done when there are none. Django connects one receiver to
    ``task_enqueued`` itself (a debug log line), so ``enqueue_many()`` makes a
    thousand calls of it per INSERT: the lookup is what this saves. With an
    async receiver, each result goes through ``send()``, which knows how to
    call it. A receiver connected by a receiver hears the next call, not this one.
    """
    sync_receivers, async_receivers = signal._live_receivers(sender)
    if async_receivers:
        for result in results:
            signal.send(sender, task_result=result)
        return
    for result in results:
        for receiver in sync_receivers:
            receiver(signal=signal, sender=sender, task_result=result)


__all__ = [
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_QUEUE_NAME",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "standard_task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
    "send_each",
]
