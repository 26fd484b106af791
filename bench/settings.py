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
# Prepared statements (psycopg's prepare_threshold; Django turns them off unless
# OPTIONS sets it): on unless the benchmark runs with --no-prepare. See
# docs/performance.md for when a project can turn them on.
if os.environ.get("DBTASKS_BENCH_PREPARE", "1") == "1":
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 5}
TASKS = {"default": {"BACKEND": "django_dbtasks.backend.DatabaseBackend"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False}
