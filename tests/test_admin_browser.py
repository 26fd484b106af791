"""The admin in a real browser (Chromium driven by Playwright) against a live server.

One walk through what an operator does: log in, read the overview, find a
failed job, read its traceback, retry it, and create a schedule (first with a
wrong cron expression). Screenshots of the overview and the job page are
saved in ``.artifacts/``.
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
