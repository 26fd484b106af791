"""The admin's doors: what a query string, a stored row or a worker id can do to a page.

Every page answers hostile input with a clear 4xx, an ignored value or the
admin's own "invalid lookup" redirect, never a 500 and never a secret: a
query-string lookup outside the declared filters is refused (it would read a
sensitive argument back character by character), a sensitive task's unique
key is neither guessable nor shown, rows of the wrong shape render among
normal ones, and links to workers survive any worker id.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import (
    ALL_VAR,
    ERROR_FLAG,
    IGNORED_PARAMS,
    ORDER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
)
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_dbtasks import task
from django_dbtasks.admin.lookups import declared_lookups
from django_dbtasks.models import Job, JobStatus, Schedule, Worker
from django_dbtasks.sensitive import REDACTED
from django_dbtasks.unique import KEY_SALT

from .conftest import IS_POSTGRES
from .shared_admin import ADD, BOOM, JOBS, OVERVIEW, SCHEDULES, SECRET, WORKERS, error, job
from .shared_admin import text as page_text

pytestmark = pytest.mark.django_db


@task(unique="pin", sensitive="pin")
def checks_a_pin(account, pin):
    """Unique per PIN and secret about it: its key must give nothing away."""
    return None


PIN_TASK = checks_a_pin.module_path
VIEWS = ("view_job", "view_schedule", "view_worker")
CHANGES = (*VIEWS, "change_job", "add_schedule", "change_schedule")


def staff(username: str, *codenames: str) -> Client:
    """A logged-in staff user with these permissions (no password: hashing one is slow)."""
    user = User.objects.create(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", *VIEWS)


@pytest.fixture
def operator() -> Client:
    return staff("operator", *CHANGES)


def change_url(obj: Any) -> str:
    return reverse(f"admin:django_dbtasks_{obj._meta.model_name}_change", args=[quote(obj.pk)])


def row_ids(page: str) -> set[int]:
    """The jobs a list page shows, by their id column (there for every user, unlike checkboxes)."""
    return {int(i) for i in re.findall(r'<th class="field-id"><a href="[^"]*/(\d+)/change/', page)}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# 1. Lookups: only the declared filters


def test_a_lookup_outside_the_filters_is_refused_whatever_the_guess(viewer):
    job(task_path=SECRET, args=[7, "sk-live-123"])
    Schedule.objects.create(
        name="api", task_path=SECRET, cron="@daily", args=[7], kwargs={"api_key": "sk-live-123"}
    )
    probes = [
        (JOBS, "args__1__startswith"),
        (JOBS, "args__1__regex"),
        (JOBS, "args__1__contains"),
        (JOBS, "kwargs__api_key__startswith"),
        (JOBS, "unique_key__startswith"),
        (JOBS, "errors__icontains"),
        (JOBS, "status__startswith"),
        (SCHEDULES, "args__0__startswith"),
        (SCHEDULES, "kwargs__api_key__startswith"),
        (SCHEDULES, "kwargs__api_key__regex"),
        (WORKERS, "hostname__startswith"),
        (WORKERS, "id__regex"),
    ]
    for url, lookup in probes:
        right = viewer.get(url, {lookup: "sk-l" if "startswith" in lookup else "^sk-l"})
        wrong = viewer.get(url, {lookup: "zz"})
        # Django's answer to a refused lookup; the same for a right and a wrong guess.
        assert right.status_code == wrong.status_code == 400, (url, lookup)
        assert "sk-live-123" not in page_text(right)


def test_the_declared_filters_sorting_pages_and_own_links_still_work(operator):
    worker = Worker.objects.create(id="w-1", hostname="web-1", pid=1, queues=["default"])
    schedule = Schedule.objects.create(name="nightly", task_path=BOOM, cron="0 3 * * *")
    running = job(JobStatus.RUNNING, claimed_by=worker.id)
    fired = job(JobStatus.FAILED, BOOM, schedule=schedule)
    for _ in range(55):  # two pages
        job(JobStatus.SUCCESSFUL)
    for url in (JOBS, SCHEDULES, WORKERS):
        page = page_text(operator.get(url))
        links = {unescape(href) for href in re.findall(r'href="(\?[^"]*)"', page)}
        assert links, url
        for link in links:  # each filter choice, sort header and page link
            assert operator.get(url + link).status_code == 200, url + link
    assert row_ids(page_text(operator.get(JOBS, {"status__exact": "FAILED"}))) == {fired.pk}
    assert row_ids(page_text(operator.get(JOBS, {"queue": "default", "p": "2"})))
    assert operator.get(JOBS, {"q": "boom", "o": "-0"}).status_code == 200
    assert operator.get(JOBS, {"enqueued_at__gte": "2000-01-01"}).status_code == 200
    # The links the admin itself draws: a worker's running jobs, a schedule's jobs.
    worker_page = page_text(operator.get(WORKERS))
    href = unescape(re.search(r'href="([^"]*claimed_by=[^"]*)"', worker_page).group(1))
    assert row_ids(page_text(operator.get(href))) == {running.pk}
    schedule_page = page_text(operator.get(change_url(schedule)))
    href = unescape(re.search(r'href="([^"]*schedule__exact=[^"]*)"', schedule_page).group(1))
    assert row_ids(page_text(operator.get(href))) == {fired.pk}
    assert operator.get(SCHEDULES, {"enabled__exact": "1", "q": "night"}).status_code == 200
    assert operator.get(WORKERS, {"state": "live", "hostname": "web-1"}).status_code == 200


def test_the_list_sorts_only_by_its_sortable_columns(operator):
    first = job(task_path=BOOM)
    second = job(task_path=ADD)

    def order(o: str) -> list[int]:
        page = page_text(operator.get(JOBS, {"o": o}))
        return [int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', page)]

    # Column 0 is the checkbox, 1 the id, 2 the task path: Django would sort the
    # whole table by it; ours keeps the default order, newest first.
    assert order("1") == [first.pk, second.pk]
    assert order("-1") == [second.pk, first.pk]
    assert order("2") == order("-2") == order("0") == [second.pk, first.pk]


# 2. Unique keys of sensitive tasks


def test_a_unique_key_is_a_keyed_hash_that_an_offline_search_cannot_reverse():
    result = checks_a_pin.enqueue(7, "4821")
    again = checks_a_pin.enqueue(account=8, pin="4821")
    assert again.id == result.id  # still unique per PIN
    key = Job.objects.get(pk=result.id).unique_key
    identity = json.dumps({"pin": "4821"}, sort_keys=True, separators=(",", ":"))
    assert key == salted_hmac(KEY_SALT, identity, algorithm="sha256").hexdigest()
    assert len(key) == 64
    # The attack that recovered a PIN from the plain SHA-256: try every PIN.
    plain = {
        hashlib.sha256(json.dumps({"pin": f"{n:04}"}, separators=(",", ":")).encode()).hexdigest()
        for n in range(10_000)
    }
    assert key not in plain
    with override_settings(SECRET_KEY="another-secret"):
        assert checks_a_pin.unique_key([7, "4821"], {}) != key


def test_an_unfinished_job_keyed_before_the_upgrade_lets_one_duplicate_in():
    """What docs/admin.md says of keys written by the unsalted SHA-256 of older versions."""
    identity = json.dumps({"pin": "4821"}, sort_keys=True, separators=(",", ":"))
    old = job(task_path=PIN_TASK, args=[7, "4821"], unique_key=hashlib.sha256(
        identity.encode()).hexdigest())  # fmt: skip
    new = checks_a_pin.enqueue(7, "4821")
    assert new.id != str(old.pk)  # the index compares keys: the old one is not found
    assert checks_a_pin.enqueue(8, "4821").id == new.id  # and the new key deduplicates
    assert Job.objects.filter(task_path=PIN_TASK).count() == 2


def test_the_admin_never_shows_a_sensitive_tasks_unique_key(operator, viewer):
    secret = Job.objects.get(pk=checks_a_pin.enqueue(7, "4821").id)
    plain = job(JobStatus.READY, task_path=ADD, unique_key="plain-key-1")
    for client in (operator, viewer):
        listing = page_text(client.get(JOBS))
        assert secret.unique_key not in listing and "4821" not in listing
        detail = page_text(client.get(change_url(secret)))
        assert secret.unique_key not in detail and "4821" not in detail
        assert f"{REDACTED} (the task has sensitive arguments)" in detail
        assert "plain-key-1" in page_text(client.get(change_url(plain)))
        # Neither search nor a lookup reaches the key.
        assert row_ids(page_text(client.get(JOBS, {"q": "checks_a_pin"}))) == {secret.pk}
        assert row_ids(page_text(client.get(JOBS, {"q": secret.unique_key}))) == set()
        assert row_ids(page_text(client.get(JOBS, {"q": secret.unique_key[:8]}))) == set()
        assert client.get(JOBS, {"unique_key": secret.unique_key}).status_code == 400


# 3. No query string gives a 500

IGNORED = (
    "The error filter was ignored: {} is not an exception class path. Pick a class in the "
    "filter, or give its dotted path, for example ?error=builtins.ValueError."
)


@pytest.mark.parametrize(
    ("url", "query", "status", "says"),
    [
        (JOBS, "q=%C2%B2", 200, "0 jobs"),  # "²".isdigit() is true, int("²") is not
        (JOBS, "q=%00", 200, "Null characters are not allowed."),
        (JOBS, "q=99999999999999999999", 200, "0 jobs"),
        (OVERVIEW, "refresh=%C2%B2", 200, '<meta http-equiv="refresh" content="10">'),
        (OVERVIEW, "refresh=-5", 200, '<meta http-equiv="refresh" content="10">'),
        (JOBS, "queue=%00", 302, "?e=1"),
        (JOBS, "task=%00", 302, "?e=1"),
        (JOBS, "claimed_by=%00", 302, "?e=1"),
        (JOBS, "status__exact=%00", 302, "?e=1"),
        (JOBS, "e=1&queue=%00", 200, "Database error"),  # Django's page for a repeat
        (JOBS, "enqueued_at__gte=soon", 302, "?e=1"),
        (JOBS, "schedule__exact=99999999999999999999", 302, "?e=1"),  # SQLite: OverflowError
        (JOBS, "schedule__exact=-99999999999999999999", 302, "?e=1"),
        (JOBS, "schedule__exact=x", 302, "?e=1"),
        (JOBS, "enqueued_at__gte=0001-01-01T00:00:00%2B05:00", 302, "?e=1"),  # year 0 in UTC
        (JOBS, "enqueued_at__lt=9999-12-31T23:59:59-05:00", 302, "?e=1"),  # year 10000
        (WORKERS, "hostname=%00", 302, "?e=1"),
        (SCHEDULES, "q=%00", 200, "Null characters are not allowed."),
        (SCHEDULES, "enabled__exact=%00", 302, "?e=1"),
        (JOBS, "o=99", 200, ""),
        (JOBS, "o=%C2%B2.-x.7-", 200, ""),
        (WORKERS, "o=99", 200, ""),
        (SCHEDULES, "o=99", 200, ""),
        (JOBS, "p=x", 200, ""),
        (JOBS, "p=-1", 302, "?e=1"),
        (JOBS, "p=99999999999999999999", 302, "?e=1"),
        (SCHEDULES, "p=99999999999999999999", 200, ""),
        (JOBS, "error=%00", 302, "?e=1"),
        (JOBS, "error=builtins.ValueError%00", 302, "?e=1"),
        (JOBS, "error=not+a+class", 200, IGNORED.format("'not a class'")),
        (JOBS, "error=%ED%A0%80.x", 200, IGNORED.format("'\ufffd\ufffd\ufffd.x'")),  # surrogate
        (JOBS, "error=builtins.ValueError&error=x", 200, IGNORED.format("'x'")),  # the last
        (JOBS, "error=builtins.ValueError&error=", 200, IGNORED.format("''")),
        (JOBS, "nonsense=1", 400, ""),
        (JOBS, "_to_field=args", 400, ""),
    ],
)
def test_known_bad_query_strings_get_a_clear_answer(viewer, url, query, status, says):
    for _ in range(55 if query.startswith("p=") else 1):  # pages need more than 50 rows
        job()
    response = viewer.get(f"{url}?{query}")
    assert response.status_code == status
    if status == 302:
        assert response["Location"].endswith(says)
    elif says:
        assert says in page_text(response) or says in messages_of(response)


def test_a_search_that_only_looks_like_an_id_searches_the_text(viewer):
    squared = job(task_path="legacy.tasks.x²")  # unregistered: shown, never run
    job(args=[2])
    assert row_ids(page_text(viewer.get(JOBS, {"q": "²"}))) == {squared.pk}
    assert row_ids(page_text(viewer.get(JOBS, {"q": f"#{squared.pk}"}))) == {squared.pk}


def test_an_empty_to_field_means_the_primary_key(viewer):
    worker = Worker.objects.create(id="w-1", hostname="web-1", pid=1, queues=["default"])
    failed = job(JobStatus.FAILED, BOOM)
    schedule = Schedule.objects.create(name="s", task_path=ADD, cron="@daily", args=[1, 2])
    for obj in (worker, failed, schedule):
        response = viewer.get(change_url(obj), {"_to_field": ""})  # Django: FieldDoesNotExist
        assert response.status_code == 200


def test_a_worker_id_no_row_can_have_is_doesnt_exist(viewer):
    response = viewer.get(reverse("admin:django_dbtasks_worker_change", args=["w\x00"]))
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_a_forged_selection_changes_nothing_and_says_so(operator):
    failed = job(JobStatus.FAILED, BOOM)
    response = operator.post(
        JOBS,
        {"action": "retry_jobs", "_selected_action": [str(failed.pk), "x"], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "The selection holds something that is not an id of jobs. No jobs have been changed."
    ]
    assert Job.objects.get(pk=failed.pk).status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("action", "forged"),
    [
        ("enable_schedules", "x"),
        ("fire_now", "x"),
        ("fire_now", "9" * 30),
        ("enable_schedules", "1\x00"),
    ],
)
def test_a_forged_schedule_selection_changes_nothing_and_says_so(operator, action, forged):
    from django_dbtasks.models import Schedule

    kept = Schedule.objects.create(
        name="kept", task_path="tests.testapp.tasks.noop", cron="0 3 * * *", enabled=False
    )
    response = operator.post(
        reverse("admin:django_dbtasks_schedule_changelist"),
        {"action": action, "_selected_action": [str(kept.pk), forged], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "The selection holds something that is not an id of schedules. "
        "No schedules have been changed."
    ]
    assert not Schedule.objects.get(pk=kept.pk).enabled
    assert not Job.objects.exists()


#: Any code point, NUL and lone surrogates included (Hypothesis leaves surrogates out).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
#: Values a parameter commonly takes, and the edges of each kind.
usual_values = st.sampled_from(
    ["", "0", "1", "-1", "2", "-0", "0.1", "x", "99999999999999999999", "READY", "FAILED",
     "default", ADD, SECRET, "2000-01-01", "0001-01-01 00:00+05:00", "9999-12-31 23:59-05:00",
     "True", "id", "w/1", "\x00", "²", "%", "a&b=c"]
)  # fmt: skip
#: Characters ``str.isdigit()`` accepts and ``int()`` refuses: superscripts, circled digits...
ODD_DIGITS = "".join(c for c in map(chr, range(0x30000)) if c.isdigit() and not c.isdecimal())
#: Numbers as a query string may spell them: ASCII, other scripts' decimals, odd digits, signs.
numbers = st.text(
    st.sampled_from("0123456789-") | st.sampled_from(ODD_DIGITS) | st.characters(categories=["Nd"]),
    min_size=1,
    max_size=4,
)
values = st.one_of(usual_values, numbers, any_text)
#: The changelist's own parameters: all, o, p, q, e, _popup, _to_field, _facets, ...
LIST_PARAMETERS = {ALL_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR, ERROR_FLAG, *IGNORED_PARAMS}
FORM_PARAMETERS = {"_changelist_filters", "_popup", "_to_field", "_save", "_continue"}


def encode(value: str) -> str:
    """Percent-encode any text as UTF-8; a lone surrogate becomes its (invalid) bytes."""
    return quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="")


#: Exception class paths as they are stored, and near misses of them.
class_paths = st.sampled_from(
    ["builtins.ValueError", "json.decoder.JSONDecodeError", "builtins.KeyError",
     "tests.test_x.test_y.<locals>.Oops", "builtins.valueerror", "builtins.ValueError ",
     "ValueError", "builtins..ValueError", "builtins.ValueError\x00", "builtins.Value%Error"]
)  # fmt: skip


def test_any_error_filter_value_gives_its_jobs_or_a_clear_answer(viewer):
    """Hypothesis: ``?error=`` with any text gives exactly that class's jobs, or says why not."""
    from django_dbtasks.admin.jobs import LatestErrorFilter

    latest = {
        job(JobStatus.FAILED, BOOM, errors=[error("x")]).pk: "builtins.ValueError",
        job(JobStatus.FAILED, BOOM, errors=[error("x"), {**error("y"), "exception_class_path":
            "json.decoder.JSONDecodeError"}]).pk: "json.decoder.JSONDecodeError",
        job(JobStatus.READY, BOOM, errors=[{**error("z"), "exception_class_path":
            "tests.test_x.test_y.<locals>.Oops"}]).pk: "tests.test_x.test_y.<locals>.Oops",
        job(JobStatus.FAILED, errors={"message": "malformed"}).pk: None,
        job(task_path=SECRET, args=[7, "sk-live-123"]).pk: None,
    }  # fmt: skip

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(value=st.one_of(class_paths, values))
    @example(value="builtins.ValueError")
    @example(value="\udc80")
    @example(value="no class\x00")
    def check(value):
        response = viewer.get(f"{JOBS}?error={encode(value)}")
        if response.status_code == 302:  # a NUL character: Django's invalid lookup
            assert "\x00" in value and response["Location"].endswith("?e=1")
            assert not messages_of(viewer.get(JOBS))  # and no message left for the next page
            return
        assert response.status_code == 200, value
        content = page_text(response)
        assert "sk-live-123" not in content
        received = response.wsgi_request.GET["error"]  # as the server decoded it
        notes = messages_of(response)
        if LatestErrorFilter.is_class_path(received):
            assert not notes
            assert row_ids(content) == {pk for pk, path in latest.items() if path == received}
        else:
            assert notes and notes[0].startswith("The error filter was ignored:")
            assert row_ids(content) == set(latest)

    check()


