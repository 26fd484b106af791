#!/usr/bin/env bash
# Install everything and run the whole test suite, on a machine with nothing set up.
#
#   bash scripts/test.sh            # Django 6 (Python 3.12) and Django 5.2 (Python 3.11),
#                                   # each on PostgreSQL and on SQLite
#   bash scripts/test.sh -k retries # extra arguments go to pytest
#
#   bash scripts/test.sh -m "not slow"  # the quick tier: no chaos, restarts or fuzzing
#   bash scripts/test.sh -m turns       # the worker loop in-process, turn by turn (seconds)
#
# It starts its own PostgreSQL server (scripts/postgres.sh) and stops it at the end.
# DBTASKS_MATRIX="dj6-postgres dj52-sqlite" runs a subset of the matrix.
# The slow tests (marker "slow": chaos, supervisord restarts, worker kills) are about
# processes more than versions: they run on DBTASKS_SLOW_ON (by default one combination
# per database and per Python), the rest of the suite on every combination.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh

ensure_venvs

# shellcheck disable=SC1090
eval "$(bash scripts/postgres.sh start)"
trap 'bash scripts/postgres.sh stop' EXIT

status=0
summary=()
for combo in ${DBTASKS_MATRIX:-dj6-postgres dj6-sqlite dj52-postgres dj52-sqlite}; do
  venv=".venv/${combo%%-*}"
  database="${combo##*-}"
  echo "=== $combo: $("$venv/bin/python" -c 'import django, sys; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")'), $database"
  if [ "$database" = postgres ]; then url="$DATABASE_URL"; else url=""; fi
  tier=()
  case " ${DBTASKS_SLOW_ON:-dj6-postgres dj52-sqlite} " in
    *" $combo "*) ;;
    *) tier=(-m "not slow") ;;  # an -m of the caller's, coming after, wins
  esac
  if DATABASE_URL="$url" "$venv/bin/python" -m pytest -q "${tier[@]}" "$@"; then
    summary+=("$combo: passed")
  else
    summary+=("$combo: FAILED")
    status=1
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
