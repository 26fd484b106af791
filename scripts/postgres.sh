#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server for the tests and benchmarks.
#
#   eval "$(bash scripts/postgres.sh start)"   # exports DATABASE_URL, DBTASKS_PGDATA, ...
#   bash scripts/postgres.sh stop
#
# It installs Debian's PostgreSQL if no server binaries are found, creates a
# cluster in a temporary directory owned by the "postgres" user (initdb refuses
# to run as root), and listens on 127.0.0.1 only, with trust authentication.
set -euo pipefail

PORT="${DBTASKS_PG_PORT:-54329}"
STATE_FILE="${TMPDIR:-/tmp}/dbtasks-postgres-$PORT.env"

find_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bindir
  bindir=$(find_bindir)
  if [ -z "$bindir" ]; then
    echo "PostgreSQL server binaries not found; installing Debian's postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bindir=$(find_bindir)
  fi
  if [ -f "$STATE_FILE" ]; then
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    if as_postgres "$bindir/pg_ctl" -D "$DBTASKS_PGDATA" status >/dev/null 2>&1; then
      cat "$STATE_FILE"
      return
    fi
  fi
  local data
  data=$(mktemp -d "${TMPDIR:-/tmp}/dbtasks-pgdata.XXXXXX")
  if [ "$(id -u)" = 0 ]; then chown postgres: "$data"; fi
  as_postgres "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$data'
max_connections = 200
CONF
  as_postgres "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  cat >"$STATE_FILE" <<ENV
export DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/dbtasks
export DBTASKS_PGDATA=$data
export DBTASKS_PG_BINDIR=$bindir
ENV
  as_postgres "$bindir/createdb" -h 127.0.0.1 -p "$PORT" -U postgres dbtasks
  cat "$STATE_FILE"
}

stop() {
  if [ -f "$STATE_FILE" ]; then
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    as_postgres "$DBTASKS_PG_BINDIR/pg_ctl" -D "$DBTASKS_PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DBTASKS_PGDATA" "$STATE_FILE"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