def admin_urls(objects: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    """``(name, method, url, parameters)`` for every URL pattern of this app's model admins.

    Read from the admin site's own patterns, so a view added later is fuzzed
    too; ``object_id`` is a real row's (quoted) id, and ``parameters`` the
    query-string names the page reads.
    """
    request = RequestFactory().get("/")
    found = [("app index", "GET", reverse("admin:app_list", args=["django_dbtasks"]), [])]
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "django_dbtasks":
            continue
        pk = quote(objects[model._meta.model_name].pk)
        lookups = declared_lookups(model_admin, request) | set(model_admin.linked_lookups)
        fields = {field.name for field in model._meta.get_fields()}
        for pattern in model_admin.get_urls():
            assert isinstance(pattern, URLPattern)
            converters = pattern.pattern.converters
            assert set(converters) <= {"object_id"}, pattern
            kwargs = {"object_id": pk} if converters else {}
            if pattern.name:
                url = reverse(f"admin:{pattern.name}", kwargs=kwargs)
            else:  # Django's redirect of /<id>/ to /<id>/change/
                url = reverse(f"admin:django_dbtasks_{model._meta.model_name}_changelist")
                url += f"{pk}/"
            name = pattern.name or f"{model._meta.model_name} id"
            if name.endswith("_changelist"):
                parameters = LIST_PARAMETERS | lookups | {"args__1__startswith", "id__exact"}
                found.append((f"{name} action", "POST", url, sorted(parameters)))
            elif name.endswith("_overview"):
                parameters = {"refresh"}
            elif name.endswith(("_add", "_change")):
                parameters = FORM_PARAMETERS | fields  # the add form takes initial values
            else:
                parameters = {PAGE_VAR, *FORM_PARAMETERS}
            method = "POST" if name.endswith(("_retry", "_cancel")) else "GET"
            found.append((name, method, url, sorted(parameters)))
    return found


@pytest.mark.slow  # 5 to 10 s per user
@pytest.mark.parametrize("who", ["viewer", "operator"])
def test_no_query_string_on_any_admin_url_gives_a_500(who, request):
    """Hypothesis: random keys and values (NUL, surrogates, real names) on every admin URL."""
    client = request.getfixturevalue(who)
    worker = Worker.objects.create(id="w_2F1/x:y", hostname="h", pid=1, queues=["default"])
    schedule = Schedule.objects.create(
        name="api", task_path=SECRET, cron="@daily", args=[7], kwargs={"api_key": "k"}
    )
    failed = job(JobStatus.FAILED, BOOM, errors=[error("x")], claimed_by=worker.id)
    for _ in range(3):
        job(task_path=SECRET, args=[7, "sk-live-123"], worker_ids=[worker.id])
    urls = admin_urls({"job": failed, "schedule": schedule, "worker": worker})
    assert {name for name, *_ in urls} >= {
        "app index",
        "django_dbtasks_job_overview",
        "django_dbtasks_job_retry",
        "django_dbtasks_job_cancel",
        "django_dbtasks_job_changelist",
        "django_dbtasks_job_change",
        "django_dbtasks_job_history",
        "django_dbtasks_schedule_changelist",
        "django_dbtasks_schedule_add",
        "django_dbtasks_schedule_change",
        "django_dbtasks_worker_changelist",
        "django_dbtasks_worker_change",
    }
    every_name = sorted({parameter for *_, parameters in urls for parameter in parameters})

    def query_for(parameters: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
        """Mostly the page's own parameters, some of other pages', now and then noise."""
        keys = st.sampled_from(parameters or every_name) | st.sampled_from(every_name)
        return st.lists(st.tuples(keys, values), max_size=4) | st.lists(
            st.tuples(keys | any_text, values), max_size=4
        )

    cases = st.sampled_from(urls).flatmap(
        lambda page: st.tuples(st.just(page), query_for(page[3]), st.lists(values, max_size=2))
    )
    by_name = {page[0]: page for page in urls}
    jobs = by_name["django_dbtasks_job_changelist"]

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=cases)
    @example(case=(by_name["django_dbtasks_job_overview"], [("refresh", "²")], []))
    @example(case=(jobs, [("q", "²")], []))
    @example(case=(jobs, [("queue", "\x00")], []))
    @example(case=(jobs, [("task", "\x00")], []))
    @example(case=(jobs, [("o", "99"), ("p", "x")], []))
    @example(case=(jobs, [("p", "-1")], []))
    @example(case=(jobs, [("p", "9" * 20)], []))
    @example(case=(by_name["django_dbtasks_job_changelist action"], [], ["x"]))
    @example(case=(jobs, [("enqueued_at__gte", "0001-01-01 00:00+05:00")], []))
    @example(case=(jobs, [("schedule__exact", "9" * 20)], []))
    @example(case=(by_name["django_dbtasks_worker_change"], [("_to_field", "")], []))
    @example(case=(by_name["django_dbtasks_job_change"], [("_to_field", "")], []))
    @example(case=(by_name["django_dbtasks_schedule_change"], [("_to_field", "")], []))
    def check(case):
        (name, method, url, _), query, selected = case
        query_string = "&".join(f"{encode(key)}={encode(value)}" for key, value in query)
        with transaction.atomic():  # each example starts from the same rows
            if method == "GET":
                response = client.get(f"{url}?{query_string}")
            else:
                form = {"action": "retry_jobs", "index": "0", "_selected_action": selected}
                response = client.post(f"{url}?{query_string}", form)
            transaction.set_rollback(True)
        assert response.status_code < 500, (name, query_string)
        assert b"sk-live-123" not in response.content, (name, query_string)

    check()


# 4. Rows of the wrong shape


def write_raw(model: Any, pk: Any, **columns: Any) -> None:
    """Store values the ORM would not write, with SQL, as another program could."""
    assignments, values = [], []
    for name, value in columns.items():
        field = model._meta.get_field(name)
        if field.get_internal_type() == "JSONField":
            assignments.append(f"{field.column} = %s" + ("::jsonb" if IS_POSTGRES else ""))
            values.append(json.dumps(value))
        else:
            assignments.append(f"{field.column} = %s")
            values.append(value)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {model._meta.db_table} SET {', '.join(assignments)} "
            f"WHERE {model._meta.pk.column} = %s",
            [*values, pk],
        )


