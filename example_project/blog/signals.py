from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import Post
from .tasks import generate_preview, notify_search_engine

TASK_WRITTEN_FIELDS = {"preview", "indexed_at", "views"}


@receiver(post_save, sender=Post)
def post_saved(sender, instance, created, update_fields=None, **kwargs):
    """Queue the post's background work inside the transaction that saves it."""
    if update_fields and set(update_fields) <= TASK_WRITTEN_FIELDS:
        return  # a task saving its own result: nothing new to preview
    generate_preview.enqueue(instance.pk)  # unique: one pending preview per post
    if created:
        notify_search_engine.enqueue(instance.pk, settings.SEARCH_ENGINE_API_KEY)
