#!/usr/bin/env bash
# Run the benchmark from nothing: a virtualenv, its own PostgreSQL server, the table.
#   bash bench/run.sh [--quick] [--runs N] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh
make_venv .venv/dj6 "$(find_python 3.12)" "Django>=6.0,<6.2" "dev"
# pgqueuer, the peer the benchmark measures beside us: a benchmark-only tool, in a
# virtualenv of its own (never a dependency of django-dbtasks, never in the test
# virtualenvs). Without it (no network) the benchmark runs and says so.
if [ ! -x .venv/pgqueuer/bin/python ]; then
  "$(find_python 3.12)" -m venv .venv/pgqueuer
fi
.venv/pgqueuer/bin/python -m pip install -q --disable-pip-version-check "pgqueuer>=1.6,<2" asyncpg \
  || echo "pgqueuer could not be installed: the benchmark runs without it" >&2
export DBTASKS_PG_PORT="${DBTASKS_PG_PORT:-54339}"
eval "$(bash scripts/postgres.sh start)"
trap 'bash scripts/postgres.sh stop' EXIT
.venv/dj6/bin/python bench/bench.py "$@"
