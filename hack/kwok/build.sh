#!/usr/bin/env bash
# Builds the kwok controller from the sigs.k8s.io/kwok module pinned in go.mod into $1 (a
# directory keyed by version, e.g. bin/kwok/v0.8.0), and writes $1/stages.yaml: the node and
# pod Stages that kwokctl gives a cluster by default, copied from the same module version
# (the kwok binary itself has none built in and refuses to start without stages), with one
# opt-in delay added (below).
# Nothing is downloaded but Go modules. A binary already present is not rebuilt.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
version=$(go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
if [ ! -x "$out/kwok" ]; then
  echo "building kwok ${version} into $out; the first build takes a few minutes" >&2
  start=$(date +%s)
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok
  mv "$out/kwok.tmp" "$out/kwok"
  echo "built kwok in $(( $(date +%s) - start ))s" >&2
fi
# Written on every run (it is cheap), so a change here reaches an existing bin/kwok/<version>.
src=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
# node-initialize makes a Node Ready; pod-ready runs a scheduled Pod, pod-complete finishes
# a Job's Pod, pod-delete removes a Pod once it is being deleted (there is no kubelet).
# pod-ready gets one addition: the Pod's annotation pod-ready.stage.kwok.x-k8s.io/delay (a
# duration such as "10s", kwok's own name for it) holds it not-Ready that long, so a test can
# watch a rollout while it is in progress. Without the annotation a Pod is Ready at once.
for f in node/fast/node-initialize.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"
  if [ "$f" = pod/fast/pod-ready.yaml ]; then
    grep -q '^  next:$' "$src/$f" || { echo "build.sh: $f has no '  next:' line to put the delay before" >&2; exit 1; }
    sed '/^  next:$/i\
  delay:\
    durationMilliseconds: 0\
    durationFrom:\
      expressionFrom: '"'"'.metadata.annotations["pod-ready.stage.kwok.x-k8s.io/delay"]'"'"'' "$src/$f"
  else
    cat "$src/$f"
  fi
done > "$out/stages.yaml.tmp"
if cmp -s "$out/stages.yaml.tmp" "$out/stages.yaml"; then
  rm "$out/stages.yaml.tmp"
else
  mv "$out/stages.yaml.tmp" "$out/stages.yaml"
fi
