"""Arguments and return values are JSON, never pickle.

A value that JSON cannot store is refused at ``enqueue()`` time, before any row
is written, with a message naming its type: the classic mistake is passing a
model instance where its primary key belongs.

JSON that the database cannot store is refused too, on PostgreSQL and SQLite
alike so that a job means the same on both: text with U+0000 (NUL) or a lone
surrogate (PostgreSQL's jsonb refuses both), and lists or dicts nested more
than ``MAX_NESTING`` deep (they break Python's own recursion further on).
Return values are held to the same rules in the pool process, and to the
``MAX_RESULT_BYTES`` option, so that one job's output ends that job only.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Model

from .exceptions import ArgumentNotSerializable, ResultNotStorable

#: Deepest nesting of lists and dicts in a job's arguments or return value.
MAX_NESTING = 100

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


def _bad_text(text: str) -> str | None:
    """What in ``text`` the database cannot store, or None."""
    if "\x00" in text:
        return "the character U+0000 (NUL)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"the lone surrogate U+{ord(text[error.start]):04X}"
    return None


def _may_be_unstorable(encoded: str) -> bool:
    """A quick look at JSON text: False means it certainly holds nothing unstorable.

    The encoder escapes NUL as ``\\u0000`` and surrogates as ``\\udXXX``, and
    each level of nesting costs a bracket, so the precise walk runs only on
    text that has one of these (an emoji, say), not on every job.
    """
    return (
        "\\u0000" in encoded
        or "\\ud" in encoded
        or encoded.count("[") + encoded.count("{") > MAX_NESTING
    )


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """``(where, what)`` of the first text or nesting the database cannot store.

    ``where`` is a subscript path such as ``[0]['name']`` (empty for the
    value itself). Iterative, so that deep nesting is reported, not hit.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                return path, problem
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_NESTING:
                return path, f"lists or dicts nested more than {MAX_NESTING} levels deep"
            if isinstance(item, dict):
                entries = list(item.items())
                for key, _ in entries:
                    problem = _bad_text(key) if isinstance(key, str) else None
                    if problem:
                        return f"{path} (a key)", problem
            else:
                entries = list(enumerate(item))
            for key, child in reversed(entries):
                stack.append((child, f"{path}[{key!r}]", depth + 1))
    return None


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels deep in ``value`` (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def encode_arguments(task_path: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    """Return args and kwargs as JSON text, or raise ``ArgumentNotSerializable``."""
    try:
        encoded = _encode(args), _encode(kwargs)
    except (TypeError, ValueError, RecursionError):
        check_arguments(task_path, args, kwargs)
        raise  # pragma: no cover - check_arguments names the culprit first
    if _may_be_unstorable(encoded[0]) or _may_be_unstorable(encoded[1]):
        _check_storable(task_path, args, kwargs)
    return encoded


def _labelled(args: tuple | list, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    labelled = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    return labelled + [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]


def _check_storable(task_path: str, args: tuple | list, kwargs: dict[str, Any]) -> None:
    for label, value in _labelled(args, kwargs):
        found = find_unstorable(value)
        if found is None:
            continue
        where, problem = found
        place = f"{label}{' at ' + where if where else ''}"
        if problem.startswith("lists"):
            advice = (
                "pass a flatter structure, or store the data (a model, a file) and pass its key"
            )
        else:
            advice = (
                "the database cannot store it (PostgreSQL refuses it, and SQLite is held "
                "to the same rule so that a job means the same on both); remove it, or "
                "pass the text encoded (for example with base64)"
            )
        raise ArgumentNotSerializable(
            f"Cannot enqueue {task_path}: {place} has {problem}; {advice}."
        )


def check_arguments(task_path: str, args: tuple | list, kwargs: dict[str, Any]) -> None:
    """Raise ``ArgumentNotSerializable`` naming the first argument JSON cannot store."""
    _check_storable(task_path, args, kwargs)  # first: deep nesting would break the search
    for label, value in _labelled(args, kwargs):
        offender = _find_offender(value)
        if offender is not None:
            raise ArgumentNotSerializable(
                f"Cannot enqueue {task_path}: {label} is a {_describe(offender)}, which is "
                f"not JSON serialisable. Task arguments are stored as JSON; "
                f"{_advice(offender)}."
            )


def dumps_return_value(value: Any, max_bytes: int) -> str:
    """Encode a task's return value, with a clear error when the job row cannot hold it."""
    found = None
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, RecursionError):
        found = find_unstorable(value)
        if found is None:
            offender = _find_offender(value)
            raise ArgumentNotSerializable(
                f"The task returned a {_describe(offender)}, which is not JSON serialisable; "
                "return plain JSON data (for a model instance, its primary key)."
            ) from None
    if found is None and _may_be_unstorable(encoded):
        found = find_unstorable(value)
    if found is not None:
        where, problem = found
        raise ResultNotStorable(
            f"The task's return value{' at ' + where if where else ''} has {problem}, "
            "which the job table cannot store; return plain JSON data without it (encode "
            "binary text, for example with base64)."
        )
    if len(encoded) > max_bytes:
        raise ResultNotStorable(
            f"The task's return value is {len(encoded):,} bytes of JSON, more than the "
            f"MAX_RESULT_BYTES option allows ({max_bytes:,}). Store large results elsewhere "
            "(a file, a model) and return their key, or raise the option."
        )
    return encoded
