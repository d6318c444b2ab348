package controllers_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// legacyToken makes a token the way a team made one before the operator: by hand, with no
// external_id and no labels, its value in a Secret of their own.
func legacyToken(h *harness, secret string, perm backend.Permission) *native.CreatedToken {
	h.t.Helper()
	created := h.backend.IssueToken(h.t, native.CreateRequest{Name: "legacy " + secret, Permission: perm})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: secret}, Data: map[string][]byte{"token": []byte(created.Value.Reveal())}}
	NewWithT(h.t).Expect(h.c.Create(h.ctx, s)).To(Succeed())
	return created
}

func adopting(id, secret string) func(*tokensv1alpha1.APIToken) {
	return func(t *tokensv1alpha1.APIToken) {
		t.Spec.Adopt = &tokensv1alpha1.AdoptSpec{TokenID: id, SecretRef: tokensv1alpha1.AdoptSecretReference{Name: secret}}
	}
}

// TestAdoptInPlace: a legacy token is verified with its own value (no write), claimed (one
// write), and its Secret taken over in place with the value byte-identical. From then on it
// is managed like any token: deleting the APIToken revokes it.
func TestAdoptInPlace(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	legacy := legacyToken(h, "legacy-status-token", backend.PermissionReadOnly)
	before := h.backend.Server.Stats()
	tok := h.create(h.newToken("legacy-status-token", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "legacy-status-token")))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
	after := h.backend.Server.Stats()

	g.Expect(after.WriteRequests-before.WriteRequests).To(BeEquivalentTo(1), "exactly one backend write: the claim")
	g.Expect(after.TokensCreated - before.TokensCreated).To(BeZero())
	g.Expect(got.Status.TokenID).To(Equal(legacy.ID))
	g.Expect(got.Status.TokenHint).To(Equal("..." + legacy.Value.Reveal()[len(legacy.Value.Reveal())-4:]))
	s := h.secret(tok.Name)
	g.Expect(s.Data["token"]).To(Equal([]byte(legacy.Value.Reveal())), "the value is byte-identical")
	g.Expect(metav1.IsControlledBy(s, got)).To(BeTrue(), "the Secret was taken over in place")
	g.Expect(s.Data["tokenID"]).To(Equal([]byte(legacy.ID)))
	g.Expect(h.backendToken(legacy.ID).ExternalID).To(Equal(string(got.UID)))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventAdopted)).To(ContainSubstring("without changing its value"))
	g.Consistently(func() string { return h.get(tok.Name).Status.TokenID }).WithTimeout(3*time.Second).Should(Equal(legacy.ID), "stays adopted: no replacement")

	g.Expect(h.c.Delete(h.ctx, got)).To(Succeed())
	g.Eventually(func() bool { return h.get(tok.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Expect(h.backendToken(legacy.ID).Status).To(Equal(backend.StatusInactive), "managed like any token: Revoke deactivates it")
}

// TestAdoptLegacyFullAccessAsReadOnly carries out the product note's advice in one apply: a
// legacy FullAccess token adopted with permission ReadOnly is replaced by a ReadOnly one,
// with the grace period as overlap.
func TestAdoptLegacyFullAccessAsReadOnly(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	legacy := legacyToken(h, "legacy-bot", backend.PermissionFullAccess)
	tok := h.create(h.newToken("bot", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "legacy-bot"), withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(4 * time.Second)})))
	got := waitForNewToken(h, tok.Name, legacy.ID)
	g.Expect(got.Status.Permission).To(Equal(tokensv1alpha1.PermissionReadOnly))
	g.Expect(h.backendToken(got.Status.TokenID).Permission).To(Equal(backend.PermissionReadOnly))
	g.Expect(h.useToken([]byte(legacy.Value.Reveal()), http.MethodGet, "/boards")).To(Equal(http.StatusOK), "the legacy value works during the overlap")
	g.Expect(h.secret("legacy-bot").Data["token"]).To(Equal([]byte(legacy.Value.Reveal())), "the user's own Secret is left as it was")
	g.Eventually(func() backend.TokenStatus { return h.backendToken(legacy.ID).Status }).WithTimeout(20 * time.Second).Should(Equal(backend.StatusInactive))
}

