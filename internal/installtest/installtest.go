// Package installtest loads the shipped installation (dist/install.yaml or a rendered Helm
// chart) and applies parts of it to a test API server, so tests can run with exactly the
// RBAC the operator ships: ApplyRBAC installs the ServiceAccount, roles and bindings, and
// ImpersonatedConfig returns a rest.Config acting as that ServiceAccount.
//
// test/install uses it to prove the RBAC is sufficient and minimal; the end-to-end tests use
// it to run the manager under the shipped RBAC instead of as cluster-admin.
package installtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Namespace, ServiceAccountName and ServiceAccountUser identify the manager as
// dist/install.yaml installs it (config/default: namespace apitoken-system, name prefix
// apitoken-operator-).
const (
	Namespace          = "apitoken-system"
	ServiceAccountName = "apitoken-operator-controller-manager"
	ServiceAccountUser = "system:serviceaccount:" + Namespace + ":" + ServiceAccountName
)

// FieldOwner is the server-side apply field manager of everything this package applies.
const FieldOwner = "apitoken-installtest"

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// InstallManifestPath is dist/install.yaml, written by `make build-installer`.
func InstallManifestPath() string {
	return filepath.Join(RepoRoot(), "dist", "install.yaml")
}

// ImpersonatedConfig returns a copy of cfg that acts as the manager's ServiceAccount, so
// only the RBAC bound to it applies. cfg must be allowed to impersonate (an envtest admin is).
func ImpersonatedConfig(cfg *rest.Config) *rest.Config {
	return ImpersonatedConfigFor(cfg, ServiceAccountUser)
}

// ImpersonatedConfigFor is ImpersonatedConfig for another user name, for example the
// ServiceAccount of a Helm release installed under another name or namespace.
func ImpersonatedConfigFor(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: user,
		// What the API server gives every ServiceAccount token; bindings to these groups
		// (none by default beyond discovery) then apply as they would in a cluster.
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespaceOf(user), "system:authenticated"},
	}
	return c
}

// namespaceOf returns the namespace of a "system:serviceaccount:NS:NAME" user, or "".
func namespaceOf(user string) string {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, ":")
	return ns
}

// ReadManifests decodes every object of a multi-document YAML file.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs, err := DecodeManifests(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

// DecodeManifests decodes every object of a multi-document YAML stream, skipping empty
// documents.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding document %d: %w", len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d has no kind or apiVersion", len(objs)+1)
		}
		objs = append(objs, u)
	}
}

// IsRBAC reports whether obj is part of the manager's identity and permissions: its
// Namespace, ServiceAccount, (Cluster)Roles and (Cluster)RoleBindings.
func IsRBAC(obj *unstructured.Unstructured) bool {
	switch obj.GroupVersionKind().GroupKind().String() {
	case "Namespace", "ServiceAccount",
		"ClusterRole.rbac.authorization.k8s.io", "ClusterRoleBinding.rbac.authorization.k8s.io",
		"Role.rbac.authorization.k8s.io", "RoleBinding.rbac.authorization.k8s.io":
		return true
	}
	return false
}

// Apply server-side applies objs in order (forcing ownership of conflicting fields), for
// real or with dryRun. It stops at the first error, naming the object.
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, dryRun bool) error {
	opts := []client.ApplyOption{client.FieldOwner(FieldOwner), client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	for _, obj := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), opts...); err != nil {
			return fmt.Errorf("applying %s %s: %w", obj.GetKind(), client.ObjectKeyFromObject(obj), err)
		}
	}
	return nil
}

// ApplyRBAC applies, for real, the Namespace, ServiceAccount, roles and bindings of the
// installation at path (usually InstallManifestPath()), so a client from
// ImpersonatedConfig has exactly the shipped permissions. c must be an admin client.
func ApplyRBAC(ctx context.Context, c client.Client, path string) error {
	objs, err := ReadManifests(path)
	if err != nil {
		return err
	}
	return Apply(ctx, c, Filter(objs, IsRBAC), false)
}

// Filter returns the objects for which keep is true, in order.
func Filter(objs []*unstructured.Unstructured, keep func(*unstructured.Unstructured) bool) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}
