#!/usr/bin/env bash
# Install and run the example site: a web server and a worker, until Ctrl-C.
#   bash example_project/run.sh                 # SQLite in example_project/var/
#   DATABASE_URL=postgres://... bash example_project/run.sh
#   PORT=8001 bash example_project/run.sh       # another port (default 8000)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"
VENV="${EXAMPLE_VENV:-$ROOT/.venv/example}"
PORT="${PORT:-8000}"
export EXAMPLE_VAR_DIR="${EXAMPLE_VAR_DIR:-$PWD/var}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# python3 is 3.11 on a stock machine: Django 5.2 plus the django-tasks backport ([compat]).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[binary,compat]" dj-database-url
PY="$VENV/bin/python"

echo "== Database: ${DATABASE_URL:-SQLite in $EXAMPLE_VAR_DIR}"
"$PY" manage.py migrate --verbosity 0
"$PY" manage.py demo

# Each child gets its own session, so Ctrl-C reaches this script only, which then
# stops both once, politely (the worker lets running jobs finish).
setsid "$PY" manage.py runserver "127.0.0.1:$PORT" --noreload &
web=$!
setsid "$PY" manage.py runtasks --concurrency 2 &
worker=$!
stop() {
  trap - INT TERM
  echo "== Stopping the web server and the worker"
  kill -TERM "$web" "$worker" 2>/dev/null || true
  wait "$web" 2>/dev/null || true
  wait "$worker"
  echo "== Stopped"
  exit 0
}
trap stop INT TERM

cat <<TXT
== Running (Ctrl-C stops both)
   Site and signup:  http://127.0.0.1:$PORT/  and  http://127.0.0.1:$PORT/signup/
   Admin:            http://127.0.0.1:$PORT/admin/  (login admin / admin): jobs, schedules,
                     workers, and the queue overview
   CSV export:       the button on the site's front page (shows progress, then a download)
   Emails written:   $EXAMPLE_VAR_DIR/emails/
TXT
# wait returns when a signal arrives (the trap runs) or when a child exits.
wait -n "$web" "$worker" || true
echo "== A process exited on its own; stopping the other" >&2
kill -TERM "$web" "$worker" 2>/dev/null || true
wait
exit 1
