// Command kustomize-build renders a kustomization directory to a single YAML stream, like
// `kubectl kustomize DIR`, with the kustomize Go API, so `make build-installer` needs no
// kubectl.
//
//	kustomize-build [-image NAME=NEWREF] DIR > OUT
//
// -image replaces the image NAME (as the kustomization leaves it) with NEWREF
// (repo:tag or repo@digest) without editing the kustomization on disk, like
// `kustomize edit set image` on a throwaway overlay.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func main() {
	image := flag.String("image", "", "replace image NAME with NEWREF, written NAME=NEWREF")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kustomize-build [-image NAME=NEWREF] DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	out, err := build(flag.Arg(0), *image)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kustomize-build: %v\n", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fmt.Fprintf(os.Stderr, "kustomize-build: %v\n", err)
		os.Exit(1)
	}
}

func build(dir, image string) ([]byte, error) {
	if image != "" {
		overlay, cleanup, err := imageOverlay(dir, image)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		dir = overlay
	}
	opts := krusty.MakeDefaultOptions()
	// Namespaces and CRDs first, then RBAC, then workloads, as `kubectl kustomize` orders
	// them, so `kubectl apply -f` of the output creates every object after what it needs.
	opts.Reorder = krusty.ReorderOptionLegacy
	resources, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return out, nil
}

// imageOverlay writes a temporary kustomization that includes dir and sets one image.
func imageOverlay(dir, spec string) (string, func(), error) {
	name, ref, ok := strings.Cut(spec, "=")
	if !ok || name == "" || ref == "" {
		return "", nil, fmt.Errorf("-image %q: want NAME=NEWREF", spec)
	}
	img := map[string]string{"name": name}
	switch {
	case strings.Contains(ref, "@"):
		img["newName"], img["digest"], _ = strings.Cut(ref, "@")
	case strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/"):
		i := strings.LastIndex(ref, ":")
		img["newName"], img["newTag"] = ref[:i], ref[i+1:]
	default:
		img["newName"] = ref
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp("", "kustomize-build-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	rel, err := filepath.Rel(tmp, abs)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	k, err := yaml.Marshal(map[string]any{
		"resources": []string{rel},
		"images":    []map[string]string{img},
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), k, 0o644)
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return tmp, cleanup, nil
}
