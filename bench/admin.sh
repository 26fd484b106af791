#!/usr/bin/env bash
# The admin benchmark from nothing: its own PostgreSQL server, 1,000,000 jobs, the pages timed.
#   bash bench/admin.sh [--jobs N] [--requests N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh
if [ ! -x .venv/dj6/bin/python ]; then
  make_venv .venv/dj6 "$(find_python 3.12)" "Django>=6.0,<6.2" "dev"
fi
# Not bench/run.sh's port, so the two benchmarks can run side by side.
export DBTASKS_PG_PORT="${DBTASKS_PG_PORT:-54340}"
eval "$(bash scripts/postgres.sh start)"
trap 'bash scripts/postgres.sh stop' EXIT
.venv/dj6/bin/python bench/admin_bench.py "$@"
