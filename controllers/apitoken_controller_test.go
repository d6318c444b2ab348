package controllers_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/controllers/apitoken"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// kstatusOf is what kstatus (and so Argo CD, Flux, kubectl wait) reads from the object.
func kstatusOf(t *testing.T, tok *tokensv1alpha1.APIToken) status.Status {
	t.Helper()
	tok = tok.DeepCopy()
	tok.APIVersion, tok.Kind = tokensv1alpha1.GroupVersion.String(), "APIToken"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tok)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	res, err := status.Compute(&unstructured.Unstructured{Object: m})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return res.Status
}

func TestIssueReadOnlyToken(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.create(h.newToken("dashboard", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.Description = "Grafana status panel"
		t.Spec.SecretTemplate = &tokensv1alpha1.SecretTemplate{Labels: map[string]tokensv1alpha1.LabelValue{"team": "obs"}, Annotations: map[string]tokensv1alpha1.AnnotationValue{"reloader.stakater.com/match": "true"}}
	}))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(kstatusOf(t, tok)).To(Equal(status.CurrentStatus))
	g.Expect(h.readyCondition(tok).Message).To(ContainSubstring("Secret dashboard"))
	g.Expect(tok.Finalizers).To(ContainElement(tokensv1alpha1.Finalizer))
	g.Expect(tok.Status.TokenID).NotTo(BeEmpty())
	g.Expect(tok.Status.TokenHint).To(HaveLen(7))
	g.Expect(tok.Status.SecretName).To(Equal("dashboard"))
	g.Expect(tok.Status.Permission).To(Equal(tokensv1alpha1.PermissionReadOnly))
	g.Expect(tok.Status.IssuedAt).NotTo(BeNil())

	s := h.secret("dashboard")
	g.Expect(s).NotTo(BeNil())
	g.Expect(s.Labels).To(HaveKeyWithValue(tokensv1alpha1.LabelManagedBy, tokensv1alpha1.ManagedByValue))
	g.Expect(s.Labels).To(HaveKeyWithValue(tokensv1alpha1.LabelAPIToken, "dashboard"))
	g.Expect(s.Labels).To(HaveKeyWithValue("team", "obs"))
	g.Expect(s.Annotations).To(HaveKeyWithValue("reloader.stakater.com/match", "true"))
	g.Expect(metav1.IsControlledBy(s, tok)).To(BeTrue())
	g.Expect(s.Data).To(HaveKey(tokensv1alpha1.SecretKeyToken))
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyTokenID])).To(Equal(tok.Status.TokenID))
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyPermission])).To(Equal("ReadOnly"))
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyExpiresAt])).To(BeEmpty())
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyURL])).To(Equal(h.backend.URL))
	g.Expect(tok.Status.TokenHint).To(HaveSuffix(string(s.Data["token"][len(s.Data["token"])-4:])))

	bt := h.backendToken(tok.Status.TokenID)
	g.Expect(bt.Status).To(Equal(backend.StatusActive))
	g.Expect(bt.Permission).To(Equal(backend.PermissionReadOnly))
	g.Expect(bt.ExternalID).To(Equal(string(tok.UID)))
	g.Expect(bt.Description).To(Equal("Grafana status panel"))
	g.Expect(bt.ExpiresAt).To(BeNil())
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))

	// The seed's promise, end to end: a read-only token can only retrieve data.
	g.Expect(h.useToken(s.Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Expect(h.useToken(s.Data["token"], http.MethodPost, "/boards")).To(Equal(http.StatusForbidden))
	g.Expect(h.expectEvent("dashboard", tokensv1alpha1.ReasonIssued)).To(ContainSubstring(tok.Status.TokenID))
	h.expectEventCount("dashboard", tokensv1alpha1.ReasonIssued, 1)
	g.Expect(h.backend.Server.Stats().TokensCreated).To(BeEquivalentTo(1), "one backend create")

	// Last used: follows the backend's information within the sync interval.
	NewWithT(t).Eventually(func(g Gomega) {
		got := h.get("dashboard")
		g.Expect(got.Status.LastUsedAt).NotTo(BeNil())
	}).WithTimeout(15 * time.Second).Should(Succeed())
}

func TestIssueFullAccessTokenWithExpiry(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	exp := metav1.NewTime(time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second))
	tok := h.create(h.newToken("automation", tokensv1alpha1.PermissionFullAccess, func(t *tokensv1alpha1.APIToken) {
		t.Spec.ExpiresAt = &exp
		t.Spec.SecretName = "automation-token"
	}))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(tok.Status.ExpiresAt.Unix()).To(Equal(exp.Unix()))
	s := h.secret("automation-token")
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyExpiresAt])).To(Equal(exp.UTC().Format(time.RFC3339)))
	g.Expect(string(s.Data[tokensv1alpha1.SecretKeyPermission])).To(Equal("FullAccess"))
	bt := h.backendToken(tok.Status.TokenID)
	g.Expect(bt.Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(bt.ExpiresAt.Unix()).To(Equal(exp.Unix()))
	g.Expect(h.useToken(s.Data["token"], http.MethodPost, "/boards")).To(Equal(http.StatusCreated))
}

