package apitoken

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
)

// TestTokenHolders: the map follows the informer's events, so heldByAnother sees another
// APIToken holding a token id, and stops seeing it once that APIToken moved on or is gone.
func TestTokenHolders(t *testing.T) {
	g := NewWithT(t)
	tok := func(uid types.UID, id string) *tokensv1alpha1.APIToken {
		t := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: string(uid), UID: uid}}
		t.Status.TokenID = id
		return t
	}
	a, b := tok("a", "t1"), tok("b", "")
	key := backendkey.Current(a)
	var h tokenHolders
	g.Expect(h.heldByOther(key, "t1", "b")).To(BeFalse(), "an empty map holds nothing")
	h.OnAdd(a, true)
	h.OnAdd(b, true)
	g.Expect(h.heldByOther(key, "t1", "a")).To(BeFalse(), "its own token")
	g.Expect(h.heldByOther(key, "t1", "b")).To(BeTrue(), "another APIToken's token")
	g.Expect(h.heldByOther(key, "t2", "b")).To(BeFalse())

	h.OnUpdate(a, tok("a", "t2"))
	g.Expect(h.heldByOther(key, "t1", "b")).To(BeFalse(), "a moved on to t2")
	g.Expect(h.heldByOther(key, "t2", "b")).To(BeTrue())

	h.OnUpdate(b, tok("b", "t2")) // a backend that hands out t2 twice
	g.Expect(h.heldByOther(key, "t2", "a")).To(BeTrue())
	g.Expect(h.heldByOther(key, "t2", "b")).To(BeTrue())

	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ns/a", Obj: tok("a", "t2")})
	g.Expect(h.heldByOther(key, "t2", "b")).To(BeFalse(), "a is gone (a tombstone)")
	h.OnDelete(tok("b", "t2"))
	g.Expect(h.m).To(BeEmpty())
}
