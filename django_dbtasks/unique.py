"""Unique jobs: which key makes two enqueues "the same job".

A task declares ``unique=`` as ``True`` (all arguments), the name or names
of the arguments that identify the job (``"user_id"``), or a function of the
arguments returning a string. The key is an HMAC-SHA256 of that identity,
keyed by ``SECRET_KEY``: a plain hash of a small secret (a PIN) is reversed
offline by trying every value, a keyed one is not. The database's partial
unique index does the enforcing, so two racing enqueues cannot both insert.

Every process that enqueues must share one ``SECRET_KEY``: a key computed
with another secret is another key, and its duplicates are not caught.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from django.utils.crypto import salted_hmac

from .signatures import as_names, bind, check_names

Unique = bool | str | Sequence[str] | Callable[..., Any] | None

#: Derives the HMAC key from SECRET_KEY; changing it changes every key.
KEY_SALT = "django_dbtasks.unique"


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
    return salted_hmac(KEY_SALT, text, algorithm="sha256").hexdigest()
