#!/usr/bin/env bash
# Run the benchmark from nothing: a virtualenv, its own PostgreSQL server, the table.
#   bash bench/run.sh [--quick] [--runs N] [--json PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh
make_venv .venv/dj6 "$(find_python 3.12)" "Django>=6.0,<6.2" "dev"
export DBTASKS_PG_PORT="${DBTASKS_PG_PORT:-54339}"
eval "$(bash scripts/postgres.sh start)"
trap 'bash scripts/postgres.sh stop' EXIT
.venv/dj6/bin/python bench/bench.py "$@"
