# PostgreSQL for the database tests, sourced by .ci/run: a throwaway server on 127.0.0.1 only.
#
#   postgres_start  install Debian's package when it is missing (as root), start a server with its
#                   own cluster in a temporary folder, and export TVMQ_TEST_POSTGRES_URL (without
#                   the password) and PGPASSWORD; when it cannot, say why and return 1 (the tests
#                   that need the server then skip with the reason)
#   postgres_stop   stop that server and remove its folder (nothing when none was started)
#
# A TVMQ_TEST_POSTGRES_URL already set names the caller's own server: nothing is started.
# TVMQ_CI_POSTGRES_PORT chooses the port (default 55432).

TVMQ_CI_POSTGRES_DIR=""

_postgres_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1; }

_postgres_as_owner() {  # the server's programs refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_start() {
  [ -z "${TVMQ_TEST_POSTGRES_URL:-}" ] || return 0
  if [ -z "$(_postgres_bin)" ] && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 || true
  fi
  local bin port password dir
  bin="$(_postgres_bin)"
  if [ -z "$bin" ]; then
    echo "note: PostgreSQL is not installed; the database tests run on SQLite only"
    return 1
  fi
  port="${TVMQ_CI_POSTGRES_PORT:-55432}"
  dir="$(mktemp -d /tmp/tvmq-postgres.XXXXXX)"
  TVMQ_CI_POSTGRES_DIR="$dir"
  password="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  (umask 077 && printf '%s\n' "$password" >"$dir/password")
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; fi
  if _postgres_as_owner "$bin/initdb" -D "$dir/data" -U tvmq --pwfile="$dir/password" -A scram-sha-256 \
       >"$dir/initdb.log" 2>&1 \
     && _postgres_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
       -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null 2>&1; then
    rm -f "$dir/password"
    export PGPASSWORD="$password"
    export TVMQ_TEST_POSTGRES_URL="postgresql+psycopg://tvmq@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port for the database tests"
    return 0
  fi
  echo "note: PostgreSQL did not start; the database tests run on SQLite only. Its log:"
  tail -n 5 "$dir/initdb.log" "$dir/server.log" 2>/dev/null || true
  postgres_stop
  return 1
}

postgres_stop() {
  [ -n "$TVMQ_CI_POSTGRES_DIR" ] || return 0
  if [ -f "$TVMQ_CI_POSTGRES_DIR/data/postmaster.pid" ]; then
    _postgres_as_owner "$(_postgres_bin)/pg_ctl" -D "$TVMQ_CI_POSTGRES_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$TVMQ_CI_POSTGRES_DIR"
  TVMQ_CI_POSTGRES_DIR=""
}
