"""Background work of the accounts app, written against the standard task API."""

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from django_dbtasks import task


@task(queue_name="emails", max_attempts=5)
def send_verification_email(user_id: int) -> str:
    """Email a new user their verification link.

    It receives the user's primary key, never the object: the row is read
    fresh here, when the job runs. Five attempts ride out an SMTP hiccup.
    """
    user = get_user_model().objects.get(pk=user_id)
    send_mail(
        subject="Please verify your email address",
        message=f"Hello {user.username}, click https://example.com/verify/{user.pk}/ to verify.",
        from_email=None,
        recipient_list=[user.email],
    )
    return user.email
