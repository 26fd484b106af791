"""Example project settings: SQLite by default, PostgreSQL when DATABASE_URL is set."""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_dbtasks",
    "accounts",
    "blog",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "config.urls"
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
WSGI_APPLICATION = "config.wsgi.application"

# An empty DATABASE_URL (``DATABASE_URL= ./run.sh``) means the default too.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'example.sqlite3'}",
        conn_max_age=60,
    )
}
if os.environ.get("EXAMPLE_TEST_DB_NAME"):
    # A worker started by the example's tests uses the test database.
    DATABASES["default"]["NAME"] = os.environ["EXAMPLE_TEST_DB_NAME"]
    DATABASES["default"]["TEST"] = {"NAME": os.environ["EXAMPLE_TEST_DB_NAME"]}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web server read while a worker writes.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}
    # A file, not memory: the worker processes the tests start must see it.
    DATABASES["default"].setdefault("TEST", {"NAME": str(VAR_DIR / "test.sqlite3")})

TASKS = {
    "default": {
        "BACKEND": "django_dbtasks.backend.DatabaseBackend",
        "QUEUES": ["default", "emails"],
    }
}

EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = VAR_DIR / "emails"
DEFAULT_FROM_EMAIL = "hello@example.com"

# The blog's flaky search engine; the admin shows this argument redacted.
SEARCH_ENGINE_API_KEY = os.environ.get("SEARCH_ENGINE_API_KEY", "demo-key-not-secret")
# The CSV export is slow on purpose, so its progress can be watched.
EXPORT_SECONDS_PER_POST = float(os.environ.get("EXPORT_SECONDS_PER_POST", "0.2"))

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/admin/login/"
