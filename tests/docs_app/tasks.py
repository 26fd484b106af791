# The code blocks of docs/quickstart.md and docs/celery.md marked
# <!-- module: tests/docs_app/tasks.py --> are contained verbatim in this file
# (tests/test_docs.py checks it), so what the docs show is what the tests run.
# myapp/tasks.py
from django.contrib.auth.models import User
from django.core.mail import send_mail

from django_dbtasks import task


@task(queue_name="emails", priority=10)
def send_welcome_email(user_id):
    user = User.objects.get(pk=user_id)
    send_mail("Welcome!", f"Hello {user.username}!", None, [user.email])
    return user.email


# The tasks of docs/celery.md.
from . import celery_tasks  # noqa: E402, F401
