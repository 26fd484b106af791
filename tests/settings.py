"""Settings for the test suite: PostgreSQL when DATABASE_URL is set, else SQLite.

Worker subprocesses started by the tests use these settings too; they are
pointed at the test database through DBTASKS_TEST_DB_NAME.
"""

import importlib
import os
import tempfile

import dj_database_url

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django_dbtasks",
    "tests.testapp",
]

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
else:
    sqlite_dir = os.environ.setdefault("DBTASKS_SQLITE_DIR", tempfile.mkdtemp(prefix="dbtasks-"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(sqlite_dir, "main.sqlite3"),
            "TEST": {"NAME": os.path.join(sqlite_dir, "test.sqlite3")},
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
# Like a production site: pool processes keep their connection between jobs and
# check it before reuse, so a database restart costs one failed query, not a crash.
DATABASES["default"]["CONN_MAX_AGE"] = 60
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if os.environ.get("DBTASKS_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DBTASKS_TEST_DB_NAME"]

TASKS = {
    "default": {
        "BACKEND": "django_dbtasks.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "low"],
        "OPTIONS": {
            "POLL_INTERVAL": 0.05,
            "HEARTBEAT_INTERVAL": float(os.environ.get("DBTASKS_TEST_HEARTBEAT", "0.5")),
            "LEASE": float(os.environ.get("DBTASKS_TEST_LEASE", "3")),
            # Big batches on demand: a test puts a hostile job in one claim with many.
            "PREFETCH_SECONDS": float(os.environ.get("DBTASKS_TEST_PREFETCH", "0.05")),
        },
    }
}

# A second alias on the same database, for the tests of alias isolation (test_aliases.py):
# its workers are started with this set, and the test process overrides TASKS alike.
if os.environ.get("DBTASKS_TEST_SECOND_ALIAS"):
    TASKS["reports"] = {**TASKS["default"], "QUEUES": ["default", "emails", "low"]}

# QUEUES [] means any queue name, as in Django (test_aliases.py starts such a worker).
if os.environ.get("DBTASKS_TEST_ANY_QUEUE"):
    TASKS["default"]["QUEUES"] = []

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
# The browser tests' live server serves the admin's CSS and JavaScript from here.
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The level leads each line: tests check that a final failure is an ERROR.
    "formatters": {"levelled": {"format": "%(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "levelled"}},
    "loggers": {
        "django_dbtasks": {"handlers": ["console"], "level": "INFO"},
        # Django's own task log lines (on 5.2 the backport's), as a site would show them.
        "django.tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django_tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Apps a test adds (the --reload tests break and mend a temporary app's tasks.py).
INSTALLED_APPS += list(filter(None, os.environ.get("DBTASKS_TEST_EXTRA_APPS", "").split(",")))

# Modules a test wants imported at start-up (the --reload test watches one).
for _module in filter(None, os.environ.get("DBTASKS_TEST_IMPORT", "").split(",")):
    importlib.import_module(_module)
