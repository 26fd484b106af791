"""The tables: one row per job run and one per worker process.

The claim query (see ``queries.py``) is the hot path, so ``Job`` carries a
partial index shaped exactly like it: only READY rows, in claim order
(``priority DESC, run_after, id``). Finished rows, however many, are not in
that index, so the claim cost does not grow with history. On a table of
1,000,000 finished and 100,000 ready jobs (PostgreSQL 15) ``EXPLAIN ANALYZE``
of the claim shows ``Index Scan using dbtasks_job_ready`` reading only the
first LIMIT rows of the index, then ``LockRows`` and the ``Update``; there is
no sequential scan and no sort. ``docs/internals.md`` has the full plan.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from .compat import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY


class JobStatus(models.TextChoices):
    """A job's place in its life; the first four are Django's own statuses."""

    READY = "READY", _("Ready")
    RUNNING = "RUNNING", _("Running")
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")


FINISHED_STATUSES = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)


class JobQuerySet(models.QuerySet["Job"]):
    def ready(self) -> JobQuerySet:
        return self.filter(status=JobStatus.READY)

    def running(self) -> JobQuerySet:
        return self.filter(status=JobStatus.RUNNING)

    def successful(self) -> JobQuerySet:
        return self.filter(status=JobStatus.SUCCESSFUL)

    def failed(self) -> JobQuerySet:
        return self.filter(status=JobStatus.FAILED)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)


class Job(models.Model):
    """One enqueued run of a task, from READY to a finished status."""

    id = models.BigAutoField(primary_key=True)
    task_path = models.CharField(max_length=255, help_text=_("Dotted path of the task function."))
    queue_name = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.READY)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)

    # Times come from the database's clock (db_default), never a worker's.
    enqueued_at = models.DateTimeField(db_default=Now())
    run_after = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveIntegerField(
        default=0, help_text=_("Attempts used so far; a worker crash does not use one.")
    )
    max_attempts = models.PositiveIntegerField(default=1)
    crashes = models.PositiveIntegerField(
        default=0, help_text=_("Runs in a row that ended with their worker dying.")
    )
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(
        default=list, blank=True, help_text=_("One entry per failed attempt, oldest first.")
    )
    worker_ids = models.JSONField(
        default=list, blank=True, help_text=_("The worker of each run, in order.")
    )

    # Set for tasks declared ``unique``: at most one READY or RUNNING job per
    # (task_path, unique_key), enforced by a partial unique index. NULL (not "")
    # for other jobs, so they stay out of that index.
    unique_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    # The current claim: who holds the job, the fencing token every later
    # write must present, and until when the claim holds without a heartbeat.
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                models.F("priority").desc(),
                "run_after",
                "id",
                name="dbtasks_job_ready",
                condition=models.Q(status="READY"),
            ),
            models.Index(
                "lease_expires_at",
                name="dbtasks_job_running_lease",
                condition=models.Q(status="RUNNING"),
            ),
            # Pruning walks finished rows by age; READY inserts never touch this index.
            models.Index(
                "finished_at",
                name="dbtasks_job_finished",
                condition=models.Q(status__in=["SUCCESSFUL", "FAILED", "CANCELLED"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["task_path", "unique_key"],
                condition=models.Q(status__in=["READY", "RUNNING"], unique_key__isnull=False),
                name="dbtasks_job_unique_unfinished",
            ),
            models.CheckConstraint(
                condition=models.Q(priority__gte=TASK_MIN_PRIORITY)
                & models.Q(priority__lte=TASK_MAX_PRIORITY),
                name="dbtasks_job_priority_range",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values),
                name="dbtasks_job_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def error_entries(self) -> list[dict[str, Any]]:
        return list(self.errors or [])


class Worker(models.Model):
    """One ``runtasks`` process, live or recently dead, known by its heartbeat."""

    id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(db_default=Now())
    last_heartbeat_at = models.DateTimeField(db_default=Now())
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.id})"