// TestAdoptionRefusals: each refusal has its reason, makes no backend write, and never puts
// the value in a message.
func TestAdoptionRefusals(t *testing.T) {
	h := newHarness(t)
	owned := h.waitFor(h.create(h.newToken("owner", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	ownedValue := h.secret("owner").Data["token"]
	other := legacyToken(h, "other-legacy", backend.PermissionReadOnly)
	wrong := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "not-a-token"}, Data: map[string][]byte{"token": []byte("sgt_not-a-real-token-value-123456")}}
	admin := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "admin-copy"}, Data: map[string][]byte{"token": []byte(h.backend.AdminToken)}}
	stolen := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "stolen"}, Data: map[string][]byte{"token": ownedValue}}
	for _, s := range []*corev1.Secret{wrong, admin, stolen} {
		NewWithT(t).Expect(h.c.Create(h.ctx, s)).To(Succeed())
	}
	self, err := h.admin.Self(h.ctx)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	cases := []struct {
		name, id, secret, reason string
		value                    []byte
	}{
		{name: "value does not authenticate", id: other.ID, secret: "not-a-token", reason: tokensv1alpha1.ReasonAdoptionFailed, value: wrong.Data["token"]},
		{name: "value names another token", id: other.ID, secret: "admin-copy", reason: tokensv1alpha1.ReasonAdoptionFailed, value: admin.Data["token"]},
		{name: "the admin credential", id: self.ID, secret: "admin-copy", reason: tokensv1alpha1.ReasonAdoptionForbidden, value: admin.Data["token"]},
		{name: "another APIToken's token", id: owned.Status.TokenID, secret: "stolen", reason: tokensv1alpha1.ReasonAlreadyManaged, value: ownedValue},
		{name: "missing Secret", id: other.ID, secret: "nowhere", reason: tokensv1alpha1.ReasonAdoptionFailed},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := h.backend.Server.Stats().WriteRequests
			tok := h.create(h.newToken("refused-"+string(rune('a'+i)), tokensv1alpha1.PermissionReadOnly, adopting(tc.id, tc.secret)))
			got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tc.reason)
			g.Expect(condStatus(got, tokensv1alpha1.ConditionStalled)).To(Equal(metav1.ConditionTrue))
			g.Expect(h.backend.Server.Stats().WriteRequests-before).To(BeZero(), "a refusal writes nothing to the backend")
			if tc.value != nil {
				g.Expect(h.readyCondition(got).Message).NotTo(ContainSubstring(string(tc.value)))
			}
			g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty())
		})
	}
	NewWithT(t).Expect(h.backendToken(owned.Status.TokenID).ExternalID).To(Equal(string(owned.UID)), "the owner keeps its token")
}

// TestAdoptionRace: two APITokens adopting one token end with one Adopted and one
// AlreadyManaged (the claim is a compare-and-set).
func TestAdoptionRace(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	legacy := legacyToken(h, "shared-legacy", backend.PermissionReadOnly)
	a := h.create(h.newToken("racer-a", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "shared-legacy")))
	b := h.create(h.newToken("racer-b", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "shared-legacy")))
	reasons := func() []string {
		var out []string
		for _, n := range []string{a.Name, b.Name} {
			if c := h.readyCondition(h.get(n)); c != nil {
				out = append(out, c.Reason)
			}
		}
		return out
	}
	g.Eventually(reasons).WithTimeout(20 * time.Second).Should(ConsistOf(tokensv1alpha1.ReasonAdopted, tokensv1alpha1.ReasonAlreadyManaged))
}

// TestAdoptionWaitsForItsSecret: a missing secretRef Secret is a clear condition, and the
// adoption proceeds as soon as the Secret appears (watch, not poll).
func TestAdoptionWaitsForItsSecret(t *testing.T) {
	h := newHarness(t)
	legacy := h.backend.IssueToken(t, native.CreateRequest{Name: "late", Permission: backend.PermissionReadOnly})
	tok := h.create(h.newToken("late", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "late-secret")))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonAdoptionFailed)
	NewWithT(t).Expect(h.readyCondition(got).Message).To(ContainSubstring("late-secret"))
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "late-secret"}, Data: map[string][]byte{"token": []byte(legacy.Value.Reveal())}}
	NewWithT(t).Expect(h.c.Create(h.ctx, s)).To(Succeed())
	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
}

