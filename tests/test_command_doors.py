"""Every door checks what comes in: OPTIONS, and the options of ``runtasks`` and ``prunetasks``.

Bad input gets a clear error where it arrives (``manage.py check``'s E001, an
argparse usage error, a ``CommandError``), saying what was wrong and what is
accepted, never a traceback. Each bound is tested at its edge too: the largest
accepted value really works against the real database.
"""

from __future__ import annotations

import datetime as dt
import math
import resource
import subprocess
import uuid
from dataclasses import fields
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtasks import queries
from django_dbtasks.backend import DatabaseBackend
from django_dbtasks.conf import MAXIMUMS, Options
from django_dbtasks.durations import MAX_DURATION
from django_dbtasks.management.commands import prunetasks, runtasks
from django_dbtasks.models import Job, JobStatus

from .conftest import ROOT, manage, run_worker, worker_env
from .testapp import tasks

BACKEND = "django_dbtasks.backend.DatabaseBackend"
SECONDS = ["POLL_INTERVAL", "HEARTBEAT_INTERVAL", "LEASE", "GRACE_PERIOD"]
SECONDS += ["WORKER_RETENTION", "PREFETCH_SECONDS", "ALERT_WAIT_SECONDS"]
#: Each option at its largest, with LEASE large enough for the largest heartbeat.
AT_THE_LIMITS = {name: limit for name, (limit, _, _) in MAXIMUMS.items()}


def option_messages(options):
    backend = DatabaseBackend("default", {"BACKEND": BACKEND, "OPTIONS": options})
    return [(message.id, message.msg) for message in backend.check()]


# OPTIONS


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_seconds_are_refused_by_the_check(name, value):
    [(code, msg)] = option_messages({name: value})
    assert code == "django_dbtasks.E001"
    assert f"['{name}'] must be a finite number of seconds, at most " in msg
    assert f"got {value!r}" in msg


@pytest.mark.parametrize("name", list(MAXIMUMS))
def test_each_option_has_an_upper_bound_with_its_reason(name):
    limit, most, why = MAXIMUMS[name]
    value = limit * 10 if isinstance(limit, int) else limit * 1e6
    [(code, msg)] = option_messages({name: value})
    assert code == "django_dbtasks.E001"
    assert f"['{name}'] must be at most {most}, got " in msg and msg.endswith(f": {why}.")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"HEARTBEAT_INTERVAL": 1e300}, "must be at most 3600 s (1 hour), got 1e+300"),
        ({"MAX_BATCH": 10**12}, "must be at most 10000, got 1000000000000: completing"),
        (
            {"MAX_RESULT_BYTES": 256 * 1024 * 1024},
            "must be at most 267386880 (255 MiB), got 268435456: that is PostgreSQL's limit",
        ),
        ({"LEASE": 10**400}, "['LEASE'] must be at most 86400 s (1 day), got about 10**400."),
        ({"MAX_CRASHES": 10**400}, "['MAX_CRASHES'] must be at most 100, got about 10**400"),
        (["LEASE"], "['OPTIONS'] must be a dict of option names to values, got list"),
        ({1: 2}, "unknown option(s) 1; valid options are DATABASE"),
    ],
)
def test_absurd_options_are_explained(options, message):
    [(code, msg)] = option_messages(options)
    assert code == "django_dbtasks.E001"
    assert message in msg


def test_every_option_at_its_limit_is_valid():
    assert option_messages(AT_THE_LIMITS) == []


