"""Tasks the test suite enqueues; each records its runs in ``Execution``."""

import asyncio
import json
import os
import signal
import time

from asgiref.sync import sync_to_async
from django.db import transaction
from django.dispatch import receiver

from django_dbtasks import Backoff, periodic, report_progress, task
from django_dbtasks.compat import standard_task, task_finished, task_started
from django_dbtasks.models import Job

from .models import Execution


def record(label, job_id=""):
    Execution.objects.create(label=label, job_id=str(job_id), pid=os.getpid())


@task()
def add(a, b):
    return a + b


@standard_task()
def standard_multiply(a, b):
    """Defined with Django's own decorator: must work unchanged on our backend."""
    return a * b


@task()
def noop():
    return None


@task()
def boom(message="boom"):
    raise ValueError(message)


@task(takes_context=True)
def record_run(context, label):
    record(label, context.task_result.id)
    return label


@task(takes_context=True, queue_name="emails")
def record_email(context, label):
    record(label, context.task_result.id)
    return label


@task(takes_context=True)
def sleep_then_record(context, seconds, label):
    time.sleep(seconds)
    record(label, context.task_result.id)
    return label


@task(takes_context=True)
def record_then_sleep(context, seconds, label):
    """Record that the body started, then sleep: a test can signal a job truly running."""
    record(f"{label}-started", context.task_result.id)
    time.sleep(seconds)
    record(label, context.task_result.id)
    return label


@task(max_attempts=3, retry_delay=Backoff(base=0.3, factor=2, jitter=0.2), takes_context=True)
def flaky(context, label, failures):
    """Fail the first ``failures`` attempts, then succeed."""
    record(label, context.task_result.id)
    if context.attempt <= failures:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return context.attempt


@task(takes_context=True)
async def async_double(context, value):
    await asyncio.sleep(0)
    await sync_to_async(record)("async", context.task_result.id)
    return value * 2


@task(timeout=1, max_attempts=2, retry_delay=0)
def sleeps_forever():
    time.sleep(60)


@task(timeout=1)
def spins_forever():
    while True:
        pass


@task()
def exits_hard():
    os._exit(1)


@task()
def returns_a_set():
    return {1, 2}


@task(max_attempts=3, retry_delay=0.1, takes_context=True)
def always_fails(context, label):
    record(label, context.task_result.id)
    raise RuntimeError(f"failure number {context.attempt}")


@task(takes_context=True)
def sleep_and_report(context, seconds):
    """Sleep, then record the run; return this process's pid to tell runs apart."""
    time.sleep(seconds)
    record("report", context.task_result.id)
    return os.getpid()


@task(takes_context=True)
def slow_first_run(context, seconds):
    """Sleep only on the first run of the job: a rescued re-run finishes at once.

    The first run records ``slow-first-started`` before it sleeps, so a test can
    tell a body that runs from a job that is claimed but not started yet.
    """
    if len(context.task_result.worker_ids) == 1:
        record("slow-first-started", context.task_result.id)
        time.sleep(seconds)
    record("slow-first", context.task_result.id)
    return context.task_result.worker_ids[-1]


@task()
def kills_its_worker():
    """A poison job: takes its whole worker down, like an out-of-memory kill would."""
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)


@task(unique="user_id", takes_context=True)
def unique_per_user(context, user_id, note=""):
    record(f"unique-{user_id}", context.task_result.id)


@task(max_attempts=20, retry_delay=0.2, takes_context=True)
def resilient_record(context, label):
    """Records its run; its own database writes may fail during an outage, so it retries."""
    record(label, context.task_result.id)


@receiver(task_started)
def record_started(sender, task_result, **kwargs):
    """Prove task_started reaches receivers in the worker (only for this marker job)."""
    if task_result.args == ["signals"]:
        record(f"started:{task_result.status}", task_result.id)


@receiver(task_finished)
def record_finished(sender, task_result, **kwargs):
    if task_result.args == ["signals"]:
        record(f"finished:{task_result.status}:{task_result.return_value}", task_result.id)


# The retry waits half a second: its row stays READY while task_finished is sent.
@task(takes_context=True, max_attempts=2, retry_delay=0.5)
def announced(context, marker, seconds=0.0, fail=False):
    """A job of tests/test_announcing.py: records where it ran; may sleep, or fail."""
    record(f"ran:{marker}", context.task_result.id)
    time.sleep(seconds)
    if fail:
        raise ValueError(f"{marker} failed")
    return marker


@task(takes_context=True, timeout=1)
def announced_overrun(context, marker):
    """Overruns its timeout: the worker kills the pool process that runs it."""
    record(f"ran:{marker}", context.task_result.id)
    time.sleep(60)


