"""The ``--backend ALIAS`` option every command shares, and its one error message."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends


def add_backend_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--backend",
        default=DEFAULT_TASK_BACKEND_ALIAS,
        metavar="ALIAS",
        help="Which TASKS entry to use. Default: 'default'.",
    )


def database_backend(alias: str) -> DatabaseBackend:
    """The configured DatabaseBackend of ``alias``, or a CommandError saying what to fix."""
    try:
        backend = task_backends[alias]
    except Exception as error:
        raise CommandError(f"Cannot load task backend {alias!r}: {error}")
    if not isinstance(backend, DatabaseBackend):
        raise CommandError(
            f"TASKS[{alias!r}] uses {type(backend).__module__}.{type(backend).__name__}; "
            "this command serves django_dbtasks.backend.DatabaseBackend only. Set "
            f"TASKS[{alias!r}]['BACKEND'] = 'django_dbtasks.backend.DatabaseBackend'."
        )
    if backend.config_error is not None:
        # The message of ``manage.py check``, with its id: the same door, the same words.
        raise CommandError(f"{backend.config_error} (django_dbtasks.E001)")
    return backend
