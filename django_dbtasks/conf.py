"""The backend's OPTIONS, parsed once into a typed object with documented defaults.

Every knob lives here so the README's configuration table and the code cannot
disagree. Bad values raise ``ImproperlyConfigured`` naming the option, what was
wrong and what is accepted; the backend keeps the error for the system check
(``checks.py``, E001) and raises it on first use (``enqueue()``, the commands).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

HOUR = 3600.0
DAY = 24 * HOUR

#: The largest value of each numeric option: (limit, as shown in messages, why).
#: Each is far above any sensible setting and below what would break: a timer the
#: operating system refuses, a date the database cannot compute, a statement too
#: big to send. docs/configuration.md lists them.
MAXIMUMS: dict[str, tuple[float, str, str]] = {
    "POLL_INTERVAL": (
        HOUR,
        "3600 s (1 hour)",
        "on SQLite, or with NOTIFY off, a new job can wait that long before a worker sees it",
    ),
    "HEARTBEAT_INTERVAL": (
        HOUR,
        "3600 s (1 hour)",
        "LEASE must be at least two heartbeats, and a dead worker's jobs wait a LEASE",
    ),
    "LEASE": (DAY, "86400 s (1 day)", "a dead worker's jobs wait that long to run again"),
    "GRACE_PERIOD": (
        DAY,
        "86400 s (1 day)",
        "no process manager waits that long for a worker to stop; make long jobs resumable",
    ),
    "WORKER_RETENTION": (
        365 * DAY,
        "31536000 s (365 days)",
        "a dead worker's row is only a record for the admin",
    ),
    "PREFETCH_SECONDS": (
        60.0,
        "60 s",
        "a finished job's outcome can wait that long before it is written",
    ),
    "MAX_CRASHES": (
        100,
        "100",
        "a job that killed its worker that often is poison, and each death costs a LEASE",
    ),
    "MAX_BATCH": (
        10_000,
        "10000",
        "completing a batch on SQLite binds 3 values per job, and SQLite allows 32766 "
        "in one statement",
    ),
    "ALERT_WAIT_SECONDS": (
        30 * DAY,
        "2592000 s (30 days)",
        "a job due that long ago is an outage already; 0 turns the alert off",
    ),
    "MAX_RESULT_BYTES": (
        255 * 1024 * 1024,
        "267386880 (255 MiB)",
        "that is PostgreSQL's limit for one jsonb value",
    ),
}


@dataclass(frozen=True)
class Options:
    #: Database alias the jobs table lives in (and ``enqueue()`` writes through).
    DATABASE: str = "default"
    #: Seconds an idle worker waits before looking for ready jobs again.
    POLL_INTERVAL: float = 1.0
    #: Seconds between a worker's heartbeats (which also renew its jobs' leases).
    HEARTBEAT_INTERVAL: float = 5.0
    #: Seconds a claim holds without a heartbeat; after that the job is rescued.
    LEASE: float = 30.0
    #: Runs that may kill their worker in a row before the job is FAILED as poison.
    MAX_CRASHES: int = 3
    #: Seconds SIGTERM waits for running jobs before putting them back to READY.
    GRACE_PERIOD: float = 30.0
    #: Seconds after its last heartbeat a dead worker's row is deleted.
    WORKER_RETENTION: float = 24 * 3600.0
    #: Wake idle workers with LISTEN/NOTIFY (PostgreSQL). False behind PgBouncer
    #: in transaction mode, which cannot LISTEN; workers then poll.
    NOTIFY: bool = True
    #: The batching budget, in seconds: a worker claims ahead of its free pool
    #: processes about this much work (by the average job's duration), and a
    #: finished job's outcome waits at most this long to be written with others.
    #: Fast jobs are claimed and completed in batches, slow ones one by one.
    PREFETCH_SECONDS: float = 0.05
    #: Most jobs claimed (and completed) by one statement.
    MAX_BATCH: int = 100
    #: Largest return value, in bytes of JSON, a job may store; a larger one fails
    #: that attempt with ``ResultNotStorable`` (large results belong in a file).
    MAX_RESULT_BYTES: int = 1024 * 1024
    #: Seconds the oldest due job of a queue may wait before the admin overview shows
    #: a warning and ``manage.py tasks health`` reports it (``alerts``); 0: never.
    ALERT_WAIT_SECONDS: float = 300.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, alias: str = "default") -> Options:
        if raw is not None and not isinstance(raw, dict):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] must be a dict of option names to values, "
                f"got {type(raw).__name__} {shown(raw)}."
            )
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(name) for name in set(raw) - set(known))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown option(s) {', '.join(unknown)}; "
                f"valid options are {', '.join(known)}."
            )
        values: dict[str, Any] = {}
        for name, value in raw.items():
            expected = type(getattr(cls, name))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise ImproperlyConfigured(
                        f"TASKS[{alias!r}]['OPTIONS'][{name!r}] must be at most "
                        f"{MAXIMUMS[name][1]}, got {number(value)}."
                    ) from None
            if not isinstance(value, expected) or (
                isinstance(value, bool) and expected is not bool
            ):
                raise ImproperlyConfigured(
                    f"TASKS[{alias!r}]['OPTIONS'][{name!r}] must be {expected.__name__}, "
                    f"got {shown(value)}."
                )
            values[name] = value
        options = cls(**values)
        options.validate(alias)
        return options

    def validate(self, alias: str) -> None:
        where = f"TASKS[{alias!r}]['OPTIONS']"
        for name, (_, most, _) in MAXIMUMS.items():
            value = getattr(self, name)
            # NaN compares false with everything: without this it would pass every rule.
            if isinstance(value, float) and not math.isfinite(value):
                raise ImproperlyConfigured(
                    f"{where}[{name!r}] must be a finite number of seconds, at most "
                    f"{most}, got {value!r}."
                )
        for name in ("POLL_INTERVAL", "HEARTBEAT_INTERVAL", "LEASE", "WORKER_RETENTION"):
            if getattr(self, name) <= 0:
                raise ImproperlyConfigured(f"{where}[{name!r}] must be a positive number.")
        for name in ("PREFETCH_SECONDS", "ALERT_WAIT_SECONDS"):
            if getattr(self, name) < 0:
                raise ImproperlyConfigured(f"{where}[{name!r}] must not be negative.")
        if self.MAX_RESULT_BYTES < 1:
            raise ImproperlyConfigured(f"{where}['MAX_RESULT_BYTES'] must be at least 1.")
        if self.MAX_BATCH < 1:
            raise ImproperlyConfigured(f"{where}['MAX_BATCH'] must be at least 1.")
        if self.GRACE_PERIOD < 0:
            raise ImproperlyConfigured(f"{where}['GRACE_PERIOD'] must not be negative.")
        if self.MAX_CRASHES < 1:
            raise ImproperlyConfigured(f"{where}['MAX_CRASHES'] must be at least 1.")
        for name, (limit, most, why) in MAXIMUMS.items():
            value = getattr(self, name)
            if value > limit:
                raise ImproperlyConfigured(
                    f"{where}[{name!r}] must be at most {most}, got {number(value)}: {why}."
                )
        if self.LEASE < 2 * self.HEARTBEAT_INTERVAL:
            raise ImproperlyConfigured(
                f"{where}['LEASE'] ({self.LEASE:g} s) must be at least twice "
                f"HEARTBEAT_INTERVAL ({self.HEARTBEAT_INTERVAL:g} s), or a live worker's "
                "jobs would be rescued between two heartbeats."
            )


def number(value: float) -> str:
    """A number for a message: ``3600``, ``0.5``, ``1e+300``, never an exception."""
    if isinstance(value, int):
        if abs(value) < 10**16:
            return str(value)
        # str() of a huge int is slow, and refused beyond 4300 digits.
        return f"{'-' if value < 0 else ''}about 10**{int(value.bit_length() * 0.30103)}"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}"


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message must stay readable whatever was passed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return number(value)
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