@receiver(task_finished)
def record_announced(sender, task_result, **kwargs):
    """Where task_finished arrives, and the row's status then (the outcome is written first)."""
    if task_result.task.module_path.startswith("tests.testapp.tasks.announced"):
        written = Job.objects.filter(pk=task_result.id).values_list("status", flat=True).get()
        record(f"announced:{task_result.status}:{written}", task_result.id)


@receiver(task_finished)
def exit_for_one_job(sender, task_result, **kwargs):
    """A receiver that calls sys.exit() for one marked job (tests/test_announcing.py)."""
    if task_result.args == ["receiver-exits"]:
        raise SystemExit(3)


periodic(noop, "0 3 * * *", name="nightly-noop", timezone="Europe/Berlin")


def _wait_for(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


@task(takes_context=True)
def reports_progress(context, gate_dir, in_transaction):
    """Report progress, then hold at gate files so a test can watch it running."""
    report_progress(40, "first half")
    _wait_for(os.path.join(gate_dir, "one"))
    if not in_transaction:
        return "done"
    with transaction.atomic():
        record("progress", context.task_result.id)
        report_progress(70, "inside a transaction")
        _wait_for(os.path.join(gate_dir, "two"))
    return "done"


@task(sensitive="api_key")
def calls_an_api(user_id, api_key, retries=1):
    raise RuntimeError(f"the API refused user {user_id}")


@task(sensitive=True)
def all_secret(token):
    return None


# Hostile jobs: each must end only itself (see test_containment.py and test_chaos.py).


@task()
def returns_nul():
    """PostgreSQL's jsonb cannot store U+0000."""
    return "a\u0000b"


@task()
def raises_nul():
    raise ValueError("bad\u0000value")


@task()
def returns_surrogate():
    """Not UTF-8: a lone surrogate."""
    return "x\ud800y"


@task()
def returns_too_much():
    """Over the MAX_RESULT_BYTES option (1 MiB by default)."""
    return "x" * (2 * 1024 * 1024)


@task()
def returns_refused(value):
    """Returns a value the test makes the database refuse (a trigger on the job table)."""
    return value


@task()
def forks():
    """The forked copy returns from the task too, in the pool process's loop."""
    child = os.fork()
    return child


@task()
def raises_system_exit():
    raise SystemExit(3)


@task()
def raises_keyboard_interrupt():
    raise KeyboardInterrupt


class Stop(BaseException):
    """Task code's own BaseException."""


@task()
def raises_base_exception():
    raise Stop("stop here")


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("this exception refuses to be pickled")


@task()
def raises_unpicklable():
    raise Unpicklable("cannot cross a pipe")


@task()
def takes_anything(*args, **kwargs):
    return len(args) + len(kwargs)


@task()
def kills_its_group():
    """Like a supervisor's SIGKILL of the whole group, from the inside."""
    os.killpg(os.getpgid(0), signal.SIGKILL)
    time.sleep(5)


@task()
def crashes_after(seconds):
    time.sleep(seconds)
    os._exit(1)


@task()
def pid_of_pool_process():
    return os.getpid()


@task(takes_context=True)
def sleep_then_return(context, seconds, value):
    """Record that the body started (a test may signal the worker then), sleep, return."""
    record("started", context.task_result.id)
    time.sleep(seconds)
    return value


@task()
def returns_tuple_key():
    return [0, {(1, 2): 3}]


@task(max_attempts=3, retry_delay=0)
def fails_at_once_each_time():
    raise RuntimeError("never works")


# For the test helper (tests/test_testing_helpers.py): tasks whose effects are in-process.


@task(queue_name="emails")
def send_welcome_email(address):
    from django.core import mail

    mail.send_mail("Welcome", "Hello!", "site@example.com", [address])
    return address


@task()
def enqueue_welcome(address):
    """A job that enqueues another job."""
    return send_welcome_email.enqueue(address).id


@task()
def enqueues_itself(depth):
    """A runaway: each run enqueues the next, for ever."""
    enqueues_itself.enqueue(depth + 1)
    return depth


@task()
def interrupts_its_process():
    """As Ctrl-C in a terminal would, while the job runs."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)


# For the admin's triage pages (tests/test_admin_jobs.py, tests/test_admin_browser.py): a
# failure raised inside the standard library, called from the project's own code.


def _order_lines(payload):
    return json.loads(payload)["lines"]


@task(max_attempts=2, retry_delay=0)
def import_orders(payload):
    """Parse a partner's order export: bad JSON fails inside ``json``, twice."""
    return len(_order_lines(payload))
