"""django-dbtasks: background tasks for Django, stored in your database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Backoff", "DbTask", "DbTaskResult", "periodic", "report_progress", "task"]

if TYPE_CHECKING:
    from .base import DbTask, DbTaskResult, task
    from .progress import report_progress
    from .retry import Backoff
    from .scheduler import periodic


def __getattr__(name: str) -> Any:
    # Local imports, on first use: importing the package (e.g. from settings) must not
    # load Django's task machinery before settings are configured.
    if name in {"DbTask", "DbTaskResult", "task"}:
        from . import base

        return getattr(base, name)
    if name == "periodic":
        from .scheduler import periodic

        return periodic
    if name == "report_progress":
        from .progress import report_progress

        return report_progress
    if name == "Backoff":
        from .retry import Backoff

        return Backoff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
