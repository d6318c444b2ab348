#!/usr/bin/env bash
# Builds Helm from the helm.sh/helm/v3 module pinned in this directory's go.mod into $1,
# with the link-time settings of Helm's own Makefile: its version, and the Kubernetes version
# it assumes for `helm template` and `helm lint` (from the client-go it is built with; the
# default without them is 1.20, which charts with a kubeVersion constraint reject).
set -euo pipefail
out=${1:?usage: build-helm.sh OUTFILE}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")"
helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
k8s_minor=$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done
mkdir -p "$(dirname "$out")"
echo "building helm ${helm_version} (Kubernetes 1.${k8s_minor}) into ${out}" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" helm.sh/helm/v3/cmd/helm
mv "$out.tmp" "$out"
