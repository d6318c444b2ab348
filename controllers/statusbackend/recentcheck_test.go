package statusbackend

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestRecentCheckIsReused: a check within backendRecheckAfter of a successful one, with the
// same URL, CA and credential, is answered from the registry; an older one, a changed
// fingerprint, or an outage report since, asks the backend again.
func TestRecentCheckIsReused(t *testing.T) {
	g := NewWithT(t)
	r := registry.New()
	key := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "b"}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	self := &backend.Token{ID: "tok_admin"}
	obj := &tokensv1alpha1.ClusterStatusBackend{}
	obj.Name = "b"
	r.Set(context.Background(), key, obj, nil, "http://b", "fp1", backend.CapabilityClaim)
	_, _, ok := r.RecentCheck(key, "fp1", now, backendRecheckAfter)
	g.Expect(ok).To(BeFalse(), "registered but never checked")

	r.RecordCheck(key, self, now)
	got, features, ok := r.RecentCheck(key, "fp1", now.Add(backendRecheckAfter-time.Second), backendRecheckAfter)
	g.Expect(ok).To(BeTrue())
	g.Expect(got).To(Equal(self))
	g.Expect(features).To(ContainElement(backend.CapabilityClaim))
	_, _, ok = r.RecentCheck(key, "fp1", now.Add(backendRecheckAfter), backendRecheckAfter)
	g.Expect(ok).To(BeFalse(), "too old")
	_, _, ok = r.RecentCheck(key, "fp2", now, backendRecheckAfter)
	g.Expect(ok).To(BeFalse(), "URL, CA or credential changed")

	r.Set(context.Background(), key, obj, nil, "http://b", "fp1", backend.CapabilityClaim)
	_, _, ok = r.RecentCheck(key, "fp1", now, backendRecheckAfter)
	g.Expect(ok).To(BeTrue(), "re-registering with the same fingerprint keeps the check")

	r.ReportOutage(key)
	_, _, ok = r.RecentCheck(key, "fp1", now, backendRecheckAfter)
	g.Expect(ok).To(BeFalse(), "an outage report makes the re-check ask the backend")
}
