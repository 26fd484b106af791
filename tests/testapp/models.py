from django.db import models


class Execution(models.Model):
    """One row per time a test task body ran: lets tests count executions exactly."""

    label = models.CharField(max_length=100)
    job_id = models.CharField(max_length=40, blank=True)
    pid = models.IntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.label} (job {self.job_id})"
