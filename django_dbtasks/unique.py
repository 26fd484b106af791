"""Unique jobs: which key makes two enqueues "the same job".

A task declares ``unique=`` as ``True`` (all arguments), the name or names
of the arguments that identify the job (``"user_id"``), or a function of the
arguments returning a string. The key is a SHA-256 of that identity; the
database's partial unique index does the enforcing, so two racing enqueues
cannot both insert.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from .arguments import as_names, bind, check_names

Unique = bool | str | Sequence[str] | Callable[..., Any] | None


def validate(func: Callable[..., Any], unique: Unique, takes_context: bool) -> None:
    """Refuse a ``unique`` declaration that names arguments the function does not have."""
    if unique is None or isinstance(unique, bool) or callable(unique):
        return
    check_names(func, "unique", as_names(unique), takes_context)


def key_for(
    func: Callable[..., Any],
    unique: Unique,
    takes_context: bool,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> str | None:
    """Return the unique key of one call, or None if the task is not unique."""
    if unique is None or unique is False:
        return None
    if unique is True:
        identity: Any = [list(args), kwargs]
    elif callable(unique):
        identity = str(unique(*args, **kwargs))
    else:
        arguments = bind(func, takes_context, args, kwargs)
        identity = {name: arguments[name] for name in as_names(unique)}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
