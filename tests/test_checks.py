"""Configuration mistakes are caught by ``manage.py check`` with a clear message."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_dbtasks.backend import DatabaseBackend

from .testapp import tasks

BACKEND = "django_dbtasks.backend.DatabaseBackend"


def messages_for(params):
    return [(m.id, m.msg) for m in DatabaseBackend("default", params).check()]


def test_a_correct_configuration_has_no_messages():
    assert messages_for({"BACKEND": BACKEND}) == []


def test_unknown_option_is_named_with_the_valid_ones():
    [(code, msg)] = messages_for({"BACKEND": BACKEND, "OPTIONS": {"POLL_INTERVALL": 1}})
    assert code == "django_dbtasks.E001"
    assert "unknown option(s) POLL_INTERVALL" in msg and "POLL_INTERVAL" in msg


def test_wrong_option_type_is_named():
    [(_, msg)] = messages_for({"BACKEND": BACKEND, "OPTIONS": {"LEASE": "30"}})
    assert "['LEASE'] must be float, got '30'" in msg


def test_lease_shorter_than_two_heartbeats_is_refused():
    [(_, msg)] = messages_for(
        {"BACKEND": BACKEND, "OPTIONS": {"LEASE": 5, "HEARTBEAT_INTERVAL": 5}}
    )
    assert "LEASE" in msg and "at least twice" in msg and "HEARTBEAT_INTERVAL" in msg


def test_unknown_database_alias_is_refused():
    [(_, msg)] = messages_for({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "jobs"}})
    assert "'jobs', which is not in DATABASES" in msg


def test_empty_queues_means_any_queue_as_in_django():
    assert messages_for({"BACKEND": BACKEND, "QUEUES": []}) == []


def test_app_missing_from_installed_apps_is_explained():
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"]):
        backend = DatabaseBackend("default", {"BACKEND": BACKEND})
    [message] = backend.check()
    assert "'django_dbtasks' is not in INSTALLED_APPS" in message.msg
    with pytest.raises(ImproperlyConfigured, match="not in INSTALLED_APPS"):
        backend.enqueue(tasks.add, (1, 2), {})


@pytest.mark.django_db
def test_manage_py_check_reports_a_misconfigured_backend():
    tasks_setting = {"default": {"BACKEND": BACKEND, "OPTIONS": {"LEASE": -1}}}
    with override_settings(TASKS=tasks_setting), pytest.raises(SystemCheckError) as excinfo:
        call_command("check")
    assert "django_dbtasks.E001" in str(excinfo.value)
    assert "['LEASE'] must be a positive number" in str(excinfo.value)


def test_use_tz_false_is_refused():
    with override_settings(USE_TZ=False):
        ids = [m.id for m in DatabaseBackend("default", {"BACKEND": BACKEND}).check()]
    assert "django_dbtasks.E003" in ids


def test_a_non_finite_number_of_seconds_is_refused():
    [(code, msg)] = messages_for({"BACKEND": BACKEND, "OPTIONS": {"POLL_INTERVAL": float("inf")}})
    assert code == "django_dbtasks.E001"
    assert "['POLL_INTERVAL'] must be a finite number of seconds, at most 3600 s" in msg


def test_an_absurd_but_finite_option_is_refused_with_its_bound():
    [(code, msg)] = messages_for({"BACKEND": BACKEND, "OPTIONS": {"MAX_BATCH": 10**12}})
    assert code == "django_dbtasks.E001"
    assert "['MAX_BATCH'] must be at most 10000, got 1000000000000" in msg


@pytest.mark.django_db
def test_manage_py_check_reports_a_nan_option():
    tasks_setting = {"default": {"BACKEND": BACKEND, "OPTIONS": {"LEASE": float("nan")}}}
    with override_settings(TASKS=tasks_setting), pytest.raises(SystemCheckError) as excinfo:
        call_command("check")
    assert "django_dbtasks.E001" in str(excinfo.value)
    assert "['LEASE'] must be a finite number of seconds, at most 86400 s (1 day), got nan" in str(
        excinfo.value
    )
