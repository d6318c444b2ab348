package apitoken

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// TestStatusExpectation: after a status write, a pass on a cached copy that predates it
// waits; the copy that shows the write (or the timeout) lets it run, once.
func TestStatusExpectation(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var e writeExpectations
	written := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	written.Status.IssueSerial = 1
	written.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendMismatch}}
	e.expectStatus(written.UID, &written.Status, now)

	stale := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	g.Expect(e.satisfied(stale, nil, now.Add(time.Second))).To(BeFalse(), "the cache predates our status write")
	g.Expect(e.satisfied(written.DeepCopy(), nil, now.Add(time.Second))).To(BeTrue(), "the cache shows it")
	g.Expect(e.status).To(BeEmpty(), "a met expectation is forgotten")

	e.expectStatus(written.UID, &written.Status, now)
	g.Expect(e.satisfied(stale, nil, now.Add(expectationTimeout+time.Second))).To(BeTrue(), "after the timeout the cache is believed")
	g.Expect(e.satisfied(stale, nil, now.Add(expectationTimeout+time.Second))).To(BeTrue())

	other := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "u2"}}
	e.expectStatus(written.UID, &written.Status, now)
	g.Expect(e.satisfied(other, nil, now)).To(BeTrue(), "per APIToken")
	e.forget(written.UID)
	g.Expect(e.satisfied(stale, nil, now)).To(BeTrue(), "forgotten")
}

// TestFinalizerExpectation: after adding the finalizer, a pass on a copy that does not show
// it waits instead of patching again; the copy that shows it, the timeout, or forget ends it.
func TestFinalizerExpectation(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var e writeExpectations
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	g.Expect(e.finalizerPending(tok, false, now)).To(BeFalse(), "nothing written")
	e.expectFinalizer(tok.UID, now)
	g.Expect(e.finalizerPending(tok, false, now.Add(time.Second))).To(BeTrue(), "the cache predates the patch")
	g.Expect(e.finalizerPending(&tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "u2"}}, false, now)).To(BeFalse(), "per APIToken")
	g.Expect(e.finalizerPending(tok, true, now.Add(time.Second))).To(BeFalse(), "the cache shows it")
	g.Expect(e.finalizerPending(tok, false, now.Add(2*time.Second))).To(BeFalse(), "and the expectation is gone: a finalizer removed later is added again")

	e.expectFinalizer(tok.UID, now)
	g.Expect(e.finalizerPending(tok, false, now.Add(expectationTimeout+time.Second))).To(BeFalse(), "after the timeout the cache is believed")
	e.expectFinalizer(tok.UID, now)
	e.forget(tok.UID)
	g.Expect(e.finalizerPending(tok, false, now)).To(BeFalse(), "forgotten")
}

// TestExpectationsFreeTheirMaps: after a burst of writes (every token at once) is seen by
// the cache, the expectation maps are dropped instead of holding their peak-sized tables.
func TestExpectationsFreeTheirMaps(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var e writeExpectations
	var toks []*tokensv1alpha1.APIToken
	for i := range 100 {
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: types.UID(fmt.Sprint("u", i))}}
		toks = append(toks, tok)
		e.expectFinalizer(tok.UID, now)
		e.expectStatus(tok.UID, &tok.Status, now)
		e.expect(tok.UID, 0, "", "", now)
	}
	g.Expect(e.m).To(HaveLen(100))
	for i, tok := range toks {
		g.Expect(e.finalizerPending(tok, true, now)).To(BeFalse())
		// nil Secret: the token expectation is met only by its timeout.
		g.Expect(e.satisfied(tok, nil, now.Add(expectationTimeout+time.Second))).To(BeTrue())
		if i < len(toks)-1 {
			g.Expect(e.m).NotTo(BeNil(), "still in use")
		}
	}
	g.Expect(e.m).To(BeNil())
	g.Expect(e.status).To(BeNil())
	g.Expect(e.finalized).To(BeNil())
	e.expectFinalizer("u1", now)
	e.forget("u1")
	g.Expect(e.finalized).To(BeNil())
}
