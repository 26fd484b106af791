"""Unique jobs: at most one unfinished job per key, enforced by the database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from django_dbtasks import task
from django_dbtasks.compat import InvalidTask
from django_dbtasks.models import Job

from .conftest import run_worker
from .testapp import tasks
from .testapp.models import Execution

PATH = "tests.testapp.tasks.unique_per_user"


@pytest.mark.django_db
def test_duplicate_returns_the_existing_job():
    first = tasks.unique_per_user.enqueue(7)
    again = tasks.unique_per_user.enqueue(user_id=7, note="other note, same user")
    other = tasks.unique_per_user.enqueue(8)
    assert again.id == first.id != other.id
    assert Job.objects.filter(task_path=PATH).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_frees_its_key():
    first = tasks.unique_per_user.enqueue(7)
    assert run_worker().returncode == 0
    second = tasks.unique_per_user.enqueue(7)
    assert second.id != first.id
    assert Execution.objects.filter(label="unique-7").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_of_one_unique_job_make_one_row():
    barrier = threading.Barrier(8)

    def hammer(thread: int) -> set[str]:
        try:
            barrier.wait()
            return {tasks.unique_per_user.enqueue(42, note=f"{thread}-{i}").id for i in range(100)}
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        seen = set().union(*pool.map(hammer, range(8)))
    assert Job.objects.filter(task_path=PATH).count() == 1
    assert seen == {str(Job.objects.get(task_path=PATH).pk)}


def test_unique_must_name_real_arguments():
    def send(user_id):
        pass

    with pytest.raises(InvalidTask, match="unique names 'account_id', which .*send\\(\\)"):
        task(unique="account_id")(send)
