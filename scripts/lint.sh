#!/usr/bin/env bash
# Static checks: ruff (lint and format), mypy with django-stubs, the import contracts
# of .importlinter, and no missing migration.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh
if [ ! -x .venv/dj6/bin/ruff ] || [ ! -x .venv/dj6/bin/lint-imports ]; then ensure_venvs; fi
.venv/dj6/bin/ruff check .
.venv/dj6/bin/ruff format --check .
.venv/dj6/bin/mypy django_dbtasks
# Django 6 only: the contracts name django.tasks, which Django 5.2 does not have.
.venv/dj6/bin/lint-imports --no-cache
for venv in dj6 dj52; do
  DJANGO_SETTINGS_MODULE=tests.settings ".venv/$venv/bin/python" -m django \
    makemigrations --check --dry-run django_dbtasks
done
