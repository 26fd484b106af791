"""Telling a database outage from a statement the database refused.

An outage (the server restarting, a dropped connection, a locked SQLite
file) passes: the worker backs off and does the same work again later. A
refusal (text jsonb cannot hold, a value over a size limit, a broken
constraint) does not pass: doing the same again fails the same way, so the
worker must find the job that caused it and end that job, not retry for ever.
Django folds both into ``OperationalError`` at times (PostgreSQL's "program
limit exceeded" is one), so the SQLSTATE decides.
"""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError

#: SQLSTATE classes that pass with time: connection exception, insufficient
#: resources, operator intervention (shutdown, statement timeout), system error,
#: transaction rollback (serialization failure, deadlock), lock not available.
TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58", "40", "55"})


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg 3 or 2), or None if the server sent none."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def is_outage(error: BaseException, connection: Any) -> bool:
    """Whether ``error`` means "unreachable for now" rather than "refused"."""
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    if connection.vendor != "postgresql":
        return True  # SQLite: a locked or unreadable file
    state = sqlstate(error)
    return state is None or state[:2] in TRANSIENT_CLASSES
