"""The Django admin of django-dbtasks: jobs, schedules, workers and the queue overview.

One module per page: ``jobs`` (list, detail, retry and cancel), ``schedules``,
``workers``, ``overview`` (per-queue statistics and the chart). ``operations``
holds the retry and cancel logic, ``display`` the formatting, ``setup`` what
the admin reads from the configuration, ``lookups`` what a query string may
filter by. A job's page reads its failed attempts through ``attempts`` and
finds the project's own frames of a traceback with ``tracebacks``; every
page shows times with their seconds through ``times``.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import Job, Schedule, Worker
from .jobs import JobAdmin
from .schedules import ScheduleAdmin
from .workers import WorkerAdmin

admin.site.register(Job, JobAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(Worker, WorkerAdmin)

__all__ = ["JobAdmin", "ScheduleAdmin", "WorkerAdmin"]