def test_a_bad_option_fails_manage_py_check_and_runtasks_without_a_traceback(tmp_path: Path):
    # A URLconf that defines no task: the variant with tasks defined during setup is below.
    (tmp_path / "no_task_urls.py").write_text("urlpatterns = []\n")
    (tmp_path / "no_task_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\nROOT_URLCONF = 'no_task_urls'\n"
    )
    env = worker_env(DBTASKS_TEST_LEASE="nan", DJANGO_SETTINGS_MODULE="no_task_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    message = "['LEASE'] must be a finite number of seconds, at most 86400 s (1 day), got nan."
    for command in (["check"], ["runtasks", "--burst"]):
        finished = subprocess.run(
            manage(*command), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert "Traceback" not in finished.stderr, (command, finished.stderr)
        assert finished.returncode == 1
        assert "django_dbtasks.E001" in finished.stderr and message in finished.stderr


def test_a_bad_option_is_a_check_message_even_when_tasks_are_defined_during_setup(
    tmp_path: Path,
):
    (tmp_path / "ready_app").mkdir()
    (tmp_path / "ready_app" / "__init__.py").write_text("")
    (tmp_path / "ready_app" / "apps.py").write_text(
        "from django.apps import AppConfig\n\n\n"
        "class ReadyAppConfig(AppConfig):\n"
        "    name = 'ready_app'\n\n"
        "    def ready(self):\n"
        "        from tests.testapp import tasks  # noqa: F401 - defines tasks in setup()\n"
    )
    (tmp_path / "ready_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "INSTALLED_APPS = [*INSTALLED_APPS, 'ready_app']  # noqa: F405\n"
        "TASKS['default']['OPTIONS']['LEASE'] = float('nan')  # noqa: F405\n"
    )
    env = worker_env(DJANGO_SETTINGS_MODULE="ready_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    finished = subprocess.run(
        manage("check"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in finished.stderr
    assert finished.returncode == 1
    assert "django_dbtasks.E001" in finished.stderr
    assert "['LEASE'] must be a finite number of seconds" in finished.stderr


option_values = st.one_of(
    st.floats(),
    st.integers(),
    st.integers(4290, 4400).map(lambda digits: 10**digits),
    st.booleans(),
    st.none(),
    st.text(max_size=10),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -0.0, 2**63, 10**12]),
)
option_names = st.sampled_from([field.name for field in fields(Options)]) | st.text(max_size=8)


@given(st.dictionaries(option_names, option_values, max_size=4))
@example({"POLL_INTERVAL": math.inf})
@example({"LEASE": math.nan})
@example({"MAX_BATCH": 10**12, "HEARTBEAT_INTERVAL": 1e300})
@settings(max_examples=300, deadline=None, database=None)
def test_any_options_give_a_valid_backend_or_one_clear_check_message(options):
    backend = DatabaseBackend("default", {"BACKEND": BACKEND, "OPTIONS": options})
    messages = backend.check()
    if backend.config_error is None:
        assert messages == []
        config = backend.config
        for name, (limit, _, _) in MAXIMUMS.items():
            value = getattr(config, name)
            assert math.isfinite(value) and value <= limit, (name, value)
        assert config.LEASE >= 2 * config.HEARTBEAT_INTERVAL
    else:
        [message] = messages
        assert message.id == "django_dbtasks.E001"
        assert message.msg.startswith("TASKS['default']['OPTIONS']")
        assert len(message.msg) < 400  # readable, whatever was passed


# runtasks


def parse(command, *args):
    """What argparse makes of ``args`` for ``command`` (CommandError when it refuses them)."""
    return (
        command.Command()
        .create_parser("manage.py", command.__name__.rsplit(".")[-1])
        .parse_args(list(args))
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--concurrency", "99999999999999999999999"],
            "argument --concurrency/-c: must be at most 256, got about 10**23: each pool "
            "process is a forked copy of the worker; for more jobs at once, run more workers",
        ),
        (["--concurrency", "257"], "must be at most 256, got 257"),
        (["--concurrency", "9" * 5000], "must be at most 256, got a 5000-digit number"),
        (["--concurrency", "0"], "must be at least 1, got 0"),
        (["-c", "two"], "argument --concurrency/-c: 'two' is not a whole number"),
        (
            ["--max-tasks-per-child", "99999999999999999999999"],
            "argument --max-tasks-per-child: must be at most 1000000000, got about 10**23: "
            "leave the option out to never replace a pool process",
        ),
        (
            ["--max-memory-per-child", "99999999999999999999999"],
            "argument --max-memory-per-child: must be at most 1073741824, got about 10**23: "
            "that is 1 TiB",
        ),
        (["--grace-period", "nan"], "must be a finite number of seconds, got 'nan'"),
        (["--grace-period", "inf"], "must be a finite number of seconds, got 'inf'"),
        (["--grace-period", "1e309"], "must be a finite number of seconds, got '1e309'"),
        (["--grace-period", "1e300"], "must be at most 86400 seconds, got 1e+300"),
        (["--grace-period", "-1"], "must not be negative, got -1"),
        (["--grace-period", "soon"], "'soon' is not a number of seconds"),
    ],
)
def test_bad_runtasks_numbers_are_usage_errors(args, message):
    with pytest.raises(CommandError) as excinfo:
        call_command("runtasks", *args)
    assert str(excinfo.value).startswith("Error: argument --")
    assert message in str(excinfo.value)


