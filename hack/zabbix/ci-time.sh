#!/usr/bin/env bash
# Measures what Zabbix adds to `make test`, cold and warm, and writes bench/zabbix-ci-time.md
# (which `go run ./bench -report` copies into docs/performance.md):
#  - cold: no bin/zabbix (install.sh downloads the SQL, the first start builds the template
#    database); with --packages, as root, the Debian packages are removed first, so install.sh
#    installs them as on a fresh machine;
#  - warm: everything cached, as on a second run.
# Each side times install.sh, then the tests that start a Zabbix (run with CI=true, so a
# Zabbix that cannot start fails them). Go's build cache is warmed first: compiling is not
# Zabbix's.
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=false
[ "${1:-}" = --packages ] && packages=true
out=bench/zabbix-ci-time.md
export CI=true

pkgs=(zabbix-frontend-php php8.2-cli php8.2-pgsql php8.2-bcmath php8.2-gd php8.2-mbstring php8.2-xml)
pure=(./internal/zabbixtest/ ./internal/backend/zabbix/ ./internal/backend/conformance/)
# The controllers' and the e2e Zabbix tests; each package also starts its control plane.
named=(./controllers/ ./test/e2e/)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
tests() {
  go test -count=1 "${pure[@]}" >/dev/null
  go test -count=1 -run 'Zabbix' "${named[@]}" >/dev/null
}

go test -count=1 -run '^$' "${pure[@]}" "${named[@]}" >/dev/null
load0=$(cut -d' ' -f1 /proc/loadavg)

if $packages; then
  [ "$(id -u)" -eq 0 ] || { echo "ci-time.sh --packages must run as root" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "${pkgs[@]}" >/dev/null
fi
rm -rf bin/zabbix
t0=$(now); hack/zabbix/install.sh >/dev/null; t1=$(now)
tests; t2=$(now)
t3=$(now); hack/zabbix/install.sh >/dev/null; t4=$(now)
tests; t5=$(now)
load1=$(cut -d' ' -f1 /proc/loadavg)

cold_install=$(secs "$t0" "$t1"); cold_tests=$(secs "$t1" "$t2")
warm_install=$(secs "$t3" "$t4"); warm_tests=$(secs "$t4" "$t5")
what="bin/zabbix removed"
$packages && what="bin/zabbix removed and the Debian packages uninstalled first"
{
  echo "| step | cold ($what) | warm |"
  echo "|---|---|---|"
  echo "| \`hack/zabbix/install.sh\` (\`make zabbix\`) | $cold_install s | $warm_install s |"
  echo "| the tests that start a Zabbix: \`${pure[*]}\` in full, \`-run Zabbix ${named[*]}\` | $cold_tests s | $warm_tests s |"
  echo "| **what Zabbix adds to \`make test\`** | **$(secs 0 "$(awk -v a="$cold_install" -v b="$cold_tests" 'BEGIN{print a+b}')") s** | **$(secs 0 "$(awk -v a="$warm_install" -v b="$warm_tests" 'BEGIN{print a+b}')") s** |"
  echo
  echo "Written by \`hack/zabbix/ci-time.sh$($packages && echo ' --packages')\` on $(date -u +%Y-%m-%dT%H:%M:%SZ) at commit $(git rev-parse --short=12 HEAD), $(nproc) CPUs, load average $load0 before and $load1 after. The package tests include the native half of the conformance table (about 3 s), and the two named packages each start a control plane (about 5 s each)."
} >"$out"
cat "$out"
