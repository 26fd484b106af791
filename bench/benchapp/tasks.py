import time

from django_dbtasks import task


@task()
def noop():
    return None


@task()
def started_at():
    """Return when the task body started (wall clock, same host as the benchmark)."""
    return time.time()
