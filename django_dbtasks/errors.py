"""The storage format of ``Job.errors``: one entry per failed attempt, oldest first.

An entry is a dict with Django's ``TaskError`` fields (``exception_class_path``,
``traceback``) plus ``message``, a one-line summary for the admin and the
logs. Every entry is built by ``error_entry`` (so every one holds only text
the job table can store, within the limits below) and read back into a
``TaskError`` by ``task_error``.
"""

from __future__ import annotations

from typing import Any

from .compat import TaskError
from .exceptions import exception_path

#: Longest traceback kept per failed attempt (its start and its end are kept).
MAX_TRACEBACK_CHARS = 64_000
#: Longest one-line summary of a failed attempt.
MAX_MESSAGE_CHARS = 2_000


def storable_text(text: str, limit: int) -> str:
    """``text`` as the job table can store it: NUL and lone surrogates escaped, cut to size.

    Error text is for people: ``\\x00`` and ``\\udc80`` read as well as the
    characters, and a cut in the middle of a huge traceback keeps both ends.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        head, tail = limit // 4, limit - limit // 4
        cut = len(text) - head - tail
        text = f"{text[:head]}\n[... {cut:,} characters cut ...]\n{text[-tail:]}"
    return text


def error_entry(
    exc_type: type[BaseException], text: str, message: str | None = None
) -> dict[str, Any]:
    """One failed attempt as stored in ``Job.errors`` (Django's TaskError, plus a summary)."""
    summary = message or f"{exc_type.__name__}: {text.strip().splitlines()[0] if text else ''}"
    return {
        "exception_class_path": exception_path(exc_type),
        "traceback": storable_text(text, MAX_TRACEBACK_CHARS),
        "message": storable_text(summary, MAX_MESSAGE_CHARS),
    }


def task_error(entry: dict[str, Any]) -> TaskError:
    """A stored entry as Django's ``TaskError`` (an entry written by SQL may lack a traceback)."""
    return TaskError(
        exception_class_path=entry["exception_class_path"],
        traceback=entry.get("traceback", ""),
    )
