"""Unique jobs: which key makes two enqueues "the same job".

A task declares ``unique=`` as ``True`` (all arguments), the name or names
of the arguments that identify the job (``"user_id"``), or a function of the
arguments returning a string. The key is a SHA-256 of that identity; the
database's partial unique index does the enforcing, so two racing enqueues
cannot both insert.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from .compat import InvalidTask

Unique = bool | str | Sequence[str] | Callable[..., Any] | None


def validate(func: Callable[..., Any], unique: Unique, takes_context: bool) -> None:
    """Refuse a ``unique`` declaration that names arguments the function does not have."""
    if unique is None or isinstance(unique, bool) or callable(unique):
        return
    names = [unique] if isinstance(unique, str) else list(unique)
    parameters = list(inspect.signature(func).parameters)
    if takes_context:
        parameters = parameters[1:]
    missing = [name for name in names if name not in parameters]
    if missing:
        raise InvalidTask(
            f"unique names {', '.join(map(repr, missing))}, which {func.__qualname__}() does not "
            f"take; its arguments are {', '.join(parameters) or 'none'}."
        )


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
        names = [unique] if isinstance(unique, str) else list(unique)
        leading = (None,) if takes_context else ()
        bound = inspect.signature(func).bind(*leading, *args, **kwargs)
        bound.apply_defaults()
        identity = {name: bound.arguments[name] for name in names}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
