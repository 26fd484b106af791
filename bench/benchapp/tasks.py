import os
import time

from django_dbtasks import task


@task()
def noop():
    return None


@task()
def started_at():
    """Return when the task body started (wall clock, same host as the benchmark).

    When the benchmark names a FIFO in DBTASKS_BENCH_STARTS, the time is also
    written there, so that the benchmark waits on that pipe, not on queries.
    """
    now = time.time()
    if path := os.environ.get("DBTASKS_BENCH_STARTS"):
        with open(path, "w") as starts:
            starts.write(f"{now}\n")
    return now
