"""The admin in a real browser (Chromium driven by Playwright) against a live server.

Two walks through what an operator does. The first: log in, read the
overview, find a failed job, read its traceback, retry it, and create a
schedule (first with a wrong cron expression). The second is triage on a
1366 x 768 screen, after a real worker ran jobs that failed for different
causes (one inside ``json``, called from the project's code): the job list's
first columns fit, the error column and filter find the failures, the failed
job's page starts with its latest error and its own frames, and the overview
breaks the hour down per task. Screenshots are saved in ``.artifacts/``:
``admin-overview.png`` and ``admin-job.png`` (the first walk),
``triage-job-list.png``, ``triage-failed-job.png``,
``triage-failed-job-traceback.png`` and ``triage-overview.png`` (the second).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from django_dbtasks.models import Job, JobStatus, Schedule

from .conftest import ROOT, run_worker
from .shared_admin import job
from .testapp import tasks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]

ARTIFACTS = ROOT / ".artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module (Playwright's own download is not used)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test still reads
    # the database through Django's ORM between browser steps, which is safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                ],
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def test_an_operator_finds_a_failed_job_retries_it_and_schedules_a_task(browser, live_server):
    from playwright.sync_api import expect

    User.objects.create_superuser("ops", "ops@example.com", "a-long-password")
    tasks.boom.enqueue("disk full")
    tasks.add.enqueue(2, 3)
    assert run_worker().returncode == 0  # a real worker, so a real traceback
    failed = Job.objects.get(status=JobStatus.FAILED)
    Job.objects.create(
        task_path=tasks.sleep_and_report.module_path,
        args=[30],
        status=JobStatus.RUNNING,
        progress=65,
        progress_message="Exported 650 of 1,000 rows",
        claimed_by="worker-a",
    )
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_dbtasks/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "a-long-password")
    page.click("input[type=submit]")

    # The app index links to the overview.
    page.click("text=Queue overview")
    expect(page.locator("h1")).to_have_text("Task queues")
    default = page.locator('tr[data-queue="default"]')
    expect(default.locator('[data-stat="failed-total"]')).to_have_text("1")
    expect(default.locator('[data-stat="successful-window"]')).to_have_text("1")
    expect(default.locator('[data-stat="running"]')).to_have_text("1")
    expect(page.locator("svg.dbtasks-chart rect.failed").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "admin-overview.png"), full_page=True)

    # Filter failed jobs in the job list.
    page.goto(f"{live_server.url}/admin/django_dbtasks/job/")
    expect(page.locator("progress.dbtasks-progress")).to_have_attribute("value", "65")
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/admin/django_dbtasks/job/?status__exact=FAILED")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)

    # Open it: its traceback is there.
    rows.first.get_by_role("link", name=tasks.boom.module_path).click()
    expect(page.locator(".dbtasks-traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator(".dbtasks-traceback")).to_contain_text("ValueError: disk full")
    page.screenshot(path=str(ARTIFACTS / "admin-job.png"), full_page=True)

    # Retry it: it is READY again.
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".messagelist")).to_contain_text("Retried 1 job.")
    expect(page.locator(".dbtasks-status").first).to_have_text("Ready")
    assert Job.objects.get(pk=failed.pk).status == JobStatus.READY

    # A schedule: a wrong cron expression is explained, a right one shows its next times.
    page.goto(f"{live_server.url}/admin/django_dbtasks/schedule/add/")
    page.fill("#id_name", "every-five-minutes")
    page.select_option("#id_task_path", tasks.add.module_path)
    page.fill("#id_cron", "61 * * * *")
    page.fill("#id_timezone", "Europe/Berlin")
    page.fill("#id_args", "[1, 2]")
    page.click("input[name=_continue]")
    expect(page.locator(".errorlist")).to_contain_text(
        "'61 * * * *' is not a valid cron expression"
    )
    assert not Schedule.objects.filter(name="every-five-minutes").exists()
    page.fill("#id_cron", "*/5 * * * *")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("ol.dbtasks-upcoming li")).to_have_count(5)
    expect(page.locator("ol.dbtasks-upcoming li").first).to_contain_text(re.compile(r" CES?T · "))
    expect(page.locator(".field-description")).to_contain_text("Every 5 minutes")
    assert Schedule.objects.get(name="every-five-minutes").next_fire_at is not None
    page.close()


#: The columns triage reads first: they must fit a 1366 px screen without scrolling sideways.
FIRST_COLUMNS = [
    "id",
    "task",
    "status_column",
    "error_column",
    "finished_column",
    "duration_column",
]
#: A time as the admin shows it (seconds), and its tooltip (microseconds, offset, zone).
SECONDS = re.compile(r"\d\d:\d\d:\d\d")
PRECISE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d \S+$")


def _log_in(page, live_server, next_url: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "a-long-password")
    page.click("input[type=submit]")


def test_triage_at_1366_by_768_after_a_real_worker(browser, live_server):
    from playwright.sync_api import expect

    User.objects.create_superuser("ops", "ops@example.com", "a-long-password")
    tasks.import_orders.enqueue('{"lines": [1, 2]')  # cut short: fails twice, inside json
    tasks.import_orders.enqueue("[1, 2]")  # a list: TypeError in the project's own code
    tasks.boom.enqueue("disk full")
    tasks.fails_at_once_each_time.enqueue()  # RuntimeError, three attempts
    for n in range(3):
        tasks.add.enqueue(n, 1)
    tasks.import_orders.enqueue('{"lines": [1, 2, 3]}')  # succeeds
    # A real worker: real tracebacks, times and worker ids. A burst can end with a retry
    # that is due at once still READY (retry_delay=0), so it runs until none is left.
    for _ in range(5):
        assert run_worker().returncode == 0
        if not Job.objects.filter(status=JobStatus.READY).exists():
            break
    assert not Job.objects.filter(status=JobStatus.READY).exists()
    job(
        "RUNNING",
        tasks.sleep_and_report.module_path,
        args=[30],
        progress=65,
        progress_message="Exported 650 of 1,000 rows",
        claimed_by="worker-a",
    )
    decoding = Job.objects.get(status=JobStatus.FAILED, args=['{"lines": [1, 2]'])
    assert len(decoding.errors) == 2
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1366, "height": 768})  # type: ignore[attr-defined]
    page.set_default_timeout(15_000)
    _log_in(page, live_server, "/admin/django_dbtasks/job/")

    # The job list: the first six columns are on screen, not scrolled off or under the filters.
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(Job.objects.count())
    visible = page.locator("#changelist .results").bounding_box()
    right_edge = min(1366, visible["x"] + visible["width"])
    for column in FIRST_COLUMNS:
        box = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= right_edge, (column, box)
        assert box["y"] + box["height"] <= 768, (column, box)  # above the fold too
    row = rows.filter(has=page.locator(f'a[href$="/{decoding.pk}/change/"]'))
    error = row.locator("td.field-error_column")
    expect(error).to_contain_text("JSONDecodeError")
    expect(error).to_contain_text("Expecting ',' delimiter")
    box = error.bounding_box()
    assert box and box["x"] + box["width"] <= right_edge
    finished = row.locator("td.field-finished_column time")
    assert SECONDS.search(finished.inner_text()), finished.inner_text()
    assert PRECISE.match(finished.get_attribute("title") or ""), finished.get_attribute("title")
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", row.locator("td.field-duration_column").inner_text())
    page.screenshot(path=str(ARTIFACTS / "triage-job-list.png"))

    # The error filter: the class as a choice, the matching jobs only.
    page.locator("#changelist-filter").get_by_role(
        "link", name="JSONDecodeError (json.decoder)"
    ).click()
    expect(page).to_have_url(re.compile(r"\?error=json\.decoder\.JSONDecodeError$"))
    expect(rows).to_have_count(1)

    # The failed job's page: the latest error at the top, its message whole, its own frames.
    rows.first.locator("th.field-id a").click()
    latest = page.locator("#dbtasks-latest-error")
    expect(latest).to_be_visible()
    top = latest.bounding_box()
    assert top and top["y"] < 300, top  # at the top, not 950 px down
    message = latest.locator("pre.dbtasks-message")
    expect(message).to_have_text("Expecting ',' delimiter: line 1 column 17 (char 16)")
    assert message.bounding_box()["y"] + message.bounding_box()["height"] < 768
    own = latest.locator("ol.dbtasks-own-frames li")
    expect(own).to_have_count(2)
    expect(own.nth(0)).to_contain_text("tests/testapp/tasks.py, line")
    expect(own.nth(0)).to_contain_text("in import_orders")
    expect(own.nth(1)).to_contain_text("in _order_lines")
    expect(own.nth(1).locator("pre")).to_have_text('return json.loads(payload)["lines"]')
    assert own.nth(1).bounding_box()["y"] < 768  # where it failed, above the fold
    details = latest.locator("details.dbtasks-full-traceback")
    assert details.get_attribute("open") is None  # the full traceback is collapsed
    traceback = details.locator("pre.dbtasks-traceback")
    expect(traceback).to_be_hidden()
    started = latest.locator('[data-fact="started"] time')
    assert SECONDS.search(started.inner_text()) and PRECISE.match(started.get_attribute("title"))
    expect(latest.locator('[data-fact="outcome"]')).to_have_text("failed for good (attempt 2 of 2)")
    expect(latest.locator('[data-fact="worker"] a')).to_have_text(decoding.errors[-1]["worker_id"])
    older = page.locator(".dbtasks-older")
    expect(older).to_have_count(1)
    expect(older.locator('[data-fact="outcome"]')).to_have_text("failed; run again")
    assert SECONDS.search(older.locator('[data-fact="ended"] time').inner_text())
    # Times on the rest of the page have seconds too.
    expect(page.locator(".field-finished_at time")).to_have_text(SECONDS)
    page.screenshot(path=str(ARTIFACTS / "triage-failed-job.png"))

    # Open the traceback: the project's frames are marked, the library frames are not.
    details.locator("summary").click()
    expect(traceback).to_be_visible()
    marked = traceback.locator("mark.dbtasks-own-frame")
    expect(marked).to_have_count(2)
    for n in range(2):
        expect(marked.nth(n)).to_contain_text("tests/testapp/tasks.py")
        colour = marked.nth(n).evaluate("node => getComputedStyle(node).backgroundColor")
        assert colour == "rgb(255, 243, 196)", colour
    expect(traceback).to_contain_text("json/decoder.py")
    assert "json/decoder.py" not in "".join(marked.all_inner_texts())
    latest.screenshot(path=str(ARTIFACTS / "triage-failed-job-traceback.png"))

    # The overview, per task: the failing tasks first, with their rates and run times.
    page.goto(f"{live_server.url}/admin/django_dbtasks/job/overview/?refresh=0")
    table = page.locator("#dbtasks-task-stats")
    expect(table).to_be_visible()
    by_task = table.locator("tbody tr")
    order = [tasks.import_orders, tasks.boom, tasks.fails_at_once_each_time, tasks.add]
    assert [row.get_attribute("data-task") for row in by_task.all()] == [
        task.module_path for task in order
    ]  # the most failed jobs first (2, 1, 1, 0)
    orders = table.locator(f'tr[data-task="{tasks.import_orders.module_path}"]')
    expect(orders.locator('[data-stat="finished"]')).to_have_text("3")
    expect(orders.locator('[data-stat="failed"]')).to_have_text("2")
    expect(orders.locator('[data-stat="failure-rate"]')).to_have_text("66.7%")
    for stat in ("p50", "p95"):
        expect(orders.locator(f'[data-stat="{stat}"]')).to_have_text(re.compile(r"^\d+ ms$"))
    adding = table.locator(f'tr[data-task="{tasks.add.module_path}"]')
    expect(adding.locator('[data-stat="failure-rate"]')).to_have_text("0.0%")
    page.screenshot(path=str(ARTIFACTS / "triage-overview.png"), full_page=True)
    page.close()