def test_a_huge_concurrency_on_the_command_line_is_a_usage_error_not_a_traceback():
    finished = subprocess.run(
        manage("runtasks", "--burst", "--concurrency", "99999999999999999999999"),
        env=worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "usage: " in finished.stderr and "must be at most 256" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.django_db
def test_a_comma_separated_queue_list_is_explained():
    with pytest.raises(CommandError) as excinfo:
        call_command("runtasks", "--queue", "default,emails")
    assert str(excinfo.value) == (
        "Unknown queue 'default,emails': TASKS['default']['QUEUES'] has 'default', 'emails', "
        "'low'. To serve several queues, repeat --queue: --queue default --queue emails"
    )


@pytest.mark.django_db
def test_several_unknown_queues_are_named_with_the_valid_ones():
    with pytest.raises(CommandError, match="Unknown queues 'x', 'y': TASKS"):
        call_command("runtasks", "--queue", "x", "--queue", "y")


numeric_text = st.one_of(
    st.text(max_size=12),
    st.integers().map(str),
    st.integers(20, 5000).map(lambda digits: "9" * digits),
    st.floats().map(repr),
    st.floats().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e309", " 3 ", "1_000", "٣", "²", "0x10", "-0"]),
)
RUNTASKS_NUMBERS = {
    "--concurrency": ("concurrency", 1, runtasks.MAX_CONCURRENCY),
    "--max-tasks-per-child": ("max_tasks_per_child", 1, runtasks.MAX_TASKS_PER_CHILD),
    "--max-memory-per-child": ("max_memory_per_child", 1, runtasks.MAX_MEMORY_PER_CHILD),
    "--grace-period": ("grace_period", 0, MAXIMUMS["GRACE_PERIOD"][0]),
}


@given(st.sampled_from(sorted(RUNTASKS_NUMBERS)), numeric_text)
@example("--concurrency", "99999999999999999999999")
@example("--grace-period", "nan")
@settings(max_examples=400, deadline=None, database=None)
def test_any_runtasks_number_is_a_value_in_bounds_or_a_usage_error(option, text):
    dest, lowest, highest = RUNTASKS_NUMBERS[option]
    try:
        parsed = parse(runtasks, f"{option}={text}")
    except CommandError as error:
        assert str(error).startswith(f"Error: argument {option}")
        assert len(str(error)) < 400
    else:
        value = getattr(parsed, dest)
        assert math.isfinite(value) and lowest <= value <= highest


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_with_every_option_at_its_limit(tmp_path: Path):
    """The bounds are below what breaks: a worker at all of them claims, runs, writes."""
    limits = {**AT_THE_LIMITS, "PREFETCH_SECONDS": 0.05}  # 60 s would hold the outcomes
    (tmp_path / "limits_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"TASKS['default']['OPTIONS'].update({limits!r})  # noqa: F405\n"
    )
    results = [tasks.add.enqueue(n, 1) for n in range(5)]
    finished = run_worker(
        "--concurrency",
        "2",
        "--grace-period",
        "86400",
        "--max-tasks-per-child",
        str(runtasks.MAX_TASKS_PER_CHILD),
        "--max-memory-per-child",
        str(runtasks.MAX_MEMORY_PER_CHILD),
        DJANGO_SETTINGS_MODULE="limits_settings",
        PYTHONPATH=f"{tmp_path}:{ROOT}",
    )
    assert finished.returncode == 0, finished.stderr
    jobs = Job.objects.filter(pk__in=[result.id for result in results])
    assert sorted(jobs.values_list("return_value", flat=True)) == [1, 2, 3, 4, 5]
    # The longest retention and lease are dates the database can compute.
    assert queries.delete_dead_workers(connection, MAXIMUMS["WORKER_RETENTION"][0]) == 0
    assert queries.heartbeat(connection, "nobody", [str(uuid.uuid4())], 86400.0) == 0


@pytest.mark.django_db
def test_a_batch_of_max_batch_completions_is_one_valid_statement():
    limit = MAXIMUMS["MAX_BATCH"][0]
    completions = [(n, str(uuid.uuid4()), "null") for n in range(1, int(limit) + 1)]
    assert queries.complete_many(connection, completions) == set()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_largest_concurrency_runs_within_1024_open_files():
    """The bound's reason, checked: 256 pool processes fit the common default limit."""
    results = tasks.noop.enqueue_many([((), {})] * 20)
    connection.close()

    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    finished = subprocess.run(
        manage("runtasks", "--burst", "--concurrency", str(runtasks.MAX_CONCURRENCY)),
        env=worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_open_files,
    )
    assert finished.returncode == 0, finished.stderr
    statuses = Job.objects.filter(pk__in=[r.id for r in results]).values_list("status", flat=True)
    assert set(statuses) == {JobStatus.SUCCESSFUL}


# prunetasks


def finished_job(status: str, days_ago: float) -> Job:
    when = timezone.now() - dt.timedelta(days=days_ago)
    return Job.objects.create(task_path="app.tasks.t", status=status, finished_at=when)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--older-than", "99999999999d"],
            "argument --older-than: '99999999999d' is too long: the longest duration is "
            "36500d (100 years)",
        ),
        (["--older-than", "9" * 400], "is too long: the longest duration is 36500d"),
        (["--older-than", "7d", "--batch-size", "99999999999999999999999"], "at most 100000"),
        (["--older-than", "7d", "--batch-size", "²"], "'²' is not a whole number"),
        (["--older-than", "7d", "--batch-size", "0"], "must be at least 1, got 0"),
        (["--older-than", "7d", "--status", "x" * 1000], "... is not a finished status"),
    ],
)
def test_bad_prunetasks_values_are_usage_errors(args, message):
    with pytest.raises(CommandError) as excinfo:
        call_command("prunetasks", *args)
    assert str(excinfo.value).startswith("Error: argument --")
    assert message in str(excinfo.value)
    assert len(str(excinfo.value)) < 400


