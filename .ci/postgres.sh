# shellcheck shell=bash
# PostgreSQL for the distributed-study tests. Source this file, then:
#
#   pg_start   # initdb into a temp dir, start on 127.0.0.1:<free port>, create a db/user with a
#              # password, export PRUNESEARCH_PG_URL=postgresql+psycopg://user:pass@127.0.0.1:PORT/db
#   pg_stop    # stop that server by its PID and delete the temp dir
#
# Debian's server binaries are on the image but nothing runs; if they are missing, apt installs them.
# As root the server runs as the 'postgres' user (initdb refuses to run as root).
# Safe under `set -euo pipefail`.

_pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
  done | sort -V | tail -n 1
}

_pg_as_owner() {
  # run a command as the server's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local bin port pw dir user=prunesearch db=prunesearch
  bin="$(_pg_bin_dir)"
  if [ -z "$bin" ]; then
    echo "pg_start: PostgreSQL server binaries not found; installing postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    bin="$(_pg_bin_dir)"
  fi
  if [ -z "$bin" ]; then
    echo "pg_start: no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2
    return 1
  fi
  dir="$(mktemp -d /tmp/prunesearch-pg.XXXXXX)"
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  pw="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  # local socket: trust (only the owner can reach the 0700 dir); TCP: password (scram)
  _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -h 127.0.0.1 -p $port -c max_connections=200 -c fsync=off" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  _pg_as_owner "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE USER $user PASSWORD '$pw';" -c "CREATE DATABASE $db OWNER $user;" >/dev/null
  PRUNESEARCH_PG_DIR="$dir"
  PRUNESEARCH_PG_PID="$(head -n 1 "$dir/data/postmaster.pid")"
  PRUNESEARCH_PG_URL="postgresql+psycopg://$user:$pw@127.0.0.1:$port/$db"
  export PRUNESEARCH_PG_DIR PRUNESEARCH_PG_PID PRUNESEARCH_PG_URL
  echo "pg_start: PostgreSQL $(basename "$(dirname "$bin")") on 127.0.0.1:$port (pid $PRUNESEARCH_PG_PID)" >&2
}

pg_stop() {
  local pid="${PRUNESEARCH_PG_PID:-}" dir="${PRUNESEARCH_PG_DIR:-}" i
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true  # SIGINT = fast shutdown
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  if [ -n "$dir" ] && [ -d "$dir" ]; then rm -rf "$dir"; fi
  unset PRUNESEARCH_PG_PID PRUNESEARCH_PG_DIR PRUNESEARCH_PG_URL
  return 0
}
