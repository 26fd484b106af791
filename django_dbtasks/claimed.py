"""``ClaimedJob``: what a worker holds of a job row it has just claimed.

Only the dataclass: the pool and the code that runs a job use it without
importing the SQL module (``queries.claim`` builds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs from a job row it has just claimed."""

    id: int
    task_path: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_token: str
    enqueued_at: datetime | None
    started_at: datetime | None
    worker_ids: list[str]
    #: The enqueuer's trace context (a propagator's carrier), or None: see ``tracing.py``.
    trace_context: dict[str, str] | None = None
    #: Why the row cannot be run ("" when it can): arguments that cannot be decoded or
    #: nest too deep, or a malformed row (written by SQL, or by a buggy release). Such
    #: a job fails at once instead of breaking the claim of the jobs beside it.
    unrunnable: str = ""
    #: Seconds the job had been due when it was claimed (database clock), for the metrics.
    waited: float | None = None
