from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from .tasks import send_verification_email


@receiver(post_save, sender=get_user_model())
def verify_new_user(sender, instance, created, **kwargs):
    """Enqueue the verification email in the same transaction as the new user.

    If creating the user rolls back, the job never existed; a worker cannot
    pick it up before the user row is committed.
    """
    if created and instance.email:
        send_verification_email.enqueue(instance.pk)