MALFORMED_JOBS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("args an object", {"args": {"x": 1}}, ["Malformed: args should be a JSON list."]),
    ("args a string", {"args": "oops"}, ["Malformed: args should be a JSON list."]),
    ("args null", {"args": None}, ["Malformed: args should be a JSON list."]),
    ("kwargs a list", {"kwargs": [1, 2]}, ["Malformed: kwargs should be a JSON object."]),
    ("worker_ids a number", {"worker_ids": 5}, ["Malformed: worker_ids should be a JSON list."]),
    ("worker_ids numbers", {"worker_ids": [1, 2]}, ['href="/admin/django_dbtasks/worker/2/']),
    ("worker_ids null", {"worker_ids": None}, []),
    ("worker_ids odd items", {"worker_ids": [None, {"a": 1}, "w-9"]}, ["null", "w-9"]),
    ("claimed_by a newline", {"claimed_by": "w\n1"}, ["w<br>1"]),
    ("errors an object", {"errors": {"message": "x"}}, ["errors should be a JSON list."]),
    ("errors a string", {"errors": "it broke"}, ["errors should be a JSON list."]),
    (
        "errors with null and odd entries",
        {"errors": [None, error("real one"), "a string", 5, {"message": {"nested": 1}}]},
        ["Attempt 1.</strong> Malformed entry", "Attempt 2.</strong> ValueError: real one",
         "Attempt 3.</strong> Malformed entry", "Attempt 5.</strong> {&#x27;nested&#x27;: 1}"],
    ),
]  # fmt: skip


