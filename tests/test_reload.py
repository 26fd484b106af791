"""``runtasks --reload``: a code change restarts the worker; SIGTERM still stops it cleanly."""

from __future__ import annotations

import os
import signal
import time

import pytest

from django_dbtasks.models import Job, JobStatus, Worker

from .conftest import wait_until
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_code_change_restarts_the_worker_which_goes_on_working(start_worker, tmp_path):
    probe = tmp_path / "reload_probe.py"
    probe.write_text("VERSION = 1\n")
    pythonpath = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    worker = start_worker("--reload", DBTASKS_TEST_IMPORT="reload_probe", PYTHONPATH=pythonpath)
    wait_until(lambda: worker.output().count("event=started host=") == 1, timeout=30)
    first = Worker.objects.get()
    time.sleep(1.5)  # the watcher's first snapshot of modification times

    probe.write_text("VERSION = 2\n")
    wait_until(lambda: worker.output().count("event=started host=") == 2, timeout=30)
    assert "reload_probe.py changed: stopping the worker to reload it." in worker.output()
    second = Worker.objects.exclude(pk=first.pk).get()
    assert second.pid != first.pid
    assert Worker.objects.get(pk=first.pk).stopped_at is not None

    result = tasks.add.enqueue(20, 22)
    job = wait_until(
        lambda: (j := Job.objects.get(pk=result.id)).status == JobStatus.SUCCESSFUL and j
    )
    assert job.return_value == 42 and job.worker_ids == [second.pk]

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert Worker.objects.get(pk=second.pk).stopped_at is not None
