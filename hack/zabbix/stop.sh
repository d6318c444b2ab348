#!/usr/bin/env bash
# Stops what hack/zabbix/start.sh started in RUNDIR: PHP's web server, PostgreSQL and the
# watcher. Safe to call more than once, and on a directory where nothing runs.
# --remove: remove RUNDIR afterwards.
set -uo pipefail
remove=false
if [ "${1:-}" = --remove ]; then remove=true; shift; fi
rundir=${1:?usage: stop.sh [--remove] RUNDIR}
[ -d "$rundir" ] || exit 0
rundir=$(cd "$rundir" && pwd)
pg_bin=${ZABBIX_PG_BIN:-/usr/lib/postgresql/15/bin}

if [ "$(id -u)" -eq 0 ]; then
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
  as_pg() { (cd / && "$@"); }
fi

# alive PID: the process runs (a zombie, which init has not reaped yet, does not count).
alive() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# kill_group PIDFILE: SIGTERM to the process group the pid file names, SIGKILL after 5 s.
kill_group() {
  local pid i
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if [ -n "$pid" ] && [ "$pid" != $$ ]; then
    kill -TERM -- "-$pid" 2>/dev/null
    for i in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
    kill -KILL -- "-$pid" 2>/dev/null
  fi
  rm -f "$1"
}

status=0
kill_group "$rundir/php.pid"

pidfile="$rundir/pg/data/postmaster.pid"
if [ -f "$pidfile" ]; then
  if ! as_pg "$pg_bin/pg_ctl" -D "$rundir/pg/data" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
    # pg_ctl could not stop it (or it was gone and left its pid file): kill the postmaster.
    pid=$(head -n1 "$pidfile" 2>/dev/null)
    if [ -n "$pid" ] && alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null
      echo "zabbix stop.sh: PostgreSQL (pid $pid) did not stop in 30 s and was killed" >&2
      status=1
    fi
    rm -f "$pidfile"
  fi
fi

# The watcher last: when it runs this script, its pid is this script's, which kill_group skips.
kill_group "$rundir/watcher.pid"

if $remove; then
  rm -rf "$rundir"
fi
exit $status