def test_malformed_rows_render_among_normal_ones(operator):
    normal = [job(JobStatus.FAILED, BOOM, errors=[error("fine")]), job(), job(JobStatus.SUCCESSFUL)]
    malformed = {}
    for label, columns, _ in MALFORMED_JOBS:
        row = job(JobStatus.FAILED, ADD, errors=[error("x")])
        write_raw(Job, row.pk, **columns)
        malformed[label] = row
    # A sensitive task's malformed arguments stay hidden.
    secret = job(JobStatus.FAILED, SECRET)
    write_raw(Job, secret.pk, args={"api_key": "sk-live-123"}, kwargs=["sk-live-456"])
    if not IS_POSTGRES:  # PostgreSQL refuses a lone surrogate; SQLite's JSON keeps it
        odd = job()
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {Job._meta.db_table} SET args = %s WHERE id = %s",
                           ['["\\ud800"]', odd.pk])  # fmt: skip
        normal.append(odd)

    response = operator.get(JOBS)
    assert response.status_code == 200
    listing = page_text(response)
    assert row_ids(listing) == {j.pk for j in [*normal, *malformed.values(), secret]}
    assert "malformed: args={&quot;x&quot;: 1}, kwargs={}" in listing
    assert "sk-live" not in listing
    assert 'href="/admin/django_dbtasks/worker/w_0A1/change/">w\n1</a>' in listing
    for label, _, expected in MALFORMED_JOBS:
        response = operator.get(change_url(malformed[label]))
        assert response.status_code == 200, label
        detail = page_text(response)
        for fragment in expected:
            assert fragment in detail, (label, fragment)
    detail = page_text(operator.get(change_url(secret)))
    assert "sk-live" not in detail
    assert detail.count(f'<pre class="dbtasks-json">&quot;{REDACTED}&quot;</pre>') == 2
    for row in normal:
        assert operator.get(change_url(row)).status_code == 200


