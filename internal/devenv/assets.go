package devenv

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
)

// controlPlaneBinaries are the binaries AssetsDir must hold.
var controlPlaneBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// FindAssetsDir returns a directory holding etcd, kube-apiserver and kube-controller-manager:
// KUBEBUILDER_ASSETS when it has all three, else the newest bin/controlplane/* of repoRoot
// (setup-envtest's assets, for example, lack kube-controller-manager).
func FindAssetsDir(repoRoot string) (string, error) {
	candidates, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "controlplane", "*"))
	sort.Sort(sort.Reverse(sort.StringSlice(candidates)))
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		candidates = append([]string{dir}, candidates...)
	}
	for _, dir := range candidates {
		if HasControlPlane(dir) {
			return dir, nil
		}
	}
	return "", errors.New("no directory with etcd, kube-apiserver and kube-controller-manager in KUBEBUILDER_ASSETS or bin/controlplane: run `make controlplane`")
}

// HasControlPlane reports whether dir holds all the control-plane binaries.
func HasControlPlane(dir string) bool {
	for _, b := range controlPlaneBinaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}
