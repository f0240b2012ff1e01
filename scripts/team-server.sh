#!/usr/bin/env bash
# A team tracking server on this machine: PostgreSQL 15 (Debian's) for runs, and
# `mlflow server` on top of it with proxied artifact serving (clients need no shared
# filesystem). Both listen on 127.0.0.1 only. Idempotent: what already runs is kept.
# Prints the tracking URI on stdout.
#
#   scripts/team-server.sh [--dir DIR] [--port 5080] [--pg-port 55432] [--db mlflow]
#                          [--workers 2] [--python PY] [--auth] [--postgres-only] [--stop] [--install]
#
#   --dir            state: DIR/pg (the cluster), DIR/artifacts, DIR/*.log
#                    (default $TFREPRO_TEAM_DIR, else /var/lib/tfrepro-team as root,
#                    else ~/.local/share/tfrepro-team)
#   --python         the Python whose mlflow serves (default: .venv/bin/python here, else
#                    python3); it needs psycopg2: pip install 'tfrepro[server]'
#   --auth           MLflow's basic-auth app: users and permissions in DIR/basic_auth.db; the
#                    first start needs MLFLOW_AUTH_ADMIN_PASSWORD (the `admin` user's password);
#                    clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
#   --postgres-only  start PostgreSQL and create the database; print its URI instead
#   --stop           stop the mlflow server and PostgreSQL of DIR
#   --install        only install PostgreSQL 15 if it is missing (apt, as root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" = 0 ]; then dir=${TFREPRO_TEAM_DIR:-/var/lib/tfrepro-team}
else dir=${TFREPRO_TEAM_DIR:-$HOME/.local/share/tfrepro-team}; fi
port=5080 pg_port=55432 db=mlflow workers=2 python="" mode=start auth=""
while [ $# -gt 0 ]; do
  case $1 in --dir|--port|--pg-port|--db|--workers|--python)
    [ $# -ge 2 ] || { echo "team-server: $1 needs a value" >&2; exit 2; } ;;
  esac
  case $1 in
    --dir) dir=$2; shift ;;
    --port) port=$2; shift ;;
    --pg-port) pg_port=$2; shift ;;
    --db) db=$2; shift ;;
    --workers) workers=$2; shift ;;
    --python) python=$2; shift ;;
    --postgres-only) mode=postgres ;;
    --stop) mode=stop ;;
    --install) mode=install ;;
    --auth) auth=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "team-server: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in "$port" "$pg_port" "$workers"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "team-server: not a number: $n" >&2; exit 2; }
done
[[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "team-server: --db must be a plain lowercase name" >&2; exit 2; }
say() { echo "team-server: $*" >&2; }

pg_bin() {
  local bin=/usr/lib/postgresql/15/bin
  if [ ! -x "$bin/pg_ctl" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing postgresql (Debian's PostgreSQL 15)"
    [ -f /tmp/.tfrepro-apt-updated ] || { apt-get update -qq && touch /tmp/.tfrepro-apt-updated; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [ -x "$bin/pg_ctl" ] || { say "PostgreSQL 15 not found in $bin (apt-get install postgresql)"; exit 1; }
  echo "$bin"
}

if [ "$mode" = install ]; then pg_bin >/dev/null; exit 0; fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pgdata=$dir/pg/data
uri=http://127.0.0.1:$port
pg_uri=postgresql://postgres@127.0.0.1:$pg_port/$db

as_pg() {  # PostgreSQL refuses to run as root: run its tools as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mlflow_pid() {  # the pid of our server, if it still runs (a zombie or a reused pid does not)
  local pid state
  pid=$(cat "$dir/mlflow.pid" 2>/dev/null) || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "mlflow server" && echo "$pid"
}

healthy() {
  "${python:-python3}" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' \
    "$uri" 2>/dev/null
}

stop_all() {
  local pid bin
  if pid=$(mlflow_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || true  # its process group: gunicorn/uvicorn workers too
    for _ in $(seq 50); do mlflow_pid >/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "mlflow server stopped"
  fi
  rm -f "$dir/mlflow.pid"
  if [ -f "$pgdata/postmaster.pid" ]; then
    bin=$(pg_bin)
    as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
  fi
}

start_postgres() {
  local bin
  bin=$(pg_bin)
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$dir/pg"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir/pg"
      runuser -u postgres -- test -w "$dir/pg" \
        || { say "the postgres user cannot reach $dir/pg: choose a --dir it can traverse"; exit 1; }
    fi
    as_pg "$bin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { say "initdb failed; see $dir/initdb.log"; exit 1; }
  fi
  if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    # TCP on loopback only, no unix socket: nothing outside this machine can connect
    as_pg "$bin/pg_ctl" -D "$pgdata" -w -t 60 -l "$dir/pg/postgres.log" \
      -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null \
      || { say "PostgreSQL did not start; see $dir/pg/postgres.log"; exit 1; }
  fi
  if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "select 1 from pg_database where datname='$db'")" ]; then
    "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "create database $db" >/dev/null
  fi
}

auth_setup() {  # the basic-auth app's config, and a CSRF key that stays the same across restarts
  "$python" -c 'import flask_wtf' 2>/dev/null \
    || { say "$python lacks Flask-WTF, which --auth needs: pip install 'tfrepro[server]'"; exit 1; }
  if [ ! -f "$dir/basic_auth.db" ] && [ -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
    say "--auth: set MLFLOW_AUTH_ADMIN_PASSWORD for the first start (the admin user's password)"; exit 2
  fi
  printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/basic_auth.db\nadmin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
    "$dir" >"$dir/basic_auth.ini"
  [ -s "$dir/flask-secret" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/flask-secret")
  export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$dir/flask-secret")
  export MLFLOW_FLASK_SERVER_SECRET_KEY
}

start_mlflow() {
  if [ -z "$python" ]; then
    if [ -x "$here/.venv/bin/python" ]; then python=$here/.venv/bin/python; else python=python3; fi
  fi
  "$python" -c 'import mlflow, psycopg2' 2>/dev/null \
    || { say "$python lacks mlflow or psycopg2: pip install 'tfrepro[server]'"; exit 1; }
  if ! mlflow_pid >/dev/null; then
    healthy && { say "port $port already serves something that is not $dir's server"; exit 1; }
    mkdir -p "$dir/artifacts"
    local app=()
    [ -n "$auth" ] && { auth_setup; app=(--app-name basic-auth); }
    # first start against a new database creates the schema: ~20 s. umask: the user store
    # (password hashes) and the artifacts are the server's alone
    (umask 077; exec setsid "$python" -m mlflow server --backend-store-uri "$pg_uri" \
      --artifacts-destination "$dir/artifacts" --serve-artifacts "${app[@]}" \
      --host 127.0.0.1 --port "$port" --workers "$workers") >>"$dir/mlflow.log" 2>&1 </dev/null &
    echo $! >"$dir/mlflow.pid"
  fi
  for _ in $(seq 600); do
    healthy && return 0
    mlflow_pid >/dev/null || { say "mlflow server exited; see $dir/mlflow.log"; exit 1; }
    sleep 0.2
  done
  say "mlflow server did not answer on $uri within 120 s; see $dir/mlflow.log"
  exit 1
}

case $mode in
  stop) stop_all ;;
  postgres) start_postgres; echo "$pg_uri" ;;
  start) start_postgres; start_mlflow; echo "$uri" ;;
esac
