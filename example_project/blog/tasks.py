"""The blog's background work: one task per kind of job a real site hands off."""

import csv
import time
from collections import defaultdict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Sum
from django.utils import timezone

from django_dbtasks import Backoff, periodic, report_progress, task

from .models import Export, Post
from .search_engine import ping_search_engine


@task(unique="post_id")
def generate_preview(post_id: int) -> int:
    """Write a post's preview. Unique per post: saving a post twice quickly queues it once."""
    post = Post.objects.get(pk=post_id)
    post.preview = post.body[:140]
    post.save(update_fields=["preview"])
    return len(post.preview)


@task(
    takes_context=True,
    max_attempts=4,
    retry_delay=Backoff(base=0.5, factor=2, jitter=0.1),
    sensitive="api_key",
)
def notify_search_engine(context, post_id: int, api_key: str) -> str:
    """Tell a (flaky) external search engine about a new post, retrying with backoff.

    ``api_key`` is marked sensitive: the admin shows it as ********.
    """
    post = Post.objects.get(pk=post_id)
    # SearchEngineUnavailable fails this attempt; the worker retries after ~0.5 s, 1 s, 2 s.
    receipt = ping_search_engine(post.pk, api_key, attempt=context.attempt)
    post.indexed_at = timezone.now()
    post.save(update_fields=["indexed_at"])
    return receipt


@task(timeout=600)
def export_posts(export_id: int) -> str:
    """Write every post to a CSV file, reporting progress as it goes (slow on purpose)."""
    export = Export.objects.get(pk=export_id)
    posts = Post.objects.select_related("author").order_by("pk")
    total = posts.count()
    folder = settings.VAR_DIR / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    file_name = f"posts-{export.pk}.csv"
    with open(folder / file_name, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "title", "author", "views", "created_at"])
        for number, post in enumerate(posts, start=1):
            writer.writerow(
                [post.pk, post.title, post.author.username, post.views, post.created_at]
            )
            report_progress(100 * number / total, f"Exported {number} of {total} posts")
            time.sleep(settings.EXPORT_SECONDS_PER_POST)
    export.file_name, export.rows = file_name, total
    export.save(update_fields=["file_name", "rows"])
    return file_name


@task(queue_name="emails")
def send_author_reports() -> int:
    """Email each author the views of their posts (run daily by the schedule below)."""
    totals = defaultdict(int)
    for row in Post.objects.values("author").annotate(views=Sum("views")):
        totals[row["author"]] = row["views"]
    for author in get_user_model().objects.filter(pk__in=totals):
        send_mail(
            subject="Your daily report",
            message=f"Hello {author.username}, your posts were read {totals[author.pk]} times.",
            from_email=None,
            recipient_list=[author.email],
        )
    return len(totals)


periodic(send_author_reports, "0 7 * * *", name="daily-author-report")
