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
import math
import sys
from collections.abc import Iterator
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


def _what(value: Any) -> str:
    """A value JSON cannot hold, in words: its type, or why a number does not fit."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits:,} digits"
    if isinstance(value, float):
        return f"the float {value!r}"
    return f"a {_describe(value)}"


def _advice(value: Any) -> str:
    if isinstance(value, Model):
        return (
            f"pass its primary key instead (for example {type(value).__name__.lower()}.pk) "
            "and load the object inside the task"
        )
    if isinstance(value, set | frozenset):
        return "pass a list instead"
    if isinstance(value, float):
        return "NaN and infinity are not JSON; pass None, or the number as a string"
    return (
        "pass plain JSON data instead (str, int, float, bool, None, list, dict); "
        "for a model instance pass its primary key"
    )


def _walk(value: Any) -> Iterator[tuple[str, Any, int, bool]]:
    """Every value inside ``value``, and every dict key, as ``(where, item, depth, is_key)``.

    ``where`` is a subscript path such as ``[0]['name']`` (empty for the value
    itself); depth-first, in order. Iterative, so that deep nesting is
    reported rather than hit.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        yield path, item, depth, False
        if isinstance(item, dict):
            for key in item:
                yield path, key, depth, True
            entries = list(item.items())
        elif isinstance(item, list | tuple):
            entries = list(enumerate(item))
        else:
            continue
        stack.extend((child, f"{path}[{key!r}]", depth + 1) for key, child in reversed(entries))


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
    return _has_escape(encoded) or encoded.count("[") + encoded.count("{") > MAX_NESTING


def _has_escape(encoded: str) -> bool:
    """Whether JSON text has the escape of a NUL or of a surrogate (an emoji, say)."""
    return "\\u0000" in encoded or "\\ud" in encoded


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """``(where, what)`` of the first text or nesting the database cannot store."""
    for path, item, depth, is_key in _walk(value):
        if isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                return (f"{path} (a key)" if is_key else path), problem
        elif isinstance(item, dict | list | tuple) and depth >= MAX_NESTING:
            return path, f"lists or dicts nested more than {MAX_NESTING} levels deep"
    return None


def _non_text_key(value: Any) -> tuple[str, Any] | None:
    """``(where, key)`` of the first dict key that is not a str."""
    for path, item, _, is_key in _walk(value):
        if is_key and not isinstance(item, str):
            return path, item
    return None


