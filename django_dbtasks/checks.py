"""System checks: catch configuration mistakes at ``manage.py check``, not in production."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import checks
from django.db import connections

if TYPE_CHECKING:
    from .backend import DatabaseBackend

SUPPORTED_VENDORS = {"postgresql", "sqlite"}


def check_backend(backend: DatabaseBackend) -> list[checks.CheckMessage]:
    """Problems with one configured ``DatabaseBackend``."""
    where = f"TASKS[{backend.alias!r}]"
    if backend.config_error is not None:
        return [
            checks.Error(
                str(backend.config_error),
                hint="docs/configuration.md lists every option with its default and bounds.",
                id="django_dbtasks.E001",
                obj=where,
            )
        ]
    errors: list[checks.CheckMessage] = []
    vendor = connections[backend.database].vendor
    if vendor not in SUPPORTED_VENDORS:
        errors.append(
            checks.Error(
                f"{where} stores jobs in database {backend.database!r}, a {vendor} database; "
                "django-dbtasks supports PostgreSQL and SQLite.",
                hint="Point OPTIONS['DATABASE'] at a PostgreSQL (or SQLite) database alias.",
                id="django_dbtasks.E002",
                obj=where,
            )
        )
    if not settings.USE_TZ:
        errors.append(
            checks.Error(
                "django-dbtasks compares times on the database's clock in UTC and needs "
                "USE_TZ = True.",
                hint="Set USE_TZ = True (Django's default since 5.0).",
                id="django_dbtasks.E003",
            )
        )
    # An empty QUEUES means "any queue name", as in Django (E004 no longer exists).
    return errors


def _framework_checks_backends() -> bool:
    """Whether Django's task framework will call ``backend.check()`` itself."""
    import django
    from django.apps import apps

    return django.VERSION >= (6, 0) or apps.is_installed("django_tasks")


def check_task_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check every TASKS entry that names our backend.

    Django's task framework calls ``backend.check()`` itself on 6.0+ (and on
    5.2 when the backport's app is installed); this check covers the rest,
    and a BACKEND path that cannot even be loaded.
    """
    from .backend import DatabaseBackend
    from .compat import task_backends

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
            messages.extend(check_backend(backend))
    return messages