def test_a_malformed_worker_row_renders_in_its_list_its_page_and_the_overview(operator):
    Worker.objects.create(id="w-ok", hostname="h", pid=1, queues=["default"])
    odd = Worker.objects.create(id="w-odd", hostname="h", pid=2, queues=["default"])
    write_raw(Worker, odd.pk, queues={"default": 1})
    other = Worker.objects.create(id="w-mixed", hostname="h", pid=3, queues=["default"])
    write_raw(Worker, other.pk, queues=["emails", 7, None])
    listing = page_text(operator.get(WORKERS))
    assert "malformed: {&quot;default&quot;: 1}" in listing
    assert "malformed: [&quot;emails&quot;, 7, null]" in listing
    assert operator.get(change_url(odd)).status_code == 200
    overview = operator.get(OVERVIEW)
    assert overview.status_code == 200
    assert "<title>" in page_text(overview)


def test_a_malformed_schedule_row_renders_for_a_viewer(viewer):
    schedule = Schedule.objects.create(name="odd", task_path=SECRET, cron="@daily")
    write_raw(Schedule, schedule.pk, args={"api_key": "sk-live-123"}, kwargs="text")
    page = page_text(viewer.get(change_url(schedule)))
    assert "sk-live" not in page and REDACTED in page
    assert viewer.get(SCHEDULES).status_code == 200


