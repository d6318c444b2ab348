#!/usr/bin/env bash
# Starts a real Zabbix 6.0 API server for tests and `make dev`, with state in RUNDIR:
#   RUNDIR/pg/          a private PostgreSQL 15 cluster (data/, its log, its unix socket; no TCP)
#   RUNDIR/frontend/    a per-run copy of /usr/share/zabbix (symlinks, plus real copies of the
#                       few files that decide where the configuration is read from) with its own
#                       conf/zabbix.conf.php pointing at RUNDIR/pg; /etc/zabbix is never read
#   RUNDIR/php.log      PHP's built-in web server on 127.0.0.1:<free port>
#   RUNDIR/zabbix.json  and zabbix.env: URL, the Super-admin token, user, role and group ids
# It prints the path of zabbix.env on stdout when the API answers.
#
# The database comes from a pristine cluster cached under bin/zabbix/<version>/template-<key>:
# built once (initdb, schema/images/data SQL, bootstrap.php, VACUUM; 15-30 s) and copied per
# run. So every run starts with the same objects, ids and admin token value.
# A RUNDIR that already holds a cluster (a second `make dev`) is started as it is.
#
# Environment:
#   ZABBIX_PORT=N               listen on this port (default: a free one, or the last one of RUNDIR)
#   ZABBIX_STOP_WITH_PID=PID    run stop.sh when process PID exits (a test binary that is killed)
#   ZABBIX_STOP_REMOVES_DIR=1   ...and remove RUNDIR then
#   ZABBIX_PG_BIN=DIR           PostgreSQL's binaries (default /usr/lib/postgresql/15/bin)
# stop.sh RUNDIR stops everything this started.
set -euo pipefail

# A SIGTERM (a Go test's timeout, its binary's death) runs the EXIT traps, which stop what started.
trap 'exit 143' TERM INT HUP

here=$(cd "$(dirname "$0")" && pwd)
rundir=${1:?usage: start.sh RUNDIR}
mkdir -p "$rundir"
rundir=$(cd "$rundir" && pwd)
pg_bin=${ZABBIX_PG_BIN:-/usr/lib/postgresql/15/bin}
frontend_src=/usr/share/zabbix

# alive PID: the process runs (a zombie, which init has not reaped yet, does not count).
alive() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

log() { echo "zabbix start.sh: $*" >&2; }
die() { log "$*"; exit 1; }

