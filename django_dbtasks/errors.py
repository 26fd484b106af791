"""The storage format of ``Job.errors``: one entry per failed attempt, oldest first.

An entry is a dict with Django's ``TaskError`` fields (``exception_class_path``,
``traceback``) plus ``message``, a one-line summary for the admin and the
logs. Every entry is built by ``error_entry`` (so every one holds only text
the job table can store, within the limits below) and read back into a
``TaskError`` by ``task_error``. The statement that records a failed attempt
adds what only the database knows (``queries.FAIL_POSTGRES``): the attempt's
``started_at`` and ``finished_at`` (ISO 8601, the database's clock) and its
``worker_id``. Entries written before those fields existed lack them.

``LatestError`` reads a field of the latest entry in SQL, for the admin's
error column and its filter; the index ``dbtasks_job_latest_error`` is built
on the same expression, so the filter reads only the rows that have one.
"""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError
from django.db.models import F, Func, TextField

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


#: The fields of an entry ``LatestError`` may read (they are spelled into its SQL).
LATEST_ERROR_FIELDS = ("exception_class_path", "message")


def latest_error_sql(vendor: str, field: str, column: str = "errors") -> str:
    """SQL for ``field`` of the last entry of the JSON list in ``column`` (NULL if none).

    Neither spelling fails on a value of the wrong shape (an object, a string,
    an entry that is not an object): each gives NULL, so a malformed row can
    still be written and the index over this expression never refuses it.
    """
    if field not in LATEST_ERROR_FIELDS:
        raise ValueError(f"{field!r} is not one of {LATEST_ERROR_FIELDS}")
    if vendor == "postgresql":
        return f"({column} -> -1 ->> '{field}')"
    if vendor == "sqlite":
        return f"json_extract({column}, '$[#-1].{field}')"
    raise NotSupportedError(f"django-dbtasks supports PostgreSQL and SQLite, not {vendor}")


class LatestError(Func):
    """A field of the job's latest error entry, as text (NULL when it has none).

    The field's name is part of the SQL, not a parameter, so the expression a
    query uses is the one the index was built on, which the planner must see.
    """

    output_field = TextField()

    def __init__(self, field: str) -> None:
        latest_error_sql("postgresql", field)  # refuses an unknown field at once
        self.entry_field = field
        super().__init__(F("errors"))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        template = latest_error_sql(connection.vendor, self.entry_field, "%(expressions)s")
        return super().as_sql(compiler, connection, template=template, **extra)
