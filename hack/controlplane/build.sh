#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and etcd from Go modules into
# $1 (a directory keyed by version, e.g. bin/controlplane/k8s-v1.37.2-etcd-v3.7.0).
# Nothing is downloaded but Go modules, so this works offline behind a module proxy.
# A binary already present is not rebuilt.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
build() { # name package
  if [ -x "$out/$1" ]; then return 0; fi
  echo "building $1 (${2}) into $out; the first build takes several minutes" >&2
  start=$(date +%s)
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
  echo "built $1 in $(( $(date +%s) - start ))s" >&2
}
build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
# The scheduler shares almost every package with the two above, so after them it costs seconds.
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
