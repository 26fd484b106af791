"""Imported by tests/settings.py in a docs test's worker (DBTASKS_TEST_IMPORT).

Installs this app, so the worker discovers its ``tasks`` module as it would a
project's, and keeps the tasks' emails in memory.
"""

import sys

settings = sys.modules["tests.settings"]
settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.docs_app"]
settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