@pytest.mark.django_db
def test_the_longest_age_is_a_date_the_database_computes():
    ancient = finished_job("SUCCESSFUL", 36501)
    recent = finished_job("SUCCESSFUL", 36499)
    call_command("prunetasks", "--older-than", "36500d")
    assert list(Job.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Job.objects.filter(pk=ancient.pk).exists()


@pytest.mark.django_db
def test_dry_run_counts_per_status_and_deletes_nothing(capsys):
    for status, days in [("SUCCESSFUL", 10), ("SUCCESSFUL", 9), ("FAILED", 8), ("FAILED", 1)]:
        finished_job(status, days)
    Job.objects.create(task_path="app.tasks.t", status="READY")
    before = Job.objects.count()

    call_command("prunetasks", "--older-than", "7d", "--dry-run")

    assert capsys.readouterr().out.strip() == (
        "Would delete 3 finished job(s) (SUCCESSFUL: 2, FAILED: 1, CANCELLED: 0); "
        "--dry-run deleted nothing."
    )
    assert Job.objects.count() == before
    call_command("prunetasks", "--older-than", "7d", "--status", "failed", "--dry-run")
    assert "Would delete 1 finished job(s) (FAILED: 1)" in capsys.readouterr().out
    call_command("prunetasks", "--older-than", "7d")
    assert "Deleted 3 finished job(s)" in capsys.readouterr().out  # what the dry run said


durations = st.one_of(
    numeric_text,
    st.builds(
        lambda value, unit: f"{value}{unit}",
        st.integers(0, 10**20) | st.floats(0, 1e20).map(lambda x: f"{x:f}"),
        st.sampled_from(["", "s", "m", "h", "d", "w", "D", " d", "y", "ms"]),
    ),
)


@pytest.mark.django_db
@given(durations, numeric_text | st.just("1000"), st.booleans())
@example("99999999999d", "1000", False)
@example("36500d", "1", False)
@example("5256000m", "99999999999999999999999", True)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_prunetasks_values_are_a_valid_run_or_a_usage_error(older_than, batch, dry_run):
    kept = finished_job("SUCCESSFUL", 0)  # finished now: no age is younger than 0
    args = [f"--older-than={older_than}", f"--batch-size={batch}"] + ["--dry-run"] * dry_run
    try:
        parsed = parse(prunetasks, *args)
    except CommandError as error:
        assert str(error).startswith("Error: argument --")
        with pytest.raises(CommandError):
            call_command("prunetasks", *args)
        return
    assert 0 <= parsed.older_than <= MAX_DURATION
    assert 1 <= parsed.batch_size <= prunetasks.MAX_BATCH_SIZE
    call_command("prunetasks", *args)  # the database takes every accepted value
    if parsed.older_than > 1:
        assert Job.objects.filter(pk=kept.pk).exists()
    Job.objects.all().delete()


def test_bounds_are_the_documented_ones():
    """docs/configuration.md and the README state these numbers: keep them in step."""
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for name, (_, most, _) in MAXIMUMS.items():
        assert f"at most {most}" in docs, name
    readme = (ROOT / "README.md").read_text()
    assert f"1 to {runtasks.MAX_CONCURRENCY}" in readme