case "$rundir" in
  *[[:space:]\'\"\\]*) die "RUNDIR must not contain spaces, quotes or backslashes: $rundir" ;;
esac
# A unix socket path has at most 107 bytes.
socket="$rundir/pg/.s.PGSQL.5432"
[ ${#socket} -lt 100 ] || die "RUNDIR is too long for PostgreSQL's socket path ($socket); use a shorter one, e.g. mktemp -d /tmp/zabbix-XXXXXX"

cache=$(ZABBIX_PG_BIN="$pg_bin" "$here/install.sh" --check) || exit 2

# PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
if [ "$(id -u)" -eq 0 ]; then
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
  chown_pg() { chown -R postgres:postgres "$@"; }
else
  as_pg() { (cd / && "$@"); }
  chown_pg() { :; }
fi

# start_postgres DIR: starts the cluster in DIR/pg/data, listening on DIR/pg's socket only.
start_postgres() {
  local dir=$1
  as_pg "$pg_bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 120 -s \
    -o "-c unix_socket_directories='$dir/pg'" start >&2 \
    || die "PostgreSQL did not start; its log, $dir/pg/postgres.log, ends with: $(tail -n 5 "$dir/pg/postgres.log" 2>/dev/null)"
}

stop_postgres() {
  local dir=$1
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$dir/pg/data" -m fast -w -t 60 -s stop >&2 || true
  fi
}

psql_zabbix() { as_pg "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$1/pg" -U zabbix -d zabbix "${@:2}"; }

# link_dir SRC DST [EXCEPT...]: DST becomes a real directory of symlinks to SRC's entries, except
# the named ones (one ln for the whole directory).
link_dir() {
  local src=$1 dst=$2 e
  shift 2
  local -a entries=()
  mkdir -p "$dst"
  for e in "$src"/* "$src"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case " $* " in *" ${e##*/} "*) continue ;; esac
    entries+=("$e")
  done
  [ ${#entries[@]} -eq 0 ] || ln -s "${entries[@]}" "$dst/"
}

# make_frontend DIR: DIR/frontend is /usr/share/zabbix as symlinks, except the files on the path
# from api_jsonrpc.php to the configuration file. PHP resolves symlinks in __FILE__; api_jsonrpc.php
# requires APP.php, and APP.php ZBase.php, relative to their own __FILE__, and the frontend's root
# directory (where its classes are loaded from) is ZBase.php's, so those must be real files. Debian's
# CConfigFile.php names /etc/zabbix/zabbix.conf.php, so the copy is rewritten to the run's own file.
make_frontend() {
  local dir=$1 f
  rm -rf "$dir/frontend"
  link_dir "$frontend_src" "$dir/frontend" include conf api_jsonrpc.php
  link_dir "$frontend_src/conf" "$dir/frontend/conf" zabbix.conf.php
  link_dir "$frontend_src/include" "$dir/frontend/include" classes
  link_dir "$frontend_src/include/classes" "$dir/frontend/include/classes" core
  link_dir "$frontend_src/include/classes/core" "$dir/frontend/include/classes/core" APP.php ZBase.php CConfigFile.php
  for f in api_jsonrpc.php include/classes/core/APP.php include/classes/core/ZBase.php include/classes/core/CConfigFile.php; do
    cp "$frontend_src/$f" "$dir/frontend/$f"
  done
  sed -i "s|const CONFIG_FILE_PATH = '[^']*';|const CONFIG_FILE_PATH = '$dir/frontend/conf/zabbix.conf.php';|" \
    "$dir/frontend/include/classes/core/CConfigFile.php"
  grep -q "const CONFIG_FILE_PATH = '$dir/frontend/conf/zabbix.conf.php';" "$dir/frontend/include/classes/core/CConfigFile.php" \
    || die "could not point $frontend_src/include/classes/core/CConfigFile.php's CONFIG_FILE_PATH at the run's configuration"
  cat >"$dir/frontend/conf/zabbix.conf.php" <<PHP
<?php
// Written by hack/zabbix/start.sh for this run only.
\$DB['TYPE']           = 'POSTGRESQL';
\$DB['SERVER']         = '$dir/pg';
\$DB['PORT']           = '0';
\$DB['DATABASE']       = 'zabbix';
\$DB['USER']           = 'zabbix';
\$DB['PASSWORD']       = '';
\$DB['SCHEMA']         = '';
\$DB['ENCRYPTION']     = false;
\$DB['KEY_FILE']       = '';
\$DB['CERT_FILE']      = '';
\$DB['CA_FILE']        = '';
\$DB['VERIFY_HOST']    = false;
\$DB['CIPHER_LIST']    = '';
\$DB['VAULT_URL']      = '';
\$DB['VAULT_DB_PATH']  = '';
\$DB['VAULT_TOKEN']    = '';
\$DB['DOUBLE_IEEE754'] = true;
\$ZBX_SERVER_NAME      = 'apitoken-operator test';
\$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
PHP
}

# start_php DIR [PORT]: PHP's built-in server for DIR/frontend on 127.0.0.1; writes DIR/php.pid
# (it leads its own process group) and DIR/php.port. Without PORT it tries random ports below the
# kernel's ephemeral range (where the ports of other tests' ":0" listeners and of connections
# come from), so a port taken meanwhile is rare, and then another one is tried.
start_php() {
  local dir=$1 wanted=${2:-} port pid attempt i low
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  [ "$low" -gt 11024 ] || low=32768
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=${wanted:-$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))}
    setsid php -d opcache.enable_cli=1 -d date.timezone=UTC -d memory_limit=512M -d post_max_size=16M \
      -d max_execution_time=300 -S "127.0.0.1:$port" -t "$dir/frontend" </dev/null >>"$dir/php.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/php.pid"
    for i in $(seq 1 400); do
      alive "$pid" || break
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$port" >"$dir/php.port"
        return 0
      fi
      sleep 0.05
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/php.pid"
    if [ -n "$wanted" ] || ! tail -n 3 "$dir/php.log" | grep -q "Address already in use"; then
      die "PHP's web server did not start on 127.0.0.1:$port; $dir/php.log ends with: $(tail -n 5 "$dir/php.log")"
    fi
  done
  die "PHP's web server found no free port in 10 attempts"
}

stop_php() {
  local dir=$1 pid i
  [ -f "$dir/php.pid" ] || return 0
  pid=$(cat "$dir/php.pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/php.pid"
}

# build_template OUT: a cluster with the Zabbix schema and data and the bootstrap objects,
# cleanly shut down, compacted, in OUT/pgdata, with the bootstrap's zabbix.json in OUT.
build_template() {
  local out=$1 tmp
  log "building the pristine Zabbix database $out (once per version; 15-30 s)"
  tmp=$(mktemp -d /tmp/zabbix-template.XXXXXX)
  # shellcheck disable=SC2064
  trap "stop_php '$tmp'; stop_postgres '$tmp'; rm -rf '$tmp'" EXIT
  chmod 0755 "$tmp"
  mkdir "$tmp/pg"
  chown_pg "$tmp/pg"
  as_pg "$pg_bin/initdb" -D "$tmp/pg/data" -U zabbix -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=reject \
    --no-sync >"$tmp/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$tmp/initdb.log")"
  cp "$here/postgresql.conf" "$tmp/pg/data/zabbix-test.conf"
  echo "include 'zabbix-test.conf'" >>"$tmp/pg/data/postgresql.conf"
  chown_pg "$tmp/pg/data"
  start_postgres "$tmp"
  as_pg "$pg_bin/createdb" -h "$tmp/pg" -U zabbix zabbix
  local f
  for f in schema images data; do
    psql_zabbix "$tmp" <"$cache/sql/$f.sql" >/dev/null
  done
  make_frontend "$tmp"
  start_php "$tmp"
  php "$here/bootstrap.php" "http://127.0.0.1:$(cat "$tmp/php.port")" "$tmp" >&2
  stop_php "$tmp"
  psql_zabbix "$tmp" -c 'VACUUM (FREEZE, ANALYZE)' -c 'CHECKPOINT'
  stop_postgres "$tmp"
  # After a clean shutdown the WAL holds nothing the data files lack: keep one segment, not five.
  as_pg "$pg_bin/pg_resetwal" "$tmp/pg/data" >/dev/null
  mkdir "$tmp/template"
  mv "$tmp/pg/data" "$tmp/template/pgdata"
  grep -v '"url"\|"apiUrl"' "$tmp/zabbix.json" >"$tmp/template/zabbix.json"
  rm -rf "$out.new"
  mv "$tmp/template" "$out.new"
  mv -T "$out.new" "$out"
  trap - EXIT
  rm -rf "$tmp"
}

# The template is keyed by what shapes it, so an edit to the bootstrap or the PostgreSQL settings
# rebuilds it; raise template_format when build_template changes.
template_format=1
key=$( (echo "$template_format"; cat "$here/bootstrap.php" "$here/postgresql.conf") | sha256sum | cut -c1-12)
template="$cache/template-$key"

[ ! -f "$rundir/pg/data/postmaster.pid" ] && [ ! -f "$rundir/php.pid" ] \
  || die "Zabbix already runs in $rundir (stop it with hack/zabbix/stop.sh $rundir)"

# What stops this run when start.sh fails, and what the watcher runs.
stop_args=("$rundir")
[ "${ZABBIX_STOP_REMOVES_DIR:-}" = 1 ] && stop_args=(--remove "$rundir")
started=false
# shellcheck disable=SC2317
cleanup_on_failure() { $started || "$here/stop.sh" "${stop_args[@]}" >/dev/null 2>&1 || true; }

if [ ! -d "$rundir/pg/data" ]; then
  if [ ! -d "$template" ]; then
    exec 9>"$cache/.template.lock"
    flock 9
    if [ ! -d "$template" ]; then
      build_template "$template"
      # Older templates (other keys) are no longer used.
      find "$cache" -maxdepth 1 -name 'template-*' ! -name "template-$key" -exec rm -rf {} +
    fi
    exec 9>&-
  fi
  trap cleanup_on_failure EXIT
  [ "$(id -u)" -ne 0 ] || chmod go+x "$rundir"
  mkdir -p "$rundir/pg"
  cp -a "$template/pgdata" "$rundir/pg/data"
  cp "$template/zabbix.json" "$rundir/zabbix.json"
  chown_pg "$rundir/pg"
  as_pg test -r "$rundir/pg/data/PG_VERSION" || die "the postgres user cannot reach $rundir (a parent directory is not searchable); use a directory under /tmp"
elif [ ! -f "$rundir/zabbix.json" ]; then
  die "$rundir/pg/data exists but $rundir/zabbix.json does not: remove $rundir to start afresh"
else
  trap cleanup_on_failure EXIT
fi

if [ -n "${ZABBIX_STOP_WITH_PID:-}" ]; then
  # tail --pid polls the process once a second without forking. stop.sh kills this watcher.
  setsid bash -c 'tail --pid="$1" -f /dev/null; shift; exec "$@"' zabbix-watch "$ZABBIX_STOP_WITH_PID" \
    "$here/stop.sh" "${stop_args[@]}" </dev/null >/dev/null 2>&1 &
  echo "$!" >"$rundir/watcher.pid"
fi

start_postgres "$rundir"
make_frontend "$rundir"
port=${ZABBIX_PORT:-}
if [ -z "$port" ] && [ -f "$rundir/php.port" ]; then
  # The port of the last run keeps the URL (and so what a dev environment stored) unchanged.
  last=$(cat "$rundir/php.port")
  (exec 3<>"/dev/tcp/127.0.0.1/$last") 2>/dev/null || port=$last
fi
start_php "$rundir" "$port"
php "$here/bootstrap.php" --reuse "http://127.0.0.1:$(cat "$rundir/php.port")" "$rundir" >&2
started=true
echo "$rundir/zabbix.env"
