"""What the admin needs to know about the configuration: database, queues, liveness."""

from __future__ import annotations

from django.conf import settings
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from ..backend import DatabaseBackend
from ..compat import task_backends
from ..conf import Options
from ..models import Job


def database() -> str:
    """The alias the admin reads and writes jobs through (the router's, as the ORM does)."""
    return router.db_for_write(Job)


def connection() -> BaseDatabaseWrapper:
    return connections[database()]


def _backends() -> list[DatabaseBackend]:
    """Every configured ``DatabaseBackend`` that loaded without a configuration error."""
    found = []
    for alias in getattr(settings, "TASKS", {}) or {}:
        try:
            backend = task_backends[alias]
        except Exception:  # a broken TASKS entry is the system checks' business
            continue
        if isinstance(backend, DatabaseBackend) and backend.config_error is None:
            found.append(backend)
    return found


def configured_queues() -> list[str]:
    """The queues named in TASKS, sorted; the filters and the overview start from them."""
    names: set[str] = set()
    for backend in _backends():
        names.update(getattr(backend, "queues", ()))
    return sorted(names)


def configured_queues_by_alias() -> dict[str, list[str]]:
    """Each configured alias of our backend, and the queues its TASKS entry names."""
    return {backend.alias: sorted(getattr(backend, "queues", ())) for backend in _backends()}


def configured_aliases() -> list[str]:
    return sorted(backend.alias for backend in _backends())


def liveness_seconds() -> float:
    """Seconds without a heartbeat after which a worker counts as dead: the longest LEASE.

    That is when its jobs are rescued too, so "dead" here means what it means
    to the queue.
    """
    leases = [backend.config.LEASE for backend in _backends()]
    return max(leases, default=Options.LEASE)
