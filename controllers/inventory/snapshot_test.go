package inventory

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestExtraActiveLeavesStatusTokensOut: the active tokens of an APIToken that its status names
// (current, draining, pending deactivation) are not extra; any other one is, and one of
// another cluster is never this cluster's to sweep.
func TestExtraActiveLeavesStatusTokensOut(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ours := func(id string) backend.Token {
		return backend.Token{ID: id, Status: backend.StatusActive, Owner: backend.Owner{UID: "uid-a", Cluster: "c1"}}
	}
	theirs := ours("tok_theirs")
	theirs.Owner.Cluster = "c2"
	snap := newSnapshot(now, []backend.Token{ours("tok_1"), ours("tok_0"), ours("tok_pending"), ours("tok_orphan"), theirs}, "c1")
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "uid-a"}}
	tok.Status.TokenID = "tok_1"
	tok.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0"}}
	tok.Status.PendingDeactivation = []tokensv1alpha1.RetiringToken{{TokenID: "tok_pending"}}
	g.Expect(ExtraActive(tok, snap)).To(ConsistOf("tok_orphan"))
	g.Expect(ExtraActive(tok, nil)).To(BeEmpty())
}
