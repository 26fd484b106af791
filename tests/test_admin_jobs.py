"""The job admin: the list, a job's page, the retry and cancel actions, and who may use them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_dbtasks.admin import attempts
from django_dbtasks.conf import shown
from django_dbtasks.models import Job, JobStatus, Schedule
from django_dbtasks.sensitive import REDACTED

from .conftest import IS_POSTGRES, ROOT, run_worker
from .shared_admin import (
    ADD,
    BOOM,
    JOBS,
    OVERVIEW,
    SCHEDULES,
    SECRET,
    UNIQUE,
    WORKERS,
    error,
    job,
    staff,
    text,
)
from .testapp import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    return staff("root", superuser=True)


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", "view_job", "view_schedule", "view_worker")


# The job list


def test_job_list_shows_status_progress_and_redacted_arguments(admin_client_):
    job(JobStatus.FAILED, BOOM, errors=[error("first")])
    job(JobStatus.RUNNING, progress=40, progress_message="exported 400 of 1,000", claimed_by="w-1")
    job(JobStatus.READY, SECRET, args=[7, "sk-live-123"])
    page = text(admin_client_.get(JOBS))
    assert 'class="dbtasks-status dbtasks-status-failed"' in page
    assert '<progress class="dbtasks-progress" max="100" value="40">' in page
    assert "exported 400 of 1,000" in page
    assert "sk-live-123" not in page and REDACTED in page
    assert "Queue overview" in page
    assert "_facets" not in page  # no "Show counts": it would count the whole table


def test_job_list_never_counts_the_whole_table_and_has_a_fixed_query_budget(admin_client_):
    for _ in range(30):
        job(JobStatus.SUCCESSFUL, return_value=1)
    with CaptureQueriesContext(connection) as small:
        assert admin_client_.get(JOBS).status_code == 200
    for _ in range(30):
        job(JobStatus.FAILED, BOOM, errors=[error("x")])
    with CaptureQueriesContext(connection) as large:
        assert admin_client_.get(JOBS + "?status__exact=FAILED").status_code == 200
    assert len(large) == len(small) <= 8
    counts = [q["sql"] for q in large.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 10001" in sql for sql in counts), counts
    assert not any("DISTINCT" in q["sql"].upper() for q in large.captured_queries)
    # Tracebacks are not loaded for the list: of the errors, only the latest one's
    # class and message, and the count reads ids only.
    select = next(q["sql"] for q in large.captured_queries if '."task_path"' in q["sql"])
    latest = r"""("errors" -> -1 ->> |json_extract\("django_dbtasks_job"."errors", '\$\[#-1\]\.)"""
    read = re.findall(latest + r"'?(\w+)", select)
    assert sorted(field for _, field in read) == ["exception_class_path", "message"], select
    assert '"errors"' not in re.sub(latest, "", select) and "traceback" not in select
    assert all("errors" not in sql for sql in counts), counts


def test_capped_count_says_more_than(admin_client_, monkeypatch):
    from django_dbtasks.admin.jobs import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 5)
    for _ in range(8):
        job()
    page = text(admin_client_.get(JOBS))
    assert "More than 5 jobs match" in page
    assert "5+ jobs" in page and "5+ results" in page


def test_filters_by_status_queue_and_task(admin_client_):
    failed = job(JobStatus.FAILED, BOOM)
    email = job(queue_name="emails")
    ok = job(JobStatus.SUCCESSFUL)

    def ids(query: str) -> set[int]:
        return {
            int(i)
            for i in re.findall(
                r'name="_selected_action" value="(\d+)"', text(admin_client_.get(JOBS + query))
            )
        }

    assert ids("?status__exact=FAILED") == {failed.pk}
    assert ids("?queue=emails") == {email.pk}
    assert ids(f"?task={BOOM}") == {failed.pk}
    assert ids("") == {failed.pk, email.pk, ok.pk}


def row_of(page: str, job_id: int) -> str:
    """The HTML of one job's row in a list page."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?/{job_id}/change/.*?</tr>", page, re.S)
    assert match, job_id
    return match.group(0)


def decode_error(message: str, path: str = "json.decoder.JSONDecodeError") -> dict:
    return {
        "exception_class_path": path,
        "traceback": f"Traceback (most recent call last):\n{path}: {message}\n",
        "message": f"{path}: {message}",
    }


def test_the_error_column_shows_the_latest_errors_class_and_first_line(admin_client_):
    retried = job(
        JobStatus.FAILED,
        BOOM,
        errors=[error("first try"), decode_error("Expecting value: line 1 column 1\nsecond line")],
    )
    recovered = job(JobStatus.SUCCESSFUL, errors=[error("flaky <b>once</b>")])
    clean = job(JobStatus.SUCCESSFUL)
    odd = job(JobStatus.FAILED, errors=[error("x"), "not an entry"])
    page = text(admin_client_.get(JOBS))
    cell = row_of(page, retried.pk)
    assert "<strong>JSONDecodeError</strong> Expecting value: line 1 column 1</span>" in cell
    assert 'title="json.decoder.JSONDecodeError: Expecting value: line 1 column 1"' in cell
    assert "first try" not in cell and "second line" not in cell
    earlier = row_of(page, recovered.pk)
    assert 'class="dbtasks-error-cell dbtasks-earlier"' in earlier
    assert "<strong>ValueError</strong> flaky &lt;b&gt;once&lt;/b&gt;" in earlier
    assert "An earlier attempt failed" in earlier
    assert 'field-error_column">–</td>' in row_of(page, clean.pk)
    assert 'field-error_column">–</td>' in row_of(page, odd.pk)  # the latest is no entry


def test_the_error_filter_lists_the_latest_classes_and_selects_by_them(admin_client_):
    decoding = job(JobStatus.FAILED, BOOM, errors=[error("a"), decode_error("b")])
    value = job(JobStatus.FAILED, BOOM, errors=[decode_error("a"), error("b")])
    retrying = job(JobStatus.READY, BOOM, errors=[error("c")])
    recovered = job(JobStatus.SUCCESSFUL, errors=[error("d")])
    job(JobStatus.SUCCESSFUL)
    job(JobStatus.FAILED, errors={"message": "malformed"})

    def ids(query: dict) -> set[int]:
        page = text(admin_client_.get(JOBS, query))
        return {int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', page)}

    sidebar = text(admin_client_.get(JOBS))
    sidebar = sidebar[sidebar.index('id="changelist-filter"') :]
    assert "By latest error" in sidebar
    assert sidebar.index("ValueError (builtins)") < sidebar.index("JSONDecodeError (json.decoder)")
    assert "?error=json.decoder.JSONDecodeError" in sidebar
    assert ids({"error": "builtins.ValueError"}) == {value.pk, retrying.pk, recovered.pk}
    assert ids({"error": "json.decoder.JSONDecodeError"}) == {decoding.pk}
    assert ids({"error": "builtins.ValueError", "status__exact": "FAILED"}) == {value.pk}
    assert ids({"error": "builtins.KeyError"}) == set()  # a class no job has: none
    selected = text(admin_client_.get(JOBS, {"error": "builtins.KeyError"}))
    assert re.search(r'<li class="selected">\s*<a href="\?error=builtins.KeyError">', selected)


@pytest.mark.parametrize(
    "value", ["ValueError", "not a class", "builtins.", "a" * 300, ".x", "x..y", "é.<b>"]
)
def test_an_error_filter_value_that_is_no_class_path_is_ignored_and_explained(admin_client_, value):
    failed = job(JobStatus.FAILED, BOOM, errors=[error("a")])
    other = job()
    response = admin_client_.get(JOBS, {"error": value, "status__exact": "FAILED"})
    assert response.status_code == 200
    page = text(response)
    assert [str(m) for m in response.context["messages"]] == [
        f"The error filter was ignored: {shown(value)} is not an exception class path. "
        "Pick a class in the filter, or give its dotted path, for example "
        "?error=builtins.ValueError."
    ]
    # The other filters still apply.
    rows = {int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', page)}
    assert rows == {failed.pk} and other.pk not in rows


def test_search_by_id_path_and_arguments_but_not_secrets(admin_client_):
    plain = job(args=["invoice-2024-17"])
    secret = job(task_path=SECRET, args=[7, "sk-live-123"])
    other = job(JobStatus.FAILED, BOOM)

    def ids(term: str) -> set[int]:
        page = text(admin_client_.get(JOBS, {"q": term}))
        return {int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', page)}

    assert ids(str(other.pk)) == {other.pk}
    assert ids("invoice-2024") == {plain.pk}
    assert ids("boom") == {other.pk}
    assert ids("calls_an_api") == {secret.pk}
    assert ids("sk-live") == set()  # a secret cannot be found (or guessed) by searching


# The job page


def test_job_page_shows_pretty_arguments_every_traceback_and_its_schedule(admin_client_):
    schedule = Schedule.objects.create(name="nightly", task_path=BOOM, cron="0 3 * * *")
    failed = job(
        JobStatus.FAILED,
        BOOM,
        args=[{"user": 7, "items": [1, 2]}],
        kwargs={"note": "héllo"},
        attempts=2,
        max_attempts=2,
        errors=[error("first try"), error("second try", line="File 'x.py', line 9")],
        schedule=schedule,
        worker_ids=["w-1", "w-2"],
    )
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert "Attempt 1.</strong> ValueError: first try" in page
    assert "Attempt 2.</strong> ValueError: second try" in page
    assert "ValueError: second try\n</pre>" in page  # the traceback itself
    assert '"items": [\n      1,\n      2\n    ]' in page.replace("&quot;", '"')
    assert "héllo" in page
    assert reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk]) in page
    assert 'name="retry"' in page and 'name="_save"' not in page


LIBRARY_AND_OWN_FRAMES = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/.venv/lib/python3.12/site-packages/django_dbtasks/execution.py", '
    "line 98, in run\n"
    "    value = task.call(*args, **kwargs)\n"
    '  File "/srv/app/shop/tasks.py", line 41, in import_orders\n'
    "    return len(_order_lines(payload))\n"
    "               ^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/srv/app/shop/tasks.py", line 36, in _order_lines\n'
    '    return json.loads(payload)["lines"]\n'
    '  File "/usr/lib/python3.12/json/__init__.py", line 346, in loads\n'
    "    return _default_decoder.decode(s)\n"
    '  File "/usr/lib/python3.12/json/decoder.py", line 355, in raw_decode\n'
    '    raise JSONDecodeError("Expecting value", s, err.value) from None\n'
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
)


def test_a_failed_jobs_page_starts_with_its_latest_error_then_the_older_attempts(admin_client_):
    first = {**error("connection reset"), "worker_id": "web-1-41-aaaaaa",
             "started_at": "2026-05-04T10:00:01.250000+00:00",
             "finished_at": "2026-05-04T10:00:02.500000+00:00"}  # fmt: skip
    legacy = error("an entry from before per-attempt times")
    latest = {
        "exception_class_path": "json.decoder.JSONDecodeError",
        "message": "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
        "while reading the partner's export",
        "traceback": LIBRARY_AND_OWN_FRAMES,
        "worker_id": "web-2-42-bbbbbb",
        "started_at": "2026-05-04 10:05:00.000",  # SQLite's spelling, UTC
        "finished_at": "2026-05-04 10:05:12.300",
    }
    failed = job(JobStatus.FAILED, BOOM, attempts=3, max_attempts=3,
                 errors=[first, legacy, latest], worker_ids=["web-1-41-aaaaaa"])  # fmt: skip
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    top = page.index('id="dbtasks-latest-error"')
    assert top < page.index("<fieldset")  # before the job's fields
    panel = page[top : page.index('class="dbtasks-older-title"')]
    assert "<h2>Latest error</h2>" in page[page.index('id="dbtasks-attempts"') : top]
    assert "Attempt 3.</strong> json.decoder.JSONDecodeError: Expecting value" in panel
    # The message in full, both its lines.
    assert (
        '<pre class="dbtasks-message">Expecting value: line 1 column 1 (char 0)\n'
        "while reading the partner&#x27;s export</pre>"
    ) in panel
    # The project's frames, listed, then highlighted in the full traceback, collapsed.
    listed = re.findall(r'<code class="dbtasks-frame-where">([^<]*)</code>', panel)
    assert listed == [
        "/srv/app/shop/tasks.py, line 41, in import_orders",
        "/srv/app/shop/tasks.py, line 36, in _order_lines",
    ]
    assert "<pre>return json.loads(payload)[&quot;lines&quot;]</pre>" in panel
    assert '<details class="dbtasks-full-traceback">' in panel  # no "open": collapsed
    marked = re.findall(r'<mark class="dbtasks-own-frame">(.*?)</mark>', panel, re.S)
    assert [m.splitlines()[0].strip() for m in marked] == [
        "File &quot;/srv/app/shop/tasks.py&quot;, line 41, in import_orders",
        "File &quot;/srv/app/shop/tasks.py&quot;, line 36, in _order_lines",
    ]
    assert "site-packages" not in "".join(marked) and "json/decoder" not in "".join(marked)
    assert "5 frames; your code highlighted" in panel
    assert "(char 0)\n</pre>" in panel  # the traceback whole, to its last line
    # Its facts: times with seconds (full precision on hover), worker, outcome.
    started = '<span class="dbtasks-day">May 04</span> 10:05:00'
    assert f'title="2026-05-04T10:05:00.000000+00:00 UTC">{started}' in panel
    assert 'data-fact="duration">12.3 s<' in panel
    assert 'href="/admin/django_dbtasks/worker/web-2-42-bbbbbb/change/"' in panel
    assert 'data-fact="outcome">failed for good (attempt 3 of 3)<' in panel
    # Then the older attempts, latest first; an entry from before the times were kept says so.
    older = page[page.index('class="dbtasks-older-title"') : page.index("<fieldset")]
    assert older.index("Attempt 2.</strong>") < older.index("Attempt 1.</strong>")
    second = older[older.index("Attempt 2.") : older.index("Attempt 1.")]
    assert second.count("not recorded") == 3  # start, end, worker
    oldest = older[older.index("Attempt 1.") :]
    assert "10:00:01" in oldest and "10:00:02" in oldest and ">1.2 s<" in oldest
    assert 'href="/admin/django_dbtasks/worker/web-1-41-aaaaaa/change/"' in oldest
    assert "failed; run again" in second and "failed; run again" in oldest
    assert older.count('<details class="dbtasks-full-traceback">') == 2  # each collapsed
    assert older.count("Traceback (1 frame; your code highlighted)") == 2


def test_the_attempts_of_other_jobs_say_what_came_after(admin_client_):
    def page_of(row: Job) -> str:
        return text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[row.pk])))

    retrying = job(JobStatus.READY, BOOM, errors=[error("once")])
    recovered = job(JobStatus.SUCCESSFUL, BOOM, errors=[error("once")])
    ready = job()
    _action(admin_client_, "cancel_jobs", [ready])
    assert 'data-fact="outcome">failed; a retry is due<' in page_of(retrying)
    page = page_of(recovered)
    assert "<h2>Latest error (a later attempt succeeded)</h2>" in page
    assert 'data-fact="outcome">failed; a later attempt succeeded<' in page
    cancelled = page_of(Job.objects.get(pk=ready.pk))
    assert "<h2>Cancelled</h2>" in cancelled and "cancelled before it ran" in cancelled
    assert 'data-fact="started">did not run<' in cancelled
    ended = re.search(r'data-fact="ended"><time datetime="([^"]+)"', cancelled)
    assert ended and ended.group(1).startswith(str(timezone.now().year))  # stored at cancel
    assert 'id="dbtasks-attempts"' not in page_of(job(JobStatus.SUCCESSFUL))


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_each_attempts_times_and_worker(admin_client_):
    """Two attempts of a task failing inside ``json``, run by a real worker."""
    tasks.import_orders.enqueue("{not json")
    assert run_worker().returncode == 0
    failed = Job.objects.get(task_path=tasks.import_orders.module_path)
    assert failed.status == JobStatus.FAILED and len(failed.errors) == 2
    workers = {entry["worker_id"] for entry in failed.errors}
    assert workers == set(failed.worker_ids) and len(workers) == 1
    first, second = (attempts.attempt(n, e) for n, e in enumerate(failed.errors, 1))
    assert first.started_at < first.finished_at <= second.started_at < second.finished_at
    assert second.started_at == failed.last_attempted_at
    assert second.finished_at == failed.finished_at
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    listed = re.findall(r'<code class="dbtasks-frame-where">([^<]*)</code>', page)
    assert [where.rsplit(", in ", 1)[1] for where in listed] == ["import_orders", "_order_lines"]
    assert all(where.startswith(str(ROOT / "tests" / "testapp")) for where in listed), listed
    marked = re.findall(r'<mark class="dbtasks-own-frame">(.*?)</mark>', page, re.S)
    assert len(marked) == 4  # the two frames, in each attempt's traceback
    assert "json/decoder.py" in page and "django_dbtasks/execution.py" in page  # not marked
    assert "json.decoder.JSONDecodeError: Expecting property name enclosed" in page


def test_job_page_redacts_sensitive_arguments(admin_client_):
    secret = job(JobStatus.FAILED, SECRET, args=[7], kwargs={"api_key": "sk-live-123"})
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[secret.pk])))
    assert "sk-live-123" not in page
    assert REDACTED in page and "7" in page


# Actions


def _action(client: Client, action: str, jobs: list[Job]):
    return client.post(
        JOBS,
        {"action": action, "_selected_action": [j.pk for j in jobs], "index": 0},
        follow=True,
    )


def test_retry_makes_failed_and_cancelled_jobs_ready_and_says_what_it_skipped(admin_client_):
    failed = job(JobStatus.FAILED, BOOM, attempts=3, max_attempts=3, errors=[error("a")])
    cancelled = job(JobStatus.CANCELLED)
    running = job(JobStatus.RUNNING, claimed_by="w-1")
    ok = job(JobStatus.SUCCESSFUL)
    response = _action(admin_client_, "retry_jobs", [failed, cancelled, running, ok])
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Retried 2 jobs. Skipped 2: 1 running, 1 successful "
        "(only failed or cancelled jobs can be retried)."
    )
    failed.refresh_from_db()
    assert failed.status == JobStatus.READY
    assert (failed.attempts, failed.finished_at, failed.started_at) == (0, None, None)
    assert failed.errors == [error("a")]  # the history stays
    assert Job.objects.get(pk=cancelled.pk).status == JobStatus.READY
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING
    assert Job.objects.get(pk=ok.pk).status == JobStatus.SUCCESSFUL


def test_retry_of_everything_selected_across_pages(admin_client_):
    failed = [job(JobStatus.FAILED, BOOM) for _ in range(3)]
    job(JobStatus.SUCCESSFUL)
    job(JobStatus.SUCCESSFUL)
    response = admin_client_.post(
        JOBS,
        {"action": "retry_jobs", "_selected_action": [failed[0].pk], "select_across": 1},
        follow=True,
    )
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Retried 3 jobs. Skipped 2: 2 successful (only failed or cancelled jobs can be retried)."
    )
    assert not Job.objects.filter(status=JobStatus.FAILED).exists()


def test_retry_skips_a_unique_job_whose_key_is_taken(admin_client_):
    first = job(JobStatus.FAILED, UNIQUE, unique_key="k7")
    second = job(JobStatus.FAILED, UNIQUE, unique_key="k7")
    response = _action(admin_client_, "retry_jobs", [first, second])
    message = str(next(iter(response.context["messages"])))
    assert message.startswith("Retried 1 job. Skipped 1: 1 unique job whose key already has")
    statuses = sorted(Job.objects.filter(unique_key="k7").values_list("status", flat=True))
    assert statuses == [JobStatus.FAILED, JobStatus.READY]


def test_cancel_cancels_ready_jobs_only(admin_client_):
    ready = job()
    running = job(JobStatus.RUNNING, claimed_by="w-1")
    response = _action(admin_client_, "cancel_jobs", [ready, running])
    message = str(next(iter(response.context["messages"])))
    assert message == (
        "Cancelled 1 job. Skipped 1: 1 running "
        "(only ready jobs can be cancelled; a running job is not interrupted)."
    )
    ready.refresh_from_db()
    assert ready.status == JobStatus.CANCELLED and ready.finished_at is not None
    assert ready.errors[-1]["exception_class_path"].endswith("JobCancelled")
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING


def test_retry_and_cancel_buttons_on_the_job_page(admin_client_):
    failed = job(JobStatus.FAILED, BOOM)
    retry_url = reverse("admin:django_dbtasks_job_retry", args=[failed.pk])
    assert admin_client_.get(retry_url).status_code == 405
    admin_client_.post(retry_url)
    assert Job.objects.get(pk=failed.pk).status == JobStatus.READY
    page = text(admin_client_.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert 'name="cancel"' in page and 'name="retry"' not in page
    admin_client_.post(reverse("admin:django_dbtasks_job_cancel", args=[failed.pk]))
    assert Job.objects.get(pk=failed.pk).status == JobStatus.CANCELLED


# Permissions (on every page; the job admin owns the overview's)


def test_view_only_staff_sees_everything_but_cannot_retry_or_cancel(viewer):
    failed = job(JobStatus.FAILED, BOOM, errors=[error("x")])
    ready = job()
    page = text(viewer.get(JOBS))
    assert "retry_jobs" not in page and "cancel_jobs" not in page
    _action(viewer, "retry_jobs", [failed])
    _action(viewer, "cancel_jobs", [ready])
    assert (
        viewer.post(reverse("admin:django_dbtasks_job_retry", args=[failed.pk])).status_code == 403
    )
    assert (
        viewer.post(reverse("admin:django_dbtasks_job_cancel", args=[ready.pk])).status_code == 403
    )
    assert Job.objects.get(pk=failed.pk).status == JobStatus.FAILED
    assert Job.objects.get(pk=ready.pk).status == JobStatus.READY
    detail = text(viewer.get(reverse("admin:django_dbtasks_job_change", args=[failed.pk])))
    assert "ValueError: x" in detail
    assert 'name="retry"' not in detail and 'name="_save"' not in detail
    assert viewer.get(OVERVIEW).status_code == 200
    schedule = Schedule.objects.create(name="s", task_path=ADD, cron="@daily", args=[1, 2])
    form = text(viewer.get(reverse("admin:django_dbtasks_schedule_change", args=[schedule.pk])))
    assert 'name="_save"' not in form and "fire_now" not in text(viewer.get(SCHEDULES))
    secret = Schedule.objects.create(
        name="api", task_path=SECRET, cron="@daily", args=[7], kwargs={"api_key": "sk-live-123"}
    )
    form = text(viewer.get(reverse("admin:django_dbtasks_schedule_change", args=[secret.pk])))
    assert "sk-live-123" not in form and REDACTED in form
    assert viewer.get(WORKERS).status_code == 200


def test_non_staff_users_are_sent_to_the_login_page():
    user = User.objects.create_user("someone", password="pw")
    client = Client()
    client.force_login(user)
    for url in (JOBS, OVERVIEW, SCHEDULES, WORKERS):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    anonymous = Client().get(OVERVIEW)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's plan (test_admin_indexes checks PostgreSQL's)")
def test_on_sqlite_the_error_filter_and_its_choices_read_the_latest_error_index():
    from django_dbtasks import queries
    from django_dbtasks.errors import LatestError

    for _ in range(20):
        job(JobStatus.FAILED, BOOM, errors=[error("x")])
        job(JobStatus.SUCCESSFUL)
    matching = Job.objects.alias(error_class=LatestError("exception_class_path"))
    page = matching.filter(error_class="builtins.ValueError").order_by("-id")[:50]
    statements = [
        (queries.LATEST_ERROR_CLASSES_SQLITE.replace("%(limit)s", "50"), []),
        page.query.sql_with_params(),
    ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        for sql, params in statements:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            steps = [row[3] for row in cursor.fetchall()]
            reads = [step for step in steps if step.startswith(("SCAN", "SEARCH"))]
            job_reads = [step for step in reads if "django_dbtasks_job" in step]
            assert job_reads, steps
            assert all("USING INDEX dbtasks_job_latest_error" in s for s in job_reads), steps
