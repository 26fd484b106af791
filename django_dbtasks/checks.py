"""System checks: catch configuration mistakes at ``manage.py check``, not in production.

What one backend checks about itself is ``DatabaseBackend.check()``. This
module owns what is not one backend's: a BACKEND path that cannot be loaded,
and calling each backend's ``check()`` where Django's task framework does not.
"""

from __future__ import annotations

from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.core import checks

from .backend import DatabaseBackend
from .compat import task_backends


def _framework_checks_backends() -> bool:
    """Whether Django's task framework will call ``backend.check()`` itself."""
    return django.VERSION >= (6, 0) or apps.is_installed("django_tasks")


def check_task_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check every TASKS entry that names our backend.

    Django's task framework calls ``backend.check()`` itself on 6.0+ (and on
    5.2 when the backport's app is installed); this check covers the rest,
    and a BACKEND path that cannot even be loaded.
    """
    messages: list[checks.CheckMessage] = []
    for alias, params in getattr(settings, "TASKS", {}).items():
        path = str(params.get("BACKEND", ""))
        if not path.startswith("django_dbtasks."):
            continue
        try:
            backend = task_backends[alias]
        except Exception as error:  # an unimportable BACKEND path, a typo in it, ...
            messages.append(
                checks.Error(
                    f"TASKS[{alias!r}]['BACKEND'] = {path!r} cannot be loaded: {error}",
                    hint="Use 'django_dbtasks.backend.DatabaseBackend'.",
                    id="django_dbtasks.E005",
                )
            )
            continue
        if isinstance(backend, DatabaseBackend) and not _framework_checks_backends():
            messages.extend(backend.check())
    return messages
