#!/usr/bin/env bash
# Install and run the example's main job: sign up users, whose verification
# emails are enqueued in the signup transaction and sent by a worker.
# SQLite by default; PostgreSQL when DATABASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"
VENV="$ROOT/.venv/example"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# python3 is 3.11 on a stock machine: Django 5.2 plus the django-tasks backport ([compat]).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[binary,compat]" dj-database-url
PY="$VENV/bin/python"

echo "== Database: ${DATABASE_URL:-SQLite in example_project/var/}"
"$PY" manage.py migrate --verbosity 0
"$PY" manage.py demo --users 3
echo "== Running a worker until the queue is empty (manage.py runtasks --burst)"
"$PY" manage.py runtasks --burst --concurrency 2
echo "== Emails written by the worker (example_project/var/emails/):"
ls -1 var/emails | tail -n 3
echo "== Last jobs:"
"$PY" manage.py shell -c "
from django_dbtasks.models import Job
for job in Job.objects.order_by('-id')[:3]:
    print(f'  job {job.id}: {job.task_path} {job.status} -> {job.return_value}')
"
