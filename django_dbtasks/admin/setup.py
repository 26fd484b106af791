"""What the admin needs to know about the configuration: database, queues, liveness.

The rules live in ``inspection`` (the shell's ``manage.py tasks`` and the metrics
read the same); these are the admin's names for them.
"""

from __future__ import annotations

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .. import inspection


def database() -> str:
    """The alias the admin reads and writes jobs through (the router's, as the ORM does)."""
    return inspection.jobs_database()


def connection() -> BaseDatabaseWrapper:
    return connections[database()]


def configured_queues() -> list[str]:
    """The queues named in TASKS, sorted; the filters and the overview start from them."""
    names: set[str] = set()
    for queues in inspection.configured_queues_by_alias().values():
        names.update(queues)
    return sorted(names)


def configured_queues_by_alias() -> dict[str, list[str]]:
    """Each configured alias of our backend, and the queues its TASKS entry names."""
    return inspection.configured_queues_by_alias()


def configured_aliases() -> list[str]:
    return sorted(inspection.configured_queues_by_alias())


def liveness_seconds() -> float:
    """Seconds without a heartbeat after which a worker counts as dead (see ``inspection``)."""
    return inspection.liveness_seconds()
