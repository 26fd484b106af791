"""LISTEN/NOTIFY wake-ups (PostgreSQL): an idle worker starts a new job at once.

A statement-level trigger on the job table (migration 0002) runs
``pg_notify('dbtasks', '')`` once per INSERT statement, inside the enqueuing
transaction, so the notification is delivered on commit (never for a
rolled-back job), a bulk insert sends one, and PostgreSQL folds the repeats
of one transaction into one. It names no queue: telling queues apart cost a
transition table and about 15% of a single ``enqueue()``, while a worker
woken for another queue's job only runs one claim that finds nothing. Workers LISTEN on their
own connection and wait on its socket beside their pool processes. Polling
every ``POLL_INTERVAL`` stays as the fallback: a missed notification, a
deferred job becoming due, a retry, or a PgBouncer in transaction mode (which
cannot LISTEN; set ``NOTIFY: False`` there).
"""

from __future__ import annotations

from typing import Any

CHANNEL = "dbtasks"


class Listener:
    """Keeps a LISTEN alive on a Django connection and reports notifications."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._listening_on: Any = None

    def ensure(self) -> None:
        """LISTEN on the current raw connection (again, after a reconnect)."""
        self.connection.ensure_connection()
        raw = self.connection.connection
        if raw is not self._listening_on:
            with self.connection.wrap_database_errors:  # psycopg errors become Django's
                raw.execute(f"LISTEN {CHANNEL}")
            self._listening_on = raw

    def fileno(self) -> int | None:
        """The socket to wait on, or None if not currently listening."""
        raw = self.connection.connection
        if raw is None or raw is not self._listening_on or raw.closed:
            return None
        return int(raw.pgconn.socket)

    def drain(self) -> bool:
        """Consume pending notifications; return whether there was any."""
        raw = self.connection.connection
        if raw is None or raw is not self._listening_on:
            return False
        with self.connection.wrap_database_errors:  # psycopg errors become Django's
            return bool(list(raw.notifies(timeout=0)))