def _find_offender(value: Any) -> tuple[str, Any, bool] | None:
    """``(where, value, is_key)`` of the first value or dict key JSON cannot encode."""
    for path, item, _, is_key in _walk(value):
        if is_key:
            if not isinstance(item, str | int | float | bool | None):
                return path, item, True
            continue
        if isinstance(item, dict | list | tuple):
            continue
        try:
            _encode(item)
        except (TypeError, ValueError):
            return path, item, False
    return None


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels deep in ``value``."""
    return any(
        depth >= limit and isinstance(item, dict | list | tuple)
        for _, item, depth, _ in _walk(value)
    )


def _problem(value: Any) -> str | None:
    """Why ``value`` cannot be a task argument (a sentence's end), or None."""
    found = find_unstorable(value)
    if found is not None:
        where, problem = found
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
        return f"{_at(where)}has {problem}; {advice}"
    key = _non_text_key(value)
    if key is not None:
        where, name = key
        return (
            f"{_at(where)}has the dict key {name!r} (of type {type(name).__name__}): JSON "
            "object keys are text, so the task would receive something other than what was "
            "sent; use str keys"
        )
    offender = _find_offender(value)
    if offender is None:
        return None
    where, item, _ = offender
    if isinstance(item, int) and not isinstance(item, bool):
        return (
            f"{_at(where)}is {_what(item)}, too large to store: JSON text holds integers of "
            f"at most {sys.get_int_max_str_digits()} digits here; pass it as a string"
        )
    return (
        f"{_at(where)}is {_what(item)}, which is not JSON serialisable. Task arguments "
        f"are stored as JSON; {_advice(item)}"
    )


def _at(where: str) -> str:
    return f"at {where} " if where else ""


def _labelled(args: tuple | list, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    labelled = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    return labelled + [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]


def check_arguments(task_path: str, args: tuple | list, kwargs: dict[str, Any]) -> None:
    """Raise ``ArgumentNotSerializable`` naming the first argument JSON cannot store as sent."""
    for label, value in _labelled(args, kwargs):
        problem = _problem(value)
        if problem is not None:
            raise ArgumentNotSerializable(f"Cannot enqueue {task_path}: {label} {problem}.")


def encode_arguments(task_path: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    """Return args and kwargs as JSON text, or raise ``ArgumentNotSerializable``.

    The encoder itself catches most mistakes; the precise walk runs only when
    the text shows a sign of what it lets through (a dict, whose keys it
    turns into text; an escape; deep brackets).
    """
    try:
        encoded = _encode(args), _encode(kwargs)
    except (TypeError, ValueError, RecursionError):
        check_arguments(task_path, args, kwargs)
        raise  # pragma: no cover - check_arguments names the culprit first
    if any(_may_be_unstorable(text) or "{" in text[1:] for text in encoded):
        check_arguments(task_path, args, kwargs)
    return encoded


def encode_calls(task_path: str, calls: list[tuple[list[Any], dict[str, Any]]]) -> str:
    """Return a batch of calls as one JSON document, ``[[args, kwargs], ...]``.

    One encoder call per batch, where ``encode_arguments`` is two per job:
    ``enqueue_many()`` then writes the batch as one parameter. The document
    is refused for exactly what ``encode_arguments`` refuses, with the same
    message: when the encoder fails, or the text shows a sign of what it lets
    through (see ``_calls_may_be_unstorable``), each call goes through
    ``encode_arguments`` in turn, and the first bad one is named.
    """
    try:
        document = _encode(calls)
    except (TypeError, ValueError, RecursionError):
        document = None
    if document is None or _calls_may_be_unstorable(document, len(calls)):
        encoded = [encode_arguments(task_path, args, kwargs) for args, kwargs in calls]
        document = "[" + ", ".join(f"[{args}, {kwargs}]" for args, kwargs in encoded) + "]"
    return document


def _calls_may_be_unstorable(document: str, calls: int) -> bool:
    """``_may_be_unstorable`` for the document of ``calls`` calls.

    The document's own brackets are one ``[`` around it and three per call
    (the pair, its args, its kwargs). Any other ``{`` is a dict whose keys the
    encoder may have turned into text; fewer than ``MAX_NESTING`` other
    brackets in all cannot nest any call too deep.
    """
    objects = document.count("{")
    others = objects + document.count("[") - 1 - 3 * calls
    return _has_escape(document) or objects > calls or others >= MAX_NESTING


def holds_containers(document: str, calls: int) -> bool:
    """Whether a call in the document of ``encode_calls`` may hold a list or a dict.

    False means none does (each argument is a str, a number, a bool or None);
    True may be a string with a bracket in it.
    """
    return document.count("[") + document.count("{") > 1 + 3 * calls


def dumps_return_value(value: Any, max_bytes: int) -> str:
    """Encode a task's return value, with a clear error when the job row cannot hold it."""
    found = None
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, RecursionError):
        found = find_unstorable(value)
        if found is None:
            where, item, is_key = _find_offender(value) or ("", value, False)
            what = (
                f"the dict key {item!r} (of type {type(item).__name__})" if is_key else _what(item)
            )
            # A TypeError, as Django's own backends record it (with our message).
            raise TypeError(
                f"The task returned{' at ' + where if where else ''} {what}, which is not JSON "
                "serialisable; return plain JSON data (for a model instance, its primary key)."
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
