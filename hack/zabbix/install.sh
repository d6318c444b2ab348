#!/usr/bin/env bash
# Makes a real Zabbix 6.0 API server startable on this machine, offline, from Debian packages:
#  - installs the frontend and PHP 8.2's CLI with the extensions it needs (as root, only the
#    ones missing; --no-install-recommends, so no Apache or PHP-FPM service is started);
#  - extracts the PostgreSQL schema, images and data SQL of zabbix-server-pgsql (the server
#    package itself is not installed: the API needs no zabbix_server daemon) into
#    bin/zabbix/<frontend version>/sql of the repository.
# It prints that cache directory on stdout, for start.sh. When everything is there it only runs
# dpkg-query and a few stats (well under a second).
# --check: install nothing; fail (exit 2) with what is missing.
set -euo pipefail

packages=(zabbix-frontend-php php8.2-cli php8.2-pgsql php8.2-bcmath php8.2-gd php8.2-mbstring php8.2-xml)
pg_bin=${ZABBIX_PG_BIN:-/usr/lib/postgresql/15/bin}
repo=$(cd "$(dirname "$0")/../.." && pwd)
check_only=false
[ "${1:-}" = "--check" ] && check_only=true

missing() { # prints the packages that are not installed (one dpkg-query for all: fast)
  local -A installed=()
  local name status
  while read -r name status; do
    [ "$status" = installed ] && installed[$name]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
  for p in "${packages[@]}"; do
    [ -n "${installed[$p]:-}" ] || echo "$p"
  done
}

if [ ! -x "$pg_bin/postgres" ] || [ ! -x "$pg_bin/initdb" ]; then
  if [ -n "${ZABBIX_PG_BIN:-}" ]; then
    echo "install.sh: no PostgreSQL in ZABBIX_PG_BIN=$pg_bin (postgres and initdb)" >&2
    exit 2
  fi
  # Debian's PostgreSQL 15 (bookworm's own); only its binaries are used, on a private cluster.
  packages+=(postgresql-15)
fi

mapfile -t todo < <(missing)
if [ ${#todo[@]} -gt 0 ]; then
  if $check_only; then
    echo "install.sh: missing Debian packages: ${todo[*]} (run hack/zabbix/install.sh as root)" >&2
    exit 2
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing Debian packages: ${todo[*]}; run as root: apt-get install -y --no-install-recommends ${todo[*]}" >&2
    exit 2
  fi
  echo "install.sh: installing ${todo[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${todo[@]}" >&2; then
    # Stale package lists name files the mirror no longer has: refresh once.
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${todo[@]}" >&2
  fi
fi

# The SQL must match the frontend's database version, so the cache is keyed by the installed
# frontend's version (without the epoch), and the server package must be the same upstream release.
frontend_version=$(dpkg-query -W -f='${Version}' zabbix-frontend-php)
version=${frontend_version#*:}
upstream=${version%%+*}
upstream=${upstream%%-*}
cache="$repo/bin/zabbix/$version"
sql="$cache/sql"
if [ ! -s "$sql/schema.sql" ] || [ ! -s "$sql/images.sql" ] || [ ! -s "$sql/data.sql" ]; then
  if $check_only; then
    echo "install.sh: no Zabbix SQL in $sql (run hack/zabbix/install.sh)" >&2
    exit 2
  fi
  echo "install.sh: downloading zabbix-server-pgsql for its SQL into $sql" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # apt-get download runs its download as the _apt user: give it a directory it may write.
  chmod 0777 "$tmp"
  (cd "$tmp" && apt-get download -q "zabbix-server-pgsql" >&2)
  deb=$(ls "$tmp"/zabbix-server-pgsql_*.deb)
  server_version=$(dpkg-deb -f "$deb" Version)
  server_upstream=${server_version#*:}
  server_upstream=${server_upstream%%+*}
  server_upstream=${server_upstream%%-*}
  if [ "$server_upstream" != "$upstream" ]; then
    echo "install.sh: zabbix-server-pgsql $server_version does not match zabbix-frontend-php $frontend_version" >&2
    exit 2
  fi
  dpkg-deb -x "$deb" "$tmp/root"
  mkdir -p "$tmp/sql"
  for f in schema images data; do
    src=$(find "$tmp/root" -name "$f.sql.gz" -o -name "$f.sql" | head -n1)
    if [ -z "$src" ]; then
      echo "install.sh: $f.sql not found in $deb" >&2
      exit 2
    fi
    case "$src" in
      *.gz) gzip -dc "$src" >"$tmp/sql/$f.sql" ;;
      *) cp "$src" "$tmp/sql/$f.sql" ;;
    esac
  done
  echo "$server_version" >"$tmp/sql/zabbix-server-pgsql.version"
  rm -rf "$sql"
  mv "$tmp/sql" "$sql"
fi
echo "$cache"
