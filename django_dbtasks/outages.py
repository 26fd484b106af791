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

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError

from .logfmt import Fields

logger = logging.getLogger("django_dbtasks.worker")
T = TypeVar("T")

#: Longest wait between two tries at an unreachable database, in seconds.
MAX_BACKOFF_SECONDS = 10.0

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


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class OutageGuard:
    """Runs the worker's database operations and owns its outage state.

    On an outage it logs once, closes the connection (the next operation
    reconnects) and backs off, doubling from half a second up to
    ``MAX_BACKOFF_SECONDS``; until ``retry_at`` the loop claims nothing. The
    first operation that works again ends the outage.
    """

    def __init__(self, connection: Callable[[], Any], worker_id: str) -> None:
        self.connection = connection
        self.worker_id = worker_id
        self.backoff_seconds = 0.0  # 0 while the database is reachable
        self.retry_at = 0.0  # monotonic time of the next try after an outage

    @property
    def down(self) -> bool:
        """Whether the last operation failed for want of a connection."""
        return bool(self.backoff_seconds)

    def run(self, operation: Callable[[], T], raise_refusal: bool = False) -> T | None:
        """Run ``operation``; on an outage log, back off and return None.

        A refusal (see ``is_outage``) is no outage: retrying the same work
        cannot help. It is raised if ``raise_refusal`` (the caller finds the
        job that caused it), else logged with its traceback, and None returned.
        """
        try:
            result = operation()
        except DatabaseError as error:
            if not is_outage(error, self.connection()):
                if raise_refusal:
                    raise
                logger.exception(
                    "%s",
                    Fields(
                        worker=self.worker_id,
                        event="the database refused a statement",
                        error=first_line(error),
                    ),
                )
                return None
            self._back_off(error)
            return None
        if self.backoff_seconds:
            logger.warning("%s", Fields(worker=self.worker_id, event="database reachable again"))
            self.backoff_seconds = 0.0
        return result

    def _back_off(self, error: DatabaseError) -> None:
        if not self.backoff_seconds:
            logger.error(
                "%s",
                Fields(
                    worker=self.worker_id,
                    event="database unavailable",
                    error=first_line(error),
                    retry=f"backoff up to {MAX_BACKOFF_SECONDS:g}s",
                ),
            )
        self.backoff_seconds = min(max(self.backoff_seconds * 2, 0.5), MAX_BACKOFF_SECONDS)
        self.retry_at = time.monotonic() + self.backoff_seconds
        try:
            self.connection().close()
        except DatabaseError:
            pass
