"""Drive the worker loop one turn at a time, in this process, and read the SQL of a turn.

``WorkerLoop`` runs with its real SQL against the real test database, and an
``InlinePool`` that runs each job synchronously at the loop's wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.inline import InlinePool
from django_dbtasks.worker import WorkerLoop, WorkerOptions

#: Timers far away, so that a turn runs only what its test is about.
QUIET = {"POLL_INTERVAL": 60.0, "HEARTBEAT_INTERVAL": 60.0, "LEASE": 120.0}


def quiet_backend(**options: float) -> DatabaseBackend:
    params = {**settings.TASKS["default"]}
    params["OPTIONS"] = {**params["OPTIONS"], **QUIET, **options}
    return DatabaseBackend("default", params)


@contextmanager
def started(backend: DatabaseBackend | None = None, **options: object) -> Iterator[WorkerLoop]:
    loop = WorkerLoop(
        backend or quiet_backend(),
        WorkerOptions(queues=["default", "emails", "low"], scheduler=False, **options),  # type: ignore[arg-type]
        pool=InlinePool(),
    )
    loop.start()
    try:
        yield loop
    finally:
        loop.shutdown()


def statements_of(loop: WorkerLoop) -> list[str]:
    """Run one turn; return the SQL it sent."""
    with CaptureQueriesContext(connection) as captured:
        assert loop.step()
    return [query["sql"] for query in captured.captured_queries]


def warm(loop: WorkerLoop) -> None:
    """As after a stream of no-op jobs: the loop claims a full batch at once."""
    for _ in range(20):
        loop.pace.observe(1e-5)


def kind(sql: str) -> str:
    """What a statement of the worker does, read from its SQL (see ``queries``)."""
    flat = " ".join(sql.split())
    if flat.startswith("UPDATE") and "status = 'SUCCESSFUL'" in flat:
        return "complete"
    if flat.startswith("UPDATE") and "retry_in" in flat:
        return "fail"
    if "status = 'RUNNING', attempts = attempts + 1" in flat:
        return "claim"
    return flat.split()[0]
