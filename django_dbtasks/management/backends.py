"""What the commands share: ``--backend ALIAS`` and ``--queue NAME``, and their error messages."""

from __future__ import annotations

import shlex

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


def chosen_queues(backend: DatabaseBackend, requested: list[str] | None) -> list[str]:
    """The queues ``--queue`` names, checked; none named: ``[]`` with ``QUEUES: []``
    (any name), else every queue of the backend."""
    if not requested:
        return sorted(backend.queues)
    if not backend.queues:
        return list(dict.fromkeys(requested))
    unknown = [name for name in requested if name not in backend.queues]
    if unknown:
        message = (
            f"Unknown queue{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: TASKS[{backend.alias!r}]['QUEUES'] has "
            f"{', '.join(map(repr, sorted(backend.queues)))}."
        )
        listed = next((name for name in unknown if "," in name), None)
        if listed is not None:
            parts = [part.strip() for part in listed.split(",") if part.strip()]
            repeated = " ".join(f"--queue {shlex.quote(part)}" for part in parts)
            message += f" To serve several queues, repeat --queue: {repeated}"
        raise CommandError(message)
    return list(dict.fromkeys(requested))
