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
    """Keeps a LISTEN alive on a connection of its own, and reports notifications.

    Its own connection, not the worker's: a notification that arrives while
    the worker's connection runs a claim or a completion would be read by
    psycopg into that connection's backlog, its socket would never become
    readable, and the worker would sleep until its next poll. This one runs
    nothing but LISTEN, so each notification makes its socket readable. It
    is opened with the settings of ``connection`` (never from a connection
    pool, where it would hold a pooled connection for ever), in autocommit.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection  # the Django connection whose settings it uses
        self._raw: Any = None

    def ensure(self) -> None:
        """LISTEN on a connection of its own (again, after it was lost)."""
        if self._raw is not None and not self._raw.closed:
            return
        self.close()
        params = self.connection.get_connection_params()
        with self.connection.wrap_database_errors:  # psycopg errors become Django's
            raw = self.connection.Database.connect(**params, autocommit=True)
            try:
                raw.execute(f"LISTEN {CHANNEL}")
            except BaseException:
                raw.close()
                raise
        self._raw = raw

    def fileno(self) -> int | None:
        """The socket to wait on, or None if not currently listening."""
        if self._raw is None or self._raw.closed:
            return None
        return int(self._raw.pgconn.socket)

    def drain(self) -> bool:
        """Consume pending notifications; return whether there was any."""
        if self._raw is None:
            return False
        try:
            with self.connection.wrap_database_errors:
                return bool(list(self._raw.notifies(timeout=0)))
        except Exception:
            self.close()  # LISTEN again at the next turn (ensure reports an outage)
            return True  # the socket woke us: look for work rather than miss it

    def close(self) -> None:
        """Close the listening connection (before a fork, and when the worker stops)."""
        raw, self._raw = self._raw, None
        if raw is not None and not raw.closed:
            try:
                raw.close()
            except Exception:
                pass  # already broken: nothing to close cleanly
