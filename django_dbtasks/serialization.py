"""Arguments and return values are JSON, never pickle.

A value that JSON cannot store is refused at ``enqueue()`` time, before any row
is written, with a message naming its type: the classic mistake is passing a
model instance where its primary key belongs.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Model

from .exceptions import ArgumentNotSerializable

#: One encoder for every job: ``json.dumps(..., allow_nan=False)`` would build a new
#: one per call, which shows on ``enqueue_many()``'s per-job cost.
_encode = json.JSONEncoder(allow_nan=False).encode


def _describe(value: Any) -> str:
    kind = type(value)
    return f"{kind.__qualname__} ({kind.__module__}.{kind.__qualname__})"


def _advice(value: Any) -> str:
    if isinstance(value, Model):
        return (
            f"pass its primary key instead (for example {type(value).__name__.lower()}.pk) "
            "and load the object inside the task"
        )
    if isinstance(value, set | frozenset):
        return "pass a list instead"
    return (
        "pass plain JSON data instead (str, int, float, bool, None, list, dict); "
        "for a model instance pass its primary key"
    )


def _find_offender(value: Any) -> Any:
    """Return the innermost value JSON cannot encode (the one worth naming)."""
    if isinstance(value, dict):
        for item in value.values():
            if _find_offender(item) is not None:
                return _find_offender(item)
        return None
    if isinstance(value, list | tuple):
        for item in value:
            if _find_offender(item) is not None:
                return _find_offender(item)
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return value
    return None


def encode_arguments(task_path: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    """Return args and kwargs as JSON text, or raise ``ArgumentNotSerializable``."""
    try:
        return _encode(args), _encode(kwargs)
    except (TypeError, ValueError):
        check_arguments(task_path, args, kwargs)
        raise  # pragma: no cover - check_arguments names the culprit first


def check_arguments(task_path: str, args: tuple | list, kwargs: dict[str, Any]) -> None:
    """Raise ``ArgumentNotSerializable`` naming the first argument JSON cannot store."""
    labelled = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    labelled += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in labelled:
        offender = _find_offender(value)
        if offender is not None:
            raise ArgumentNotSerializable(
                f"Cannot enqueue {task_path}: {label} is a {_describe(offender)}, which is "
                f"not JSON serialisable. Task arguments are stored as JSON; "
                f"{_advice(offender)}."
            )


def dumps_return_value(value: Any) -> str:
    """Encode a task's return value, with a clear error when JSON cannot hold it."""
    try:
        return _encode(value)
    except (TypeError, ValueError):
        offender = _find_offender(value)
        raise ArgumentNotSerializable(
            f"The task returned a {_describe(offender)}, which is not JSON serialisable; "
            "return plain JSON data (for a model instance, its primary key)."
        )