func TestExpireAtTheSecond(t *testing.T) {
	// An hour-long sync interval: no periodic pass (inventory, backend re-check, resync) can
	// catch the expiry by luck within the test, so only the scheduled requeue can.
	h := newHarness(t, func(o *controllers.Options) { o.SyncInterval = time.Hour })
	g := NewWithT(t)
	exp := metav1.NewTime(time.Now().Add(3 * time.Second).UTC().Truncate(time.Second).Add(time.Second))
	tok := h.create(h.newToken("short", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &exp }))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	id := tok.Status.TokenID
	value := h.secret("short").Data["token"]

	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonExpired)
	// Scheduled, not polled: the backend's deactivated_at (nanosecond precision, unlike the
	// condition's second) is at expiresAt or at most a second after it.
	deactivatedAt := h.backendToken(id).DeactivatedAt
	g.Expect(deactivatedAt).NotTo(BeNil(), "deactivated explicitly, not only past its expiry")
	lag := deactivatedAt.Sub(exp.Time)
	t.Logf("expiry lag: %v", lag)
	g.Expect(lag).To(BeNumerically(">=", 0), "deactivated before expiresAt")
	g.Expect(lag).To(BeNumerically("<=", time.Second), "deactivated %v after expiresAt", lag)
	cond := h.readyCondition(tok)
	g.Expect(cond.LastTransitionTime.Sub(exp.Time)).To(BeNumerically("<=", time.Second))
	g.Expect(cond.Message).To(ContainSubstring("Move spec.expiresAt later"))
	g.Expect(kstatusOf(t, tok)).To(Equal(status.FailedStatus))
	g.Expect(h.backendToken(id).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.useToken(value, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
	h.expectEvent("short", tokensv1alpha1.ReasonExpired)
	h.expectEventCount("short", tokensv1alpha1.ReasonExpired, 1)

	// Moving expiresAt later issues a fresh token into the same Secret.
	later := metav1.NewTime(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	patch := client.MergeFrom(tok.DeepCopy())
	tok.Spec.ExpiresAt = &later
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(tok.Status.TokenID).NotTo(Equal(id))
	g.Expect(h.useToken(h.secret("short").Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))
}

func TestChangePermissionAndExpiryReplaces(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.create(h.newToken("changing", tokensv1alpha1.PermissionReadOnly))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	first := tok.Status.TokenID
	oldValue := h.secret("changing").Data["token"]

	patch := client.MergeFrom(tok.DeepCopy())
	tok.Spec.Permission = tokensv1alpha1.PermissionFullAccess
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	g.Eventually(func() string { return h.get("changing").Status.TokenID }).WithTimeout(15 * time.Second).ShouldNot(Equal(first))
	tok = h.waitFor("changing", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	second := tok.Status.TokenID
	g.Expect(tok.Status.Permission).To(Equal(tokensv1alpha1.PermissionFullAccess))
	s := h.secret("changing")
	g.Expect(string(s.Data["tokenID"])).To(Equal(second))
	g.Expect(string(s.Data["permission"])).To(Equal("FullAccess"))
	g.Expect(h.backendToken(first).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.backendToken(second).Permission).To(Equal(backend.PermissionFullAccess))
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
	g.Expect(h.useToken(s.Data["token"], http.MethodPost, "/boards")).To(Equal(http.StatusCreated))
	g.Expect(h.expectEvent("changing", "Replaced")).To(ContainSubstring("spec.permission changed"))

	exp := metav1.NewTime(time.Now().Add(72 * time.Hour).UTC().Truncate(time.Second))
	patch = client.MergeFrom(tok.DeepCopy())
	tok.Spec.ExpiresAt = &exp
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	g.Eventually(func() string { return h.get("changing").Status.TokenID }).WithTimeout(15 * time.Second).ShouldNot(Equal(second))
	tok = h.waitFor("changing", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backendToken(tok.Status.TokenID).ExpiresAt.Unix()).To(Equal(exp.Unix()))
	g.Expect(h.backendToken(second).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))
}

func TestDeactivateAndReactivate(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.create(h.newToken("toggle", tokensv1alpha1.PermissionReadOnly))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	first := tok.Status.TokenID

	off := false
	patch := client.MergeFrom(tok.DeepCopy())
	tok.Spec.Active = &off
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	tok = h.waitFor("toggle", tokensv1alpha1.PhaseInactive, tokensv1alpha1.ReasonDeactivated)
	g.Expect(h.readyCondition(tok).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(kstatusOf(t, tok)).To(Equal(status.CurrentStatus))
	g.Expect(h.backendToken(first).Status).To(Equal(backend.StatusInactive))
	h.expectEvent("toggle", tokensv1alpha1.ReasonDeactivated)

	on := true
	patch = client.MergeFrom(tok.DeepCopy())
	tok.Spec.Active = &on
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	tok = h.waitFor("toggle", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(tok.Status.TokenID).NotTo(Equal(first))
	g.Expect(h.useToken(h.secret("toggle").Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))
}

func TestRotateOnDemandOnce(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.create(h.newToken("rotating", tokensv1alpha1.PermissionReadOnly))
	tok = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	first := tok.Status.TokenID

	patch := client.MergeFrom(tok.DeepCopy())
	tok.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "2026-11-27T10:00:00Z"}
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	g.Eventually(func() string { return h.get("rotating").Status.RotationHandled }).WithTimeout(15 * time.Second).Should(Equal("2026-11-27T10:00:00Z"))
	tok = h.waitFor("rotating", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	second := tok.Status.TokenID
	g.Expect(second).NotTo(Equal(first))
	g.Expect(h.backendToken(first).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.expectEvent("rotating", "Replaced")).To(ContainSubstring("rotation was requested"))

	// Another change that is not a new rotation value does not rotate again.
	patch = client.MergeFrom(tok.DeepCopy())
	tok.Annotations["unrelated"] = "x"
	g.Expect(h.c.Patch(h.ctx, tok, patch)).To(Succeed())
	h.restartManager()
	g.Consistently(func() string { return h.get("rotating").Status.TokenID }).WithTimeout(3 * time.Second).Should(Equal(second))
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))
}

func TestDeleteRevokesAndRetains(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	revoke := h.waitFor(h.create(h.newToken("revoke-me", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	retain := h.waitFor(h.create(h.newToken("retain-me", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
	})).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	revokeValue := h.secret("revoke-me").Data["token"]
	retainValue := h.secret("retain-me").Data["token"]

	g.Expect(h.c.Delete(h.ctx, revoke)).To(Succeed())
	g.Expect(h.c.Delete(h.ctx, retain)).To(Succeed())
	g.Eventually(func() bool { return h.get("revoke-me") == nil && h.get("retain-me") == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.secret("revoke-me")).To(BeNil(), "Secret removed before the APIToken went away")
	// Retain keeps the backend token and its only copy of the value, released from the
	// operator (no owner, no managed-by label) and marked where it came from.
	kept := h.secret("retain-me")
	g.Expect(kept).NotTo(BeNil())
	g.Expect(kept.OwnerReferences).To(BeEmpty())
	g.Expect(kept.Labels).NotTo(HaveKey(tokensv1alpha1.LabelManagedBy))
	g.Expect(kept.Annotations).To(HaveKey("tokens.statusops.dev/retained-from"))
	g.Expect(kept.Data["token"]).To(Equal(retainValue))
	g.Expect(h.backendToken(revoke.Status.TokenID).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.useToken(revokeValue, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
	g.Expect(h.backendToken(retain.Status.TokenID).Status).To(Equal(backend.StatusActive))
	g.Expect(h.useToken(retainValue, http.MethodGet, "/boards")).To(Equal(http.StatusOK))
}

func TestDeleteWaitsForUnreachableBackend(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("stuck", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	kept := h.waitFor(h.create(h.newToken("kept", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
	})).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	h.backend.Close()
	// The Retain way out: deletion finishes without the backend, the Secret is kept.
	h.expectEvent("kept", tokensv1alpha1.ReasonIssued)
	g.Expect(h.c.Delete(h.ctx, kept)).To(Succeed())
	g.Eventually(func() bool { return h.get("kept") == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.secret("kept")).NotTo(BeNil())

	g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := h.get("stuck")
		g.Expect(got).NotTo(BeNil())
		c := h.readyCondition(got)
		g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonDeleting))
		g.Expect(c.Message).To(ContainSubstring("finalizer stays"))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Consistently(func() bool { return h.get("stuck") != nil }).WithTimeout(2 * time.Second).Should(BeTrue())

	h.backend.Restart(t)
	g.Eventually(func() bool { return h.get("stuck") == nil }).WithTimeout(60 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
}

func TestDriftIsRepaired(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("drift", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)

	// 1. The Secret is deleted.
	first := tok.Status.TokenID
	g.Expect(h.c.Delete(h.ctx, h.secret("drift"))).To(Succeed())
	g.Eventually(func() string { return h.get("drift").Status.TokenID }).WithTimeout(15 * time.Second).ShouldNot(Equal(first))
	g.Eventually(func() *corev1.Secret { return h.secret("drift") }).WithTimeout(10 * time.Second).ShouldNot(BeNil())
	g.Expect(h.backendToken(first).Status).To(Equal(backend.StatusInactive))
	g.Expect(h.expectEvent("drift", "Replaced")).To(ContainSubstring("was deleted"))

	// 2. The token in the Secret is edited.
	tok = h.waitFor("drift", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	second := tok.Status.TokenID
	s := h.secret("drift")
	oldValue := s.Data["token"]
	s.Data["token"] = []byte("sgt_edited-by-hand")
	g.Expect(h.c.Update(h.ctx, s)).To(Succeed())
	g.Eventually(func() string { return h.get("drift").Status.TokenID }).WithTimeout(15 * time.Second).ShouldNot(Equal(second))
	g.Eventually(func() string { return string(h.secret("drift").Data["token"]) }).ShouldNot(Equal("sgt_edited-by-hand"))
	g.Expect(h.useToken(oldValue, http.MethodGet, "/boards")).To(Equal(http.StatusUnauthorized))
	g.Expect(h.expectEvent("drift", "Replaced")).To(ContainSubstring("was edited"))

	// 3. The token is revoked by hand on the backend.
	tok = h.waitFor("drift", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	third := tok.Status.TokenID
	_, err := h.admin.DeactivateToken(h.ctx, third)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() string { return h.get("drift").Status.TokenID }).WithTimeout(30 * time.Second).ShouldNot(Equal(third))
	tok = h.waitFor("drift", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.expectEvent("drift", "RevokedOnBackend")).To(ContainSubstring(third))
	g.Expect(h.useToken(h.secret("drift").Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Expect(h.activeBackendTokens(tok.UID)).To(HaveLen(1))
}

func TestFailures(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)

	// A Secret of the same name that this APIToken does not own is never overwritten.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "taken"}, StringData: map[string]string{"token": "precious"}}
	g.Expect(h.c.Create(h.ctx, foreign)).To(Succeed())
	conflict := h.create(h.newToken("conflict", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.SecretName = "taken" }))

	past := metav1.NewTime(time.Now().Add(-time.Hour).UTC().Truncate(time.Second))
	inPast := h.create(h.newToken("in-past", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &past }))

	missing := h.create(h.newToken("no-backend", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "nope"}
	}))

	cases := []struct {
		tok     *tokensv1alpha1.APIToken
		reason  string
		message string
	}{
		{conflict, tokensv1alpha1.ReasonSecretConflict, "is not owned by this APIToken"},
		{inPast, tokensv1alpha1.ReasonExpiresAtInPast, "Set a future time"},
		{missing, tokensv1alpha1.ReasonBackendNotFound, "StatusBackend \"nope\" does not exist"},
	}
	for _, tc := range cases {
		got := h.waitFor(tc.tok.Name, tokensv1alpha1.PhaseFailed, tc.reason)
		g.Expect(h.readyCondition(got).Message).To(ContainSubstring(tc.message))
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionStalled)).To(BeTrue())
		g.Expect(kstatusOf(t, got)).To(Equal(status.FailedStatus), tc.reason)
		g.Expect(got.Status.TokenID).To(BeEmpty())
		g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty(), "nothing issued for %s", tc.reason)
		g.Expect(h.expectEvent(tc.tok.Name, "Failed")).To(ContainSubstring(tc.message))
	}
	// Not written at all: not its data, not its labels or owners (the manager sent no write
	// for it and its resourceVersion is the one it was created with).
	created := foreign.ResourceVersion
	g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
	g.Expect(string(foreign.Data["token"])).To(Equal("precious"))
	g.Expect(foreign.ResourceVersion).To(Equal(created), "the foreign Secret was modified")
	g.Expect(h.writes.total("/namespaces/"+h.ns+"/secrets/taken")).To(BeZero(), "the manager wrote to the foreign Secret")

	// Removing the foreign Secret lets the token proceed at once (a watch, not a poll).
	g.Expect(h.c.Delete(h.ctx, foreign)).To(Succeed())
	got := h.waitFor("conflict", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(metav1.IsControlledBy(h.secret("taken"), got)).To(BeTrue())

	// Pointing a token at another name works too.
	patch := client.MergeFrom(inPast.DeepCopy())
	inPast.Spec.ExpiresAt = nil
	g.Expect(h.c.Patch(h.ctx, inPast, patch)).To(Succeed())
	h.waitFor("in-past", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
}

func TestNamespaceNotAllowed(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	h.createClusterBackend("restricted-"+h.ns, h.backend.URL, func(b *tokensv1alpha1.ClusterStatusBackend) {
		b.Spec.AllowedNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"statusops.dev/tokens": "allowed"}}
	})
	tok := h.create(h.newToken("denied", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef.Name = "restricted-" + h.ns
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonNamespaceNotAllowed)
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring("Label the namespace"))
	g.Expect(kstatusOf(t, got)).To(Equal(status.FailedStatus))
	g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty())
}

func TestBackendNotReadyThenReady(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	// A backend whose credentials Secret does not exist yet.
	h.createClusterBackendWithSecret("late-"+h.ns, "late-admin")
	tok := h.create(h.newToken("waiting", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef.Name = "late-" + h.ns
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhasePending, tokensv1alpha1.ReasonBackendNotReady)
	g.Eventually(func() string { return h.readyCondition(h.get(tok.Name)).Message }).Should(ContainSubstring("CredentialsNotFound"))
	g.Expect(kstatusOf(t, got)).To(Equal(status.InProgressStatus))

	// Creating the Secret makes the backend Ready (Secret watch), which wakes the token (backend watch).
	h.createAdminSecret(h.ns, "late-admin", h.backend.AdminToken)
	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
}

func (h *harness) createClusterBackendWithSecret(name, secret string) {
	h.createClusterBackend(name, h.backend.URL, func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = secret })
}

// crashOnceAfterCreate arms the controller's test seam: the first pass that created a backend
// token signals crashed and holds there until the manager is stopped, as a kill would.
func crashOnceAfterCreate(crashed chan<- struct{}) func(*controllers.Options) {
	armed := true
	return func(o *controllers.Options) {
		o.ReconcilerOptions = append(o.ReconcilerOptions, apitoken.WithAfterCreate(func(ctx context.Context, tok *tokensv1alpha1.APIToken) error {
			if !armed {
				return nil
			}
			armed = false
			crashed <- struct{}{}
			<-ctx.Done()
			return errors.New("simulated crash after the backend create")
		}))
	}
}

// TestCrashBetweenCreateAndSecretWrite stops the reconciler right after the backend create
// and before the Secret write, restarts the manager, and checks that the retry replays.
func TestCrashBetweenCreateAndSecretWrite(t *testing.T) {
	crashed := make(chan struct{}, 1)
	h := newHarness(t, crashOnceAfterCreate(crashed))
	g := NewWithT(t)
	tok := h.create(h.newToken("crashy", tokensv1alpha1.PermissionReadOnly))
	g.Eventually(crashed).WithTimeout(15 * time.Second).Should(Receive())
	h.stopMgr()
	g.Expect(h.secret("crashy")).To(BeNil(), "the crash came before the Secret write")
	created := h.backend.Server.Stats().TokensCreated
	g.Expect(created).To(BeEquivalentTo(1), "one create before the crash")
	h.startManager()

	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backend.Server.Stats().TokensCreated).To(Equal(created), "the retry replayed instead of creating another token")
	g.Expect(h.backend.Server.Stats().Replays).To(BeEquivalentTo(1), "one replay: the retry after the restart")
	active := h.activeBackendTokens(got.UID)
	g.Expect(active).To(HaveLen(1))
	g.Expect(active[0].ID).To(Equal(got.Status.TokenID))
	g.Expect(h.useToken(h.secret("crashy").Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
}

// TestCrashWithLostReplaySweepsOrphan: the backend restarts (losing its in-memory replay)
// between the crash and the retry; the orphaned first token is deactivated.
func TestCrashWithLostReplaySweepsOrphan(t *testing.T) {
	crashed := make(chan struct{}, 1)
	h := newHarness(t, crashOnceAfterCreate(crashed))
	g := NewWithT(t)
	tok := h.create(h.newToken("orphan", tokensv1alpha1.PermissionReadOnly))
	g.Eventually(crashed).WithTimeout(15 * time.Second).Should(Receive())
	h.stopMgr()
	h.backend.Restart(t)
	h.startManager()
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	active := h.activeBackendTokens(got.UID)
	g.Expect(active).To(HaveLen(1))
	g.Expect(active[0].ID).To(Equal(got.Status.TokenID))
	all, err := h.admin.ListTokens(h.ctx, native.ListOptions{ExternalID: string(got.UID)})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).To(HaveLen(2), "the orphan exists and is inactive")
}

// TestWritesAreCounted: 50 new tokens cost at most 3 API writes and exactly 1 backend write
// each; a manager restart costs no backend write.
func TestWritesAreCounted(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	const n = 50
	h.writes.reset()
	before := h.backend.Server.Stats()
	start := readQueueState(t)
	for i := 0; i < n; i++ {
		h.create(h.newToken("bulk-"+strconv.Itoa(i), tokensv1alpha1.PermissionReadOnly))
	}
	g.Eventually(func() int {
		var list tokensv1alpha1.APITokenList
		_ = h.c.List(h.ctx, &list, client.InNamespace(h.ns))
		ready := 0
		for _, t := range list.Items {
			if meta.IsStatusConditionTrue(t.Status.Conditions, tokensv1alpha1.ConditionReady) {
				ready++
			}
		}
		return ready
	}).WithTimeout(60 * time.Second).Should(Equal(n))
	// Every follow-up pass the issues caused has run (the queue is empty, no worker busy).
	h.waitReconciled(start, n)
	after := h.backend.Server.Stats()
	// The backend's credentials Secret gets its finalizer once: a write per backend, not per token.
	credentialWrites := h.writes.total("/secrets/admin")
	g.Expect(credentialWrites).To(Equal(1))
	apiWrites := h.writes.total("/apitokens") + h.writes.total("/secrets") - credentialWrites
	h.writes.mu.Lock()
	byVerb := map[string]int{}
	for k, v := range h.writes.counts {
		verb := k[:strings.Index(k, " ")]
		if strings.HasSuffix(k, "/status") {
			verb += " status"
		}
		byVerb[verb] += v
	}
	h.writes.mu.Unlock()
	t.Logf("API writes by kind: %v", byVerb)
	t.Logf("%d tokens: %d API writes (%.2f per token), %d backend writes", n, apiWrites, float64(apiWrites)/n, after.WriteRequests-before.WriteRequests)
	g.Expect(apiWrites).To(BeNumerically("<=", 3*n))
	g.Expect(h.writes.total("/secrets") - credentialWrites).To(Equal(n))
	g.Expect(after.TokensCreated - before.TokensCreated).To(BeEquivalentTo(n))
	g.Expect(after.WriteRequests-before.WriteRequests).To(BeEquivalentTo(n), "exactly one backend write per token")

	// Restart: everything is re-verified from the cache; no backend writes, no API writes.
	h.writes.reset()
	before = h.backend.Server.Stats()
	h.stopMgr()
	stopped := readQueueState(t)
	h.startManager()
	// Not a sleep: every APIToken has been reconciled by the new manager and its queue is
	// empty before "no writes" is asserted.
	h.waitReconciled(stopped, n)
	after = h.backend.Server.Stats()
	g.Expect(after.WriteRequests - before.WriteRequests).To(BeZero())
	h.writes.mu.Lock()
	afterRestart := maps.Clone(h.writes.counts)
	h.writes.mu.Unlock()
	g.Expect(h.writes.total("/apitokens")+h.writes.total("/secrets")).To(BeZero(), "writes after the restart: %v\n%s", afterRestart, lastPatches(h.logs.String(), 5))
}

// lastPatches returns the last n status patches in a manager log, to say what changed.
func lastPatches(log string, n int) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Patching status") {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// TestTransientBackendErrorIsRetried: a backend that goes away after being checked makes
// the issue fail transiently (Reconciling, kstatus InProgress); the failure triggers a
// re-check of the backend, and its recovery wakes the token at once.
func TestTransientBackendErrorIsRetried(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	h.backend.Close()
	tok := h.create(h.newToken("retrying", tokensv1alpha1.PermissionReadOnly))
	g.Eventually(func(g Gomega) {
		got := h.get(tok.Name)
		c := h.readyCondition(got)
		g.Expect(c).NotTo(BeNil())
		// First the failed call (BackendError), then, once the backend's re-check found it
		// down, BackendNotReady: both are "in progress" and say why.
		g.Expect(c.Reason).To(BeElementOf(tokensv1alpha1.ReasonBackendError, tokensv1alpha1.ReasonBackendNotReady))
		g.Expect(c.Message).To(Or(ContainSubstring("Retrying with backoff"), ContainSubstring("BackendUnreachable")))
		g.Expect(got.Status.Phase).To(Equal(tokensv1alpha1.PhasePending))
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionReconciling)).To(BeTrue())
		g.Expect(kstatusOf(t, got)).To(Equal(status.InProgressStatus))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Eventually(func() string { return h.readyCondition(h.get(tok.Name)).Reason }).WithTimeout(15*time.Second).
		Should(Equal(tokensv1alpha1.ReasonBackendNotReady), "the outage was noticed by the backend re-check")
	// A token waiting for its backend has no retry scheduled (BackendNotReady returns no
	// requeue): only the backend's re-registration can wake it, so reaching Issued at all
	// shows the recovery woke it, whatever the machine's speed.
	h.backend.Restart(t)
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.activeBackendTokens(got.UID)).To(HaveLen(1))
}
