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
# DBTASKS_MATRIX="dj6-postgres dj52-sqlite" runs a subset of the matrix; a Django
# version's PostgreSQL and SQLite runs go at the same time (DBTASKS_SERIAL=1: not).
# The slow tests (marker "slow": chaos, supervisord restarts, worker kills) are about
# processes more than versions: they run on DBTASKS_SLOW_ON (by default one combination
# per database and per Python), the rest of the suite on every combination.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh

ensure_venvs

# shellcheck disable=SC1090
eval "$(bash scripts/postgres.sh start)"

run_combo() {  # COMBO [pytest arguments]: one combination of the matrix
  local combo="$1" venv database url tier=()
  shift
  venv=".venv/${combo%%-*}"
  database="${combo##*-}"
  echo "=== $combo: $("$venv/bin/python" -c 'import django, sys; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")'), $database"
  if [ "$database" = postgres ]; then url="$DATABASE_URL"; else url=""; fi
  case " ${DBTASKS_SLOW_ON:-dj6-postgres dj52-sqlite} " in
    *" $combo "*) ;;
    *) tier=(-m "not slow") ;;  # an -m of the caller's, coming after, wins
  esac
  DATABASE_URL="$url" "$venv/bin/python" -m pytest -q "${tier[@]}" "$@"
}

# The two databases of one Django version run at the same time: the suite mostly
# waits on worker subprocesses, so two at once take little longer than one, and a
# PostgreSQL and a SQLite run share no database. Each line is prefixed with its
# combination. DBTASKS_SERIAL=1 runs one combination at a time.
status=0
summary=()
results=$(mktemp -d)
trap 'rm -rf "$results"; bash scripts/postgres.sh stop' EXIT
matrix=(${DBTASKS_MATRIX:-dj6-postgres dj6-sqlite dj52-postgres dj52-sqlite})
for version in $(printf '%s\n' "${matrix[@]%%-*}" | awk '!seen[$0]++'); do
  for combo in "${matrix[@]}"; do
    [ "${combo%%-*}" = "$version" ] || continue
    (
      set +e
      run_combo "$combo" "$@" 2>&1 | sed -u "s/^/$combo | /"
      echo "${PIPESTATUS[0]}" >"$results/$combo"
    ) &
    if [ -n "${DBTASKS_SERIAL:-}" ]; then wait; fi
  done
  wait
done
for combo in "${matrix[@]}"; do
  if [ "$(cat "$results/$combo")" = 0 ]; then
    summary+=("$combo: passed")
  else
    summary+=("$combo: FAILED")
    status=1
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
