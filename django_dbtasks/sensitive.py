"""Sensitive arguments: secrets a task receives are shown redacted.

A task declares ``sensitive=True`` (every argument) or the name or names of
its secret arguments (``sensitive="api_key"``). The job row keeps the real
values, since the task needs them, but the admin and the worker's logs show
``REDACTED`` in their place. Like Django's ``sensitive_variables``, it hides
values from people reading the tools, not from people reading the database.

This module knows declarations and values only; applying a registered task's
declaration to a stored row by its path is ``registry.redact_job()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .signatures import as_names, bind, check_names, positional_names

Sensitive = bool | str | Sequence[str] | None

REDACTED = "********"


def validate(func: Callable[..., Any], sensitive: Sensitive, takes_context: bool) -> None:
    """Refuse a ``sensitive`` declaration that names arguments the function does not take."""
    if sensitive is None or isinstance(sensitive, bool):
        return
    check_names(func, "sensitive", as_names(sensitive), takes_context)


def redact(
    func: Callable[..., Any],
    sensitive: Sensitive,
    takes_context: bool,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> tuple[list[Any], dict[str, Any]]:
    """Return copies of ``args`` and ``kwargs`` with the sensitive values replaced.

    A call that does not fit the signature (the task changed since it was
    enqueued) is redacted whole: when in doubt, show less.
    """
    if not sensitive:
        return list(args), dict(kwargs)
    if sensitive is True:
        return [REDACTED] * len(args), dict.fromkeys(kwargs, REDACTED)
    secret = set(as_names(sensitive))
    try:
        bind(func, takes_context, args, kwargs)
    except TypeError:
        return [REDACTED] * len(args), dict.fromkeys(kwargs, REDACTED)
    positional = positional_names(func, takes_context, len(args))
    return (
        [
            REDACTED if name in secret else value
            for name, value in zip(positional, args, strict=True)
        ],
        {name: REDACTED if name in secret else value for name, value in kwargs.items()},
    )
