"""Progress of a running job: a percentage and a message the admin shows.

A task calls ``report_progress(40, "Exported 400 of 1,000 posts")`` as it
goes. The report is committed at once, and only while this run still holds
the job (the same fencing token as every other write). Inside a transaction
of the task's own, it goes through a second connection so that it is
visible before that transaction ends (on SQLite that second writer waits for
the task's write lock: report outside ``atomic()`` blocks there).

A report is written when its whole percentage changed, or else at most every
``MIN_INTERVAL`` seconds (a new message with the same percentage): at most
about a hundred writes a run plus two a second, so a tight loop can report
freely. The next
claim of the job clears what an earlier attempt reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from . import queries
from .logfmt import Fields

logger = logging.getLogger("django_dbtasks.progress")

#: Seconds between two progress writes of one job.
MIN_INTERVAL = 0.5


@dataclass
class _Run:
    job_id: int
    token: str
    database: str
    last_percent: int | None = None
    last_write: float = field(default=-MIN_INTERVAL)


_current: ContextVar[_Run | None] = ContextVar("dbtasks_progress_run", default=None)
_connections: dict[str, BaseDatabaseWrapper] = {}


@contextmanager
def running(job_id: int, token: str, database: str) -> Iterator[None]:
    """Let ``report_progress`` calls inside this block update job ``job_id``."""
    reset = _current.set(_Run(job_id, token, database))
    try:
        yield
    finally:
        _current.reset(reset)


def report_progress(percent: float, message: str = "") -> bool:
    """Record how far the running job is (0-100) and what it is doing.

    Returns whether the report was written. Outside a job run (a test calling
    the task function directly, say) it does nothing and returns False.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {percent!r}.")
    run = _current.get()
    if run is None:
        return False
    whole, now = int(percent), time.monotonic()
    if whole == run.last_percent and now - run.last_write < MIN_INTERVAL:
        return False
    run.last_percent, run.last_write = whole, now
    try:
        return queries.set_progress(
            _connection(run.database), run.job_id, run.token, whole, message[:255]
        )
    except DatabaseError as error:
        # Progress is for people watching; it must never fail the job itself.
        logger.warning(
            "%s", Fields(job=run.job_id, event="progress not recorded", error=str(error))
        )
        return False


def _connection(alias: str) -> BaseDatabaseWrapper:
    """The task's connection if it is in autocommit, else one kept for progress only."""
    if not connections[alias].in_atomic_block:
        return connections[alias]
    connection = _connections.get(alias)
    if connection is None:
        connection = connections.create_connection(alias)
        _connections[alias] = connection
    connection.close_if_unusable_or_obsolete()
    return connection
