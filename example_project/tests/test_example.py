"""The example end to end: the web views, a real worker process, the files it writes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blog.models import Export, Post
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from django_dbtasks.models import Job

pytestmark = pytest.mark.django_db(transaction=True)
PROJECT = Path(__file__).resolve().parent.parent


def run_worker() -> subprocess.CompletedProcess:
    """``manage.py runtasks --burst`` in a real process, on this test's database."""
    connection.close()
    env = {**os.environ, "EXAMPLE_TEST_DB_NAME": str(connection.settings_dict["NAME"])}
    finished = subprocess.run(
        [sys.executable, "manage.py", "runtasks", "--burst", "--concurrency", "2"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    return finished


def test_signup_through_the_web_sends_the_verification_email(client):
    answer = client.post("/signup/", {"username": "newcomer", "email": "newcomer@example.com"})
    assert answer.status_code == 302
    user = get_user_model().objects.get(username="newcomer")
    job = Job.objects.get(task_path="accounts.tasks.send_verification_email")
    assert job.args == [user.pk]  # the primary key, never the object

    run_worker()
    job.refresh_from_db()
    assert job.status == "SUCCESSFUL"
    written = [p.read_text() for p in (settings.VAR_DIR / "emails").glob("*.log")]
    assert any("To: newcomer@example.com" in text for text in written)


def test_a_post_is_previewed_once_and_indexed_after_retries():
    author = get_user_model().objects.create_user("ada", "ada@example.com")
    post = Post.objects.create(author=author, title="Hello", body="A first post. " * 20)
    post.save()  # a second save while the preview is pending queues no second job
    assert Job.objects.filter(task_path="blog.tasks.generate_preview").count() == 1

    ping = Job.objects.get(task_path="blog.tasks.notify_search_engine")
    deadline = time.monotonic() + 30
    while ping.status not in ("SUCCESSFUL", "FAILED") and time.monotonic() < deadline:
        run_worker()  # burst mode exits while a retry waits for its delay: run it again
        time.sleep(0.2)
        ping.refresh_from_db()
    post.refresh_from_db()
    assert post.preview == post.body[:140]
    assert ping.status == "SUCCESSFUL" and ping.attempts == 3
    assert [error["exception_class_path"] for error in ping.errors] == [
        "blog.search_engine.SearchEngineUnavailable"
    ] * 2
    assert post.indexed_at is not None


def test_the_export_reports_progress_and_can_be_downloaded(admin_client):
    author = get_user_model().objects.create_user("grace", "grace@example.com")
    for number in range(3):
        Post.objects.create(author=author, title=f"Post {number}", body="text", views=number)
    answer = admin_client.post("/exports/")
    export = Export.objects.get()
    assert answer.status_code == 302 and answer.url == f"/exports/{export.pk}/"
    assert admin_client.get(f"/exports/{export.pk}/download/").status_code == 404

    run_worker()
    job = Job.objects.get(pk=export.job_id)
    assert job.status == "SUCCESSFUL" and job.progress == 100
    assert job.progress_message == "Exported 3 of 3 posts"
    page = admin_client.get(f"/exports/{export.pk}/").content.decode()
    assert "Download posts-" in page
    download = admin_client.get(f"/exports/{export.pk}/download/")
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert lines[0] == "id,title,author,views,created_at" and len(lines) == 4
    assert lines[1].split(",")[1:4] == ["Post 0", "grace", "0"]


def test_the_welcome_page_is_shown_only_to_the_browser_that_signed_up(client):
    client.post("/signup/", {"username": "newcomer", "email": "newcomer@example.com"})
    user = get_user_model().objects.get(username="newcomer")

    mine = client.get(f"/welcome/{user.pk}/")
    assert mine.status_code == 200 and b"newcomer@example.com" in mine.content
    other = get_user_model().objects.create_user("other", "other@example.com")
    assert client.get(f"/welcome/{other.pk}/").status_code == 404


def test_the_welcome_page_is_not_shown_to_anonymous_visitors(client):
    user = get_user_model().objects.create_user("private", "private@example.com")

    answer = client.get(f"/welcome/{user.pk}/")
    assert answer.status_code == 404
    assert b"private@example.com" not in answer.content
    assert client.get("/welcome/999999/").status_code == 404  # the same answer as a real id


def test_a_logged_in_user_sees_only_their_own_welcome_page(client):
    user = get_user_model().objects.create_user("ada", "ada@example.com", password="pw")
    other = get_user_model().objects.create_user("bob", "bob@example.com")
    client.force_login(user)

    assert client.get(f"/welcome/{user.pk}/").status_code == 200
    assert client.get(f"/welcome/{other.pk}/").status_code == 404


def test_pages_refuse_to_be_framed_by_other_sites(client):
    assert client.get("/signup/")["X-Frame-Options"] == "DENY"


def test_a_bad_option_is_a_check_message_not_a_traceback(tmp_path):
    (tmp_path / "bad_options.py").write_text(
        "from config.settings import *  # noqa: F403\n"
        "TASKS['default']['OPTIONS'] = {'LEASE': float('nan')}  # noqa: F405\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bad_options",
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path), str(PROJECT), os.environ.get("PYTHONPATH", "")]
        ),
    }
    for command in (["check"], ["runtasks", "--burst"]):
        finished = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert finished.returncode != 0
        assert "django_dbtasks.E001" in finished.stderr
        assert "['LEASE'] must be a finite number of seconds" in finished.stderr
        assert "Traceback" not in finished.stderr
