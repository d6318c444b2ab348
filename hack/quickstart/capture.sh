#!/usr/bin/env bash
# Writes docs/quickstart-output.txt, and the README's two "real output" blocks (capture:quickstart
# and capture:plugin), from a real, cold `make dev` and the commands it prints, so the docs show
# what the current code does (run by `make quickstart-output`).
# It uses its own state directory, so a `make dev` of yours is left alone, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
dir=$(mktemp -d /tmp/apitoken-quickstart.XXXXXX)
out=docs/quickstart-output.txt
log=$dir/make-dev.log
# Its own session, so that Ctrl-C's SIGINT reaches every process of it, as in a terminal.
trap 'kill -INT -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

: >"$log"
setsid make --no-print-directory dev DEV_DIR="$dir/state" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^==> All' "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "make dev exited" >&2; exit 1; }
  sleep 1
done
grep -q '^==> All' "$log" || { cat "$log"; echo "make dev did not get ready in 300 s" >&2; exit 1; }
export KUBECONFIG=$dir/state/kubeconfig
# Use the ReadOnly token once, as the printed steps do, then let the inventory see the use.
run() { echo "\$ $*"; eval "$@" 2>&1; echo; }
{
  echo "# Output of a real, cold \`make dev\` and of the commands it prints, written by"
  echo "# hack/quickstart/capture.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) at commit $(git rev-parse --short=12 HEAD)."
  echo "# The state directory is a temporary one (DEV_DIR); the manager's log lines are cut."
  echo
  echo "\$ make dev"
  sed -n '1,/^The manager.s logs follow/p' "$log" | grep -v '^[0-9]\{4\}-[0-9-]*T' 
  echo "..."
  echo
  echo "# In another terminal:"
  echo "\$ export KUBECONFIG=\$PWD/.dev/kubeconfig"
  run kubectl get apitokens -A
  TOKEN=$(kubectl get secret grafana-status-panel -o jsonpath='{.data.token}' | base64 -d)
  URL=$(kubectl get secret grafana-status-panel -o jsonpath='{.data.url}' | base64 -d)
  echo "\$ TOKEN=\$(kubectl get secret grafana-status-panel -o jsonpath='{.data.token}' | base64 -d)"
  echo "\$ URL=\$(kubectl get secret grafana-status-panel -o jsonpath='{.data.url}' | base64 -d)"
  echo "\$ curl -s -w ' HTTP %{http_code}\n' -H \"Authorization: Bearer \$TOKEN\" \"\$URL/boards\""
  curl -s -w ' HTTP %{http_code}\n' -H "Authorization: Bearer $TOKEN" "$URL/boards"
  echo "\$ curl -s -w ' HTTP %{http_code}\n' -H \"Authorization: Bearer \$TOKEN\" -H 'Content-Type: application/json' -d '{\"name\":\"from-curl\"}' \"\$URL/boards\""
  curl -s -w ' HTTP %{http_code}\n' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name":"from-curl"}' "$URL/boards"
  echo
  unset TOKEN
  # The inventory reads last use once per sync interval (one minute in make dev).
  for _ in $(seq 1 90); do
    [ -n "$(kubectl get apitoken grafana-status-panel -o jsonpath='{.status.lastUsedAt}')" ] && break
    sleep 1
  done
  echo "# About a minute later (the inventory reads last use once per sync interval):"
  run kubectl get apitokens -A
  run kubectl describe apitoken grafana-status-panel
  run kubectl get events --field-selector involvedObject.kind=APIToken
  run kubectl get clusterstatusbackends
  run kubectl describe secret grafana-status-panel
} | sed -e "s#$dir/state#\$PWD/.dev#g" -e "s#$root#\$PWD#g" >"$out.tmp"

# The README's two "real output" blocks, from the same run: what a person sees in a second
# terminal, and the kubectl plugin.
go build -o "$dir/bin/kubectl-apitoken" ./cmd/kubectl-apitoken
export PATH=$dir/bin:$PATH
tidy() { sed -e "s#$dir/state#\$PWD/.dev#g" -e "s#$root#\$PWD#g"; }
{
  echo "\$ export KUBECONFIG=\$PWD/.dev/kubeconfig"
  run kubectl get apitokens -A -o wide
  run kubectl get clusterstatusbackends
  echo "\$ kubectl describe apitoken grafana-status-panel    # the status and the events"
  kubectl describe apitoken grafana-status-panel | sed -n '/^Status:/,$p'
  echo
  run kubectl get statusops -A
} | tidy | sed -e '${/^$/d}' >"$dir/readme-quickstart.txt"
{
  run kubectl apitoken status grafana-status-panel
  run kubectl apitoken rotate incident-bot
  run kubectl apitoken status incident-bot
  run kubectl apitoken review -A
  run kubectl apitoken revoke incident-bot --wait=false
  echo "\$ kubectl apitoken status nope; echo \"exit \$?\""
  code=0; kubectl apitoken status nope 2>&1 || code=$?
  echo "exit $code"
} | tidy >"$dir/readme-plugin.txt"

# A token value never appears in the output; check it, as the oracle does everywhere else
# (both tokens, the rotated one's successor included).
for secret in grafana-status-panel incident-bot-token; do
  value=$(kubectl get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
  for f in "$out.tmp" "$dir/readme-quickstart.txt" "$dir/readme-plugin.txt"; do
    if grep -qF "$value" "$f"; then echo "token value in the captured output ($f)" >&2; rm -f "$out.tmp"; exit 1; fi
  done
done
mv "$out.tmp" "$out"
echo "wrote $out"

# splice NAME FILE: replace the fenced block between README.md's markers for NAME.
splice() {
  local begin="<!-- capture:$1 begin (written by hack/quickstart/capture.sh from a real run; do not edit) -->"
  local end="<!-- capture:$1 end -->"
  grep -qF "$begin" README.md && grep -qF "$end" README.md || { echo "README.md lacks the capture:$1 markers" >&2; exit 1; }
  awk -v begin="$begin" -v end="$end" -v file="$2" '
    $0 == begin { print; print "```console"; while ((getline line < file) > 0) print line; print "```"; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }' README.md >README.md.tmp
  mv README.md.tmp README.md
}
splice quickstart "$dir/readme-quickstart.txt"
splice plugin "$dir/readme-plugin.txt"
echo "wrote README.md (capture:quickstart, capture:plugin)"
