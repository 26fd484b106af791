"""The ``run_jobs`` pytest fixture: ``run_ready_jobs`` with the database access it needs.

Opt-in, as Celery's ``celery.contrib.pytest`` is: list this module in the
project's root ``conftest.py``, ``pytest_plugins = ["django_dbtasks.pytest_plugin"]``
(or import the fixture there). Only this module imports pytest, so pytest
stays a test dependency of the project, never a runtime one of ours.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .models import Job
from .testing import run_ready_jobs


@pytest.fixture
def run_jobs(db: None) -> Callable[..., list[Job]]:
    """``run_ready_jobs``: call it to run the ready jobs in the test (pytest-django's ``db``).

    With ``transactional_db`` or ``django_db(transaction=True)`` the test's
    own marker wins and the jobs run in autocommit, as in a worker.
    """
    return run_ready_jobs
