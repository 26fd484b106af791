# Contains the <!-- module: tests/docs_app/celery_tasks.py --> block of docs/celery.md.
# myapp/tasks.py
from django_dbtasks import Backoff, periodic, report_progress, task


@task(max_attempts=5, retry_delay=Backoff(base=2, max_delay=600), timeout=30)
def charge_order(order_id):
    # Any exception fails the attempt; the job runs again until max_attempts.
    return {"order": order_id, "charged": True}


@task(unique="user_id", queue_name="low")
def rebuild_feed(user_id):
    for page in range(1, 4):
        report_progress(100 * page / 3, f"Built page {page} of 3")
    return user_id


@task(queue_name="low")
def cleanup():
    return "done"


periodic(cleanup, "0 3 * * *", timezone="Europe/Berlin")
