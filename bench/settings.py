"""Settings of the benchmark project: production defaults, PostgreSQL from DATABASE_URL."""

import os

import dj_database_url

SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_dbtasks",
    "bench.benchapp",
]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
TASKS = {"default": {"BACKEND": "django_dbtasks.backend.DatabaseBackend"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False}
