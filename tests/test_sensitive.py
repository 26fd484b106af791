"""Sensitive arguments: which are redacted, declared only by real names, never in the log."""

from __future__ import annotations

import pytest

from django_dbtasks import task
from django_dbtasks.compat import InvalidTask
from django_dbtasks.registry import redact_job
from django_dbtasks.sensitive import REDACTED

from .conftest import run_worker
from .testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_sensitive_arguments_are_redacted_by_name_or_all():
    assert redact_job(tasks.calls_an_api.module_path, [7, "sk-live-123"], {"retries": 3}) == (
        [7, REDACTED],
        {"retries": 3},
    )
    assert redact_job(tasks.calls_an_api.module_path, [7], {"api_key": "sk-live-123"}) == (
        [7],
        {"api_key": REDACTED},
    )
    assert redact_job(tasks.all_secret.module_path, [], {"token": "t0k3n"}) == (
        [],
        {"token": REDACTED},
    )
    # A stored call that no longer fits the signature is redacted whole.
    assert redact_job(tasks.calls_an_api.module_path, [1, 2, 3, 4], {}) == ([REDACTED] * 4, {})


def test_sensitive_must_name_real_arguments():
    def charge(card_number, amount):
        return None

    with pytest.raises(InvalidTask, match=r"sensitive names 'card', which .*charge\(\) does not"):
        task(sensitive="card")(charge)


def test_the_worker_log_never_shows_a_sensitive_value():
    tasks.calls_an_api.enqueue(7, "sk-live-123")
    finished = run_worker()
    assert finished.returncode == 0
    assert "outcome=FAILED" in finished.stderr
    assert "sk-live-123" not in finished.stderr + finished.stdout
