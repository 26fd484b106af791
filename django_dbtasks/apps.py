"""The app config: registers the system checks once the models are loaded."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class DbTasksConfig(AppConfig):
    name = "django_dbtasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Local: checks imports the backend, hence the models, which cannot load before ready().
        from .checks import check_task_settings

        checks.register(check_task_settings, "django_dbtasks")
