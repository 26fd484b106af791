"""Log lines as logfmt: ``key=value`` pairs, a value quoted when it needs to be.

Every line the worker, the pool and the scheduler log is one ``Fields``, so
log shippers (Loki, Datadog, ``grep``) can split it without guessing where
``reason=lease lost (...)`` ends. The text is built when the line is emitted,
not when it is logged: a line below the logger's level costs almost nothing.
"""

from __future__ import annotations

import re
from typing import Any

#: A character that makes a value need quotes (one regex search, in C: a log line
#: per job is on the worker's hot path).
_NEEDS_QUOTES = re.compile(r'[ ="\\\n\r\t]')


def quote(value: Any) -> str:
    """``value`` as a logfmt value: bare if it can be, else a quoted, escaped string."""
    if type(value) is int:
        return str(value)
    text = "" if value is None else str(value)
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


class Fields:
    """One log line's ``key=value`` pairs, in order; formatted only when emitted.

    ``logger.info("%s", Fields(job=1, outcome="SUCCESSFUL"))``. A ``None``
    value leaves its key out.
    """

    __slots__ = ("fields",)

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(
            [f"{key}={quote(value)}" for key, value in self.fields.items() if value is not None]
        )
