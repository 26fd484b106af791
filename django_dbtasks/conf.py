"""The backend's OPTIONS, parsed once into a typed object with documented defaults.

Every knob lives here so the README's configuration table and the code cannot
disagree. Bad values raise ``ImproperlyConfigured`` naming the option and the
expected type; the system check (``checks.py``) reports the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, alias: str = "default") -> Options:
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown option(s) {', '.join(unknown)}; "
                f"valid options are {', '.join(known)}."
            )
        values: dict[str, Any] = {}
        for name, value in raw.items():
            expected = type(getattr(cls, name))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (
                isinstance(value, bool) and expected is not bool
            ):
                raise ImproperlyConfigured(
                    f"TASKS[{alias!r}]['OPTIONS'][{name!r}] must be {expected.__name__}, "
                    f"got {value!r}."
                )
            values[name] = value
        options = cls(**values)
        options.validate(alias)
        return options

    def validate(self, alias: str) -> None:
        where = f"TASKS[{alias!r}]['OPTIONS']"
        for name in ("POLL_INTERVAL", "HEARTBEAT_INTERVAL", "LEASE", "WORKER_RETENTION"):
            if getattr(self, name) <= 0:
                raise ImproperlyConfigured(f"{where}[{name!r}] must be a positive number.")
        if self.PREFETCH_SECONDS < 0:
            raise ImproperlyConfigured(f"{where}['PREFETCH_SECONDS'] must not be negative.")
        if self.MAX_RESULT_BYTES < 1:
            raise ImproperlyConfigured(f"{where}['MAX_RESULT_BYTES'] must be at least 1.")
        if self.MAX_BATCH < 1:
            raise ImproperlyConfigured(f"{where}['MAX_BATCH'] must be at least 1.")
        if self.GRACE_PERIOD < 0:
            raise ImproperlyConfigured(f"{where}['GRACE_PERIOD'] must not be negative.")
        if self.MAX_CRASHES < 1:
            raise ImproperlyConfigured(f"{where}['MAX_CRASHES'] must be at least 1.")
        if self.LEASE < 2 * self.HEARTBEAT_INTERVAL:
            raise ImproperlyConfigured(
                f"{where}['LEASE'] ({self.LEASE:g} s) must be at least twice "
                f"HEARTBEAT_INTERVAL ({self.HEARTBEAT_INTERVAL:g} s), or a live worker's "
                "jobs would be rescued between two heartbeats."
            )
