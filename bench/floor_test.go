package main

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// TestFieldPaths: the floor's shape check sees a field the floor would leave out, keys of
// maps as fields of their own, and not the fields the API server sets.
func TestFieldPaths(t *testing.T) {
	tok := tokenObj("ns", 0)
	tok.UID, tok.ResourceVersion = "u", "1"
	tok.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "m"}}
	now := metav1.Now()
	tok.Status = floorStatus(tok, now)
	tok.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default", UID: "u"}
	tok.Status.Usage = &tokensv1alpha1.UsageStatus{ObservedSince: &now}
	full, err := fieldPaths(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".status.usage.observedSince", ".status.conditions[].message", ".status.backend.uid", ".spec.permission"} {
		if !slices.Contains(full, want) {
			t.Errorf("%s missing from %v", want, full)
		}
	}
	for _, p := range full {
		if p == ".metadata.uid" || p == ".metadata.resourceVersion" || p == ".metadata.managedFields[].manager" {
			t.Errorf("server-set field %s listed", p)
		}
	}
	tok.Status.Usage = nil
	less, _ := fieldPaths(tok)
	if slices.Contains(less, ".status.usage.observedSince") || len(less) != len(full)-1 {
		t.Errorf("a status without usage: %v", less)
	}
	sec := floorSecret(tok)
	sec.Annotations = map[string]string{"tokens.statusops.dev/token-sha256": "h"}
	sec.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v", Kind: "APIToken", Name: "n", UID: "u", BlockOwnerDeletion: new(true)}}
	paths, _ := fieldPaths(sec)
	for _, want := range []string{".metadata.labels." + tokensv1alpha1.LabelManagedBy, ".metadata.annotations.tokens.statusops.dev/token-sha256", ".data.token", ".metadata.ownerReferences[].blockOwnerDeletion"} {
		if !slices.Contains(paths, want) {
			t.Errorf("%s missing from %v", want, paths)
		}
	}
}
