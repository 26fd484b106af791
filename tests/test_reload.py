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

    _enqueued_job_runs(worker)  # run by the second worker, which then stops cleanly
    assert Worker.objects.get(pk=second.pk).stopped_at is not None


def _edit(path, text: str) -> None:
    """Rewrite a watched file, with a modification time the watcher cannot miss."""
    path.write_text(text)
    later = time.time() + 1
    os.utime(path, (later, later))


def _enqueued_job_runs(worker) -> None:
    """A job enqueued now is run by the newest worker; then SIGTERM stops it with 0."""
    started = Worker.objects.order_by("-started_at").first()
    result = tasks.add.enqueue(20, 22)
    job = wait_until(
        lambda: (j := Job.objects.get(pk=result.id)).status == JobStatus.SUCCESSFUL and j
    )
    assert job.return_value == 42 and job.worker_ids == [started.pk]
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_syntax_error_in_a_tasks_module_is_logged_and_waits_for_the_fix(start_worker, tmp_path):
    """As runserver: the error with its file and line, the process alive, a fresh start."""
    app = tmp_path / "reload_app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    module = app / "tasks.py"
    module.write_text("from django_dbtasks import task\n\n\n@task()\ndef ping():\n    return 1\n")
    pythonpath = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    worker = start_worker("--reload", DBTASKS_TEST_EXTRA_APPS="reload_app", PYTHONPATH=pythonpath)
    wait_until(lambda: worker.output().count("event=started host=") == 1, timeout=30)
    time.sleep(1.5)  # the watcher's first snapshot of modification times

    _edit(module, "from django_dbtasks import task\n\n\n@task()\ndef ping(:\n    return 1\n")
    wait_until(lambda: "The worker could not start" in worker.output(), timeout=30)
    time.sleep(2)  # long enough to have exited, if it were going to
    assert worker.process.poll() is None
    output = worker.output()
    assert f"The worker could not start: SyntaxError in {module}, line 5" in output
    assert "Waiting for a file to change to start it again." in output

    _edit(module, "from django_dbtasks import task\n\n\n@task()\ndef ping():\n    return 2\n")
    wait_until(lambda: worker.output().count("event=started host=") == 2, timeout=30)
    assert f"{module} changed: starting the worker again." in worker.output()
    _enqueued_job_runs(worker)


@pytest.mark.slow
def test_a_syntax_error_in_a_module_django_setup_imports_waits_for_the_fix(start_worker, tmp_path):
    """The worker dies inside django.setup(), before any of our code: the parent waits."""
    probe = tmp_path / "reload_probe.py"
    probe.write_text("VERSION = 1\n")
    pythonpath = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    worker = start_worker("--reload", DBTASKS_TEST_IMPORT="reload_probe", PYTHONPATH=pythonpath)
    wait_until(lambda: worker.output().count("event=started host=") == 1, timeout=30)
    time.sleep(1.5)

    _edit(probe, "VERSION = (\n")
    wait_until(lambda: "Waiting for a Python file to change" in worker.output(), timeout=30)
    time.sleep(2)
    assert worker.process.poll() is None
    output = worker.output()
    assert "The worker exited with code 1 (its error is above)." in output
    assert f'File "{probe}", line 1' in output and "SyntaxError" in output

    _edit(probe, "VERSION = 3\n")
    wait_until(lambda: worker.output().count("event=started host=") == 2, timeout=30)
    _enqueued_job_runs(worker)
