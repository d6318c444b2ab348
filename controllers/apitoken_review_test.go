package controllers_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
)

func leastPrivilege(h *harness, name string) *metav1.Condition {
	tok := h.get(name)
	if tok == nil {
		return nil
	}
	for i := range tok.Status.Conditions {
		if tok.Status.Conditions[i].Type == tokensv1alpha1.ConditionLeastPrivilege {
			return &tok.Status.Conditions[i]
		}
	}
	return nil
}

func waitReview(h *harness, name string, st metav1.ConditionStatus, reason string) *metav1.Condition {
	h.t.Helper()
	var c *metav1.Condition
	NewWithT(h.t).Eventually(func(g Gomega) {
		c = leastPrivilege(h, name)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason))
		g.Expect(c.Status).To(Equal(st))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	return c
}

// TestLeastPrivilegeReview: with a review window of a few seconds, a FullAccess token that
// never writes is reported (after the window has been observed, not before), the finding
// clears once it writes; a ReadOnly token refused a write is reported and clears when the
// window passes. Ready and kstatus are untouched by the review.
func TestLeastPrivilegeReview(t *testing.T) {
	window := 4 * time.Second
	h := newHarness(t, func(o *controllers.Options) { o.PermissionReviewWindow = &window })
	g := NewWithT(t)
	full := h.waitFor(h.create(h.newToken("writer", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	ro := h.waitFor(h.create(h.newToken("reader", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	g.Expect(leastPrivilege(h, full.Name).Reason).To(Equal(tokensv1alpha1.ReasonInsufficientHistory), "no verdict before a window has been observed")
	c := waitReview(h, full.Name, metav1.ConditionFalse, tokensv1alpha1.ReasonUnusedWritePermission)
	g.Expect(c.Message).To(ContainSubstring("spec.permission: ReadOnly"))
	g.Expect(h.expectEvent(full.Name, tokensv1alpha1.EventLeastPrivilegeFinding)).To(ContainSubstring("no write"))
	got := h.get(full.Name)
	g.Expect(kstatusOf(t, got)).To(Equal(status.CurrentStatus), "the review is not part of kstatus")
	g.Expect(h.readyCondition(got).Status).To(Equal(metav1.ConditionTrue))

	g.Expect(h.useToken(h.secret(full.Name).Data["token"], http.MethodPost, "/boards")).To(Equal(http.StatusCreated))
	waitReview(h, full.Name, metav1.ConditionTrue, tokensv1alpha1.ReasonLeastPrivilege)
	g.Expect(h.get(full.Name).Status.Usage.LastWriteAt).NotTo(BeNil())

	g.Expect(leastPrivilege(h, ro.Name).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(h.useToken(h.secret(ro.Name).Data["token"], http.MethodPost, "/boards")).To(Equal(http.StatusForbidden))
	c = waitReview(h, ro.Name, metav1.ConditionFalse, tokensv1alpha1.ReasonWritesDenied)
	g.Expect(c.Message).To(ContainSubstring("refused a write"))
	waitReview(h, ro.Name, metav1.ConditionTrue, tokensv1alpha1.ReasonLeastPrivilege)
}

// TestLeastPrivilegeReviewOff: a window of 0 turns the review off.
func TestLeastPrivilegeReviewOff(t *testing.T) {
	off := time.Duration(0)
	h := newHarness(t, func(o *controllers.Options) { o.PermissionReviewWindow = &off })
	tok := h.waitFor(h.create(h.newToken("unreviewed", tokensv1alpha1.PermissionFullAccess)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	NewWithT(t).Consistently(func() *metav1.Condition { return leastPrivilege(h, tok.Name) }).WithTimeout(2 * time.Second).Should(BeNil())
}