// TestAdoptUnderRetain: an adopted token deleted under deletionPolicy Retain stays active
// and keeps working, and its Secret (the user's own, taken over in place) is released with
// the value byte-identical. From creation to deletion the backend saw one write: the claim.
func TestAdoptUnderRetain(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	legacy := legacyToken(h, "kept-token", backend.PermissionReadOnly)
	before := h.backend.Server.Stats()
	tok := h.create(h.newToken("kept-token", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "kept-token"), func(t *tokensv1alpha1.APIToken) {
		t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
	g.Expect(metav1.IsControlledBy(h.secret(tok.Name), got)).To(BeTrue())

	g.Expect(h.c.Delete(h.ctx, got)).To(Succeed())
	g.Eventually(func() bool { return h.get(tok.Name) == nil }).WithTimeout(15 * time.Second).Should(BeTrue())
	after := h.backend.Server.Stats()
	g.Expect(after.WriteRequests-before.WriteRequests).To(BeEquivalentTo(1), "the claim only: nothing deactivated")
	g.Expect(h.backendToken(legacy.ID).Status).To(Equal(backend.StatusActive), "Retain leaves the adopted token active")
	s := h.secret(tok.Name)
	g.Expect(s).NotTo(BeNil(), "the Secret stays")
	g.Expect(s.Data["token"]).To(Equal([]byte(legacy.Value.Reveal())), "byte-identical")
	g.Expect(metav1.GetControllerOf(s)).To(BeNil(), "released: no owner, so nothing garbage-collects it")
	g.Expect(h.useToken(s.Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK), "and it still works")
}

// TestAdoptedTokenExpiringBeforeSpec: the adopted token expires on the backend before
// spec.expiresAt. Adoption records the backend's expiry (status.expiresAt), which differs
// from the spec, so the token is replaced at once like any expiry change: with the grace
// period as overlap, an Event saying why, and status ending Ready=True Issued on a token
// that expires at spec.expiresAt. The legacy value works during the overlap, then is retired.
func TestAdoptedTokenExpiringBeforeSpec(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	created := h.backend.IssueToken(t, native.CreateRequest{Name: "legacy short", Permission: backend.PermissionReadOnly, ExpiresAt: &soon})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "short-lived"}, Data: map[string][]byte{"token": []byte(created.Value.Reveal())}}
	g.Expect(h.c.Create(h.ctx, s)).To(Succeed())
	want := metav1.NewTime(time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second))
	tok := h.create(h.newToken("short-lived", tokensv1alpha1.PermissionReadOnly, adopting(created.ID, "short-lived"),
		withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(4 * time.Second)}), func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &want }))

	got := waitForNewToken(h, tok.Name, created.ID)
	g.Expect(got.Status.AdoptedTokenID).To(Equal(created.ID), "it was adopted first")
	g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", want.Time), "status.expiresAt is the new token's backend expiry")
	g.Expect(*h.backendToken(got.Status.TokenID).ExpiresAt).To(BeTemporally("==", want.Time))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventReplaced)).To(ContainSubstring("the adopted token " + created.ID + " expires on the backend at " + soon.Format(time.RFC3339) + ", not at spec.expiresAt"))
	g.Expect(got.Status.PreviousTokens).To(ConsistOf(HaveField("TokenID", created.ID)), "the legacy value drains for the grace period")
	g.Expect(h.useToken([]byte(created.Value.Reveal()), http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Eventually(func() backend.TokenStatus { return h.backendToken(created.ID).Status }).WithTimeout(20 * time.Second).Should(Equal(backend.StatusInactive))
	g.Expect(h.readyCondition(h.get(tok.Name)).Status).To(Equal(metav1.ConditionTrue))
}

// TestAdoptionResumesAfterTheClaim: the operator was killed right after the claim, before
// the Secret was written (the token already carries this APIToken's UID, status names
// nothing). The next pass verifies again (an external_id equal to its own UID is no
// refusal), repeats the claim (repeatable) and writes the Secret: Adopted, no new token, the
// value byte-identical. A Secret without the key is a clear condition first.
func TestAdoptionResumesAfterTheClaim(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	legacy := h.backend.IssueToken(t, native.CreateRequest{Name: "interrupted", Permission: backend.PermissionReadOnly})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "interrupted-src"}, Data: map[string][]byte{"other-key": []byte("x")}}
	g.Expect(h.c.Create(h.ctx, s)).To(Succeed())
	tok := h.create(h.newToken("interrupted", tokensv1alpha1.PermissionReadOnly, adopting(legacy.ID, "interrupted-src")))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonAdoptionFailed)
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring(`has no key "token"`))

	claimed, err := h.admin.ClaimToken(h.ctx, legacy.ID, string(got.UID))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claimed.ExternalID).To(Equal(string(got.UID)))
	before := h.backend.Server.Stats()
	s.Data = map[string][]byte{"token": []byte(legacy.Value.Reveal())}
	g.Expect(h.c.Update(h.ctx, s)).To(Succeed())
	got = h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonAdopted)
	after := h.backend.Server.Stats()
	g.Expect(after.TokensCreated - before.TokensCreated).To(BeZero())
	g.Expect(after.WriteRequests-before.WriteRequests).To(BeEquivalentTo(1), "the repeated claim")
	g.Expect(got.Status.TokenID).To(Equal(legacy.ID))
	g.Expect(h.secret(tok.Name).Data["token"]).To(Equal([]byte(legacy.Value.Reveal())))
}