# 5. Links to workers


def test_a_job_links_to_its_worker_whatever_the_worker_id(operator):
    worker_id = "web_2F1/a&b:c"  # "_2F" is how the admin quotes "/"
    Worker.objects.create(id=worker_id, hostname="web-1", pid=4, queues=["default"])
    running = job(JobStatus.RUNNING, claimed_by=worker_id, worker_ids=[worker_id])
    finished = job(JobStatus.FAILED, BOOM, worker_ids=["w-old", worker_id])
    url = reverse("admin:django_dbtasks_worker_change", args=[quote(worker_id)])
    assert "web_5F2F1_2Fa_26b_3Ac" in url
    listing = page_text(operator.get(JOBS))
    assert listing.count(f'<a href="{url}">{worker_id.replace("&", "&amp;")}</a>') == 2
    for row in (running, finished):
        assert f'href="{url}"' in page_text(operator.get(change_url(row)))
    worker_page = operator.get(url)
    assert worker_page.status_code == 200 and "web-1" in page_text(worker_page)
    # And back: the worker's "running jobs" link filters by its exact id.
    href = unescape(re.search(r'href="([^"]*claimed_by=[^"]*)"', page_text(
        operator.get(WORKERS))).group(1))  # fmt: skip
    assert row_ids(page_text(operator.get(href))) == {running.pk}


def test_last_worker_of_a_finished_job_is_its_column(viewer):
    Worker.objects.create(
        id="w-old", hostname="h", pid=1, queues=[], last_heartbeat_at=timezone.now() - timedelta(1)
    )
    job(JobStatus.SUCCESSFUL, worker_ids=["w-old"])
    assert 'href="/admin/django_dbtasks/worker/w-old/change/"' in page_text(viewer.get(JOBS))
