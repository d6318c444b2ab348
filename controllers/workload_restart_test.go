package controllers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
)

func withRestarts(o *controllers.Options) {
	o.RestartWorkloads = true
	o.RestartDebounce = time.Second
}

// inNamespace is the harness acting in another namespace its manager watches (the test adds
// it to WatchNamespaces); the backend, client and manager are shared.
func (h *harness) inNamespace(ns string) *harness {
	other := *h
	other.ns = ns
	return &other
}

// otherNamespace creates a namespace for a test's second tenant.
func otherNamespace(t *testing.T) string {
	t.Helper()
	ensureEnv(t)
	ns := fmt.Sprintf("t%d-other", nsCounter.Add(1))
	NewWithT(t).Expect(env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	return ns
}

func deployment(h *harness, name, consent string) *appsv1.Deployment {
	h.t.Helper()
	two := int32(2)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}}
	if consent != "" {
		d.Annotations = map[string]string{tokensv1alpha1.AnnotationRestartOnRotate: consent}
	}
	d.Spec.Replicas = &two
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Labels = map[string]string{"app": name}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "example.invalid/panel:1"}}
	NewWithT(h.t).Expect(h.c.Create(h.ctx, d)).To(Succeed())
	return d
}

func getDeployment(h *harness, name string) *appsv1.Deployment {
	var d appsv1.Deployment
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &d); err != nil {
		return nil
	}
	return &d
}

// observedHash is the workload's memory of the hash it last rolled out for: a label, which
// bumps no Deployment's generation (an annotation does).
func observedHash(h *harness, name string) string {
	return getDeployment(h, name).Labels["tokens.statusops.dev/observed-tokens-hash"]
}

// rolloutStarted: the operator set the pod-template annotation, so the workload rolls out.
func rolloutStarted(h *harness, name string) bool {
	_, ok := getDeployment(h, name).Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]
	return ok
}

// optedIn creates a Deployment naming the APIToken, plays its first rollout and waits until the
// operator has recorded its memory.
func optedIn(h *harness, name, token string) {
	h.t.Helper()
	deployment(h, name, token)
	completeRollout(h, name)
	NewWithT(h.t).Eventually(func() string { return observedHash(h, name) }).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
}

// completeRollout plays the Deployment controller (envtest runs none): the current
// template is rolled out to every replica.
func completeRollout(h *harness, name string) {
	h.t.Helper()
	NewWithT(h.t).Eventually(func() error {
		d := getDeployment(h, name)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2}
		return h.c.Status().Update(h.ctx, d)
	}).Should(Succeed())
}

// TestRestartOnRotate: opting in rolls nothing out; a rotation rolls the workload out once,
// after the debounce; two tokens rotating together give one rollout; an operator restart
// patches nothing; a workload without consent is never touched; and the predecessor stays
// active until the rollout has completed, even when it is unused.
func TestRestartOnRotate(t *testing.T) {
	// A debounce of a few seconds: the two rotations below are two annotations, issued one
	// after the other, and must land within it even on a loaded CI machine.
	h := newHarness(t, withRestarts, func(o *controllers.Options) { o.RestartDebounce = 4 * time.Second })
	g := NewWithT(t)
	rot := withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute), RetireWhenUnused: &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: time.Second}}})
	a := h.waitFor(h.create(h.newToken("panel-a", tokensv1alpha1.PermissionReadOnly, rot)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	b := h.waitFor(h.create(h.newToken("panel-b", tokensv1alpha1.PermissionReadOnly, rot)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	deployment(h, "consenting", "panel-a, panel-b")
	deployment(h, "bystander", "")
	completeRollout(h, "consenting")

	// Opting in: the workload remembers the hash, its template is untouched.
	g.Eventually(func() string { return observedHash(h, "consenting") }).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
	g.Expect(getDeployment(h, "consenting").Spec.Template.Annotations).NotTo(HaveKey(tokensv1alpha1.AnnotationTokensHash), "opting in causes no rollout")
	optedIn := getDeployment(h, "consenting").Generation
	g.Expect(optedIn).To(BeEquivalentTo(1), "the memory is a label, which bumps no generation")

	// Both tokens rotate together: one rollout.
	annotate(h, a.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	annotate(h, b.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	a2 := waitForNewToken(h, a.Name, a.Status.TokenID)
	waitForNewToken(h, b.Name, b.Status.TokenID)
	g.Eventually(func() map[string]string { return getDeployment(h, "consenting").Spec.Template.Annotations }).WithTimeout(15 * time.Second).Should(HaveKey(tokensv1alpha1.AnnotationTokensHash))
	g.Consistently(func() int64 { return getDeployment(h, "consenting").Generation }).WithTimeout(6*time.Second).Should(Equal(optedIn+1), "two tokens rotating together cause one rollout (one patch)")
	g.Expect(h.expectEvent(a.Name, tokensv1alpha1.EventRolloutTriggered)).To(ContainSubstring("consenting"))

	// The successor is used and the predecessor quiet, but the rollout is not complete: the
	// predecessor stays.
	g.Expect(h.useToken(h.secret(a.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Consistently(func() []string { return previousIDsOf(h.get(a.Name)) }).WithTimeout(4 * time.Second).Should(Equal([]string{a.Status.TokenID}))
	g.Expect(h.backendToken(a.Status.TokenID).Status).To(Equal(backend.StatusActive))

	completeRollout(h, "consenting")
	g.Eventually(func() backend.TokenStatus { return h.backendToken(a.Status.TokenID).Status }).WithTimeout(15 * time.Second).Should(Equal(backend.StatusInactive))
	g.Eventually(func() []string { return previousIDsOf(h.get(a.Name)) }).WithTimeout(10 * time.Second).Should(BeEmpty())
	_ = a2

	// An operator restart patches no workload.
	gen := getDeployment(h, "consenting").ResourceVersion
	h.restartManager()
	g.Consistently(func() string { return getDeployment(h, "consenting").ResourceVersion }).WithTimeout(4 * time.Second).Should(Equal(gen))
	g.Expect(getDeployment(h, "bystander").Generation).To(BeEquivalentTo(1), "a workload without consent is never touched")
	g.Expect(getDeployment(h, "bystander").Labels).NotTo(HaveKey("tokens.statusops.dev/observed-tokens-hash"))
}

// TestRestartTargetMissing: a workload naming an APIToken that does not exist gets a Warning.
func TestRestartTargetMissing(t *testing.T) {
	h := newHarness(t, withRestarts)
	d := deployment(h, "typo", "no-such-token")
	NewWithT(t).Eventually(func(g Gomega) {
		note := eventNote(h, "Deployment", d.Name, tokensv1alpha1.EventRestartTargetMissing)
		g.Expect(note).To(ContainSubstring("no-such-token"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// eventNote returns the note of an Event with the reason on an object of the kind, or "".
func eventNote(h *harness, kind, name, reason string) string {
	var evs eventsv1.EventList
	if err := h.c.List(h.ctx, &evs, client.InNamespace(h.ns)); err != nil {
		return ""
	}
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == kind && e.Reason == reason {
			return e.Note
		}
	}
	return ""
}

// TestPausedDeploymentHoldsRetirementUntilGrace: a paused Deployment cannot roll out; the
// APIToken gets a RolloutBlocked Warning, and its predecessor is retired only when the grace
// period ends, with PredecessorStillInUse naming the workload.
func TestPausedDeploymentHoldsRetirementUntilGrace(t *testing.T) {
	h := newHarness(t, withRestarts)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("paused-panel", tokensv1alpha1.PermissionReadOnly, withRotation(tokensv1alpha1.RotationSpec{
		GracePeriod: dur(6 * time.Second), RetireWhenUnused: &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: time.Second}},
	}))).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	d := deployment(h, "paused", tok.Name)
	g.Eventually(func() error {
		cur := getDeployment(h, d.Name)
		cur.Spec.Paused = true
		return h.c.Update(h.ctx, cur)
	}).Should(Succeed())
	completeRollout(h, d.Name)
	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Expect(h.useToken(h.secret(tok.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventRolloutBlocked)).To(ContainSubstring("paused"))
	g.Consistently(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(3*time.Second).Should(Equal(backend.StatusActive), "unused, but the workload has not rolled out")
	g.Eventually(func() backend.TokenStatus { return h.backendToken(tok.Status.TokenID).Status }).WithTimeout(15 * time.Second).Should(Equal(backend.StatusInactive))
	g.Expect(h.expectEvent(tok.Name, tokensv1alpha1.EventPredecessorStillInUse)).To(ContainSubstring("Deployment/paused"))
}

// TestConcurrentRolloutsAreCapped: with --max-concurrent-restarts 1, a second workload waits
// until the first one's rollout is complete.
func TestConcurrentRolloutsAreCapped(t *testing.T) {
	h := newHarness(t, withRestarts, func(o *controllers.Options) { o.MaxConcurrentRestarts = 1 })
	g := NewWithT(t)
	a := h.waitFor(h.create(h.newToken("cap-a", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	b := h.waitFor(h.create(h.newToken("cap-b", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	for _, n := range []string{"first", "second"} {
		deployment(h, n, map[string]string{"first": a.Name, "second": b.Name}[n])
		completeRollout(h, n)
	}
	hashed := func(n string) bool { return rolloutStarted(h, n) }
	g.Eventually(func() string { return observedHash(h, "second") }).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
	annotate(h, a.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	g.Eventually(func() bool { return hashed("first") }).WithTimeout(15 * time.Second).Should(BeTrue())
	annotate(h, b.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, b.Name, b.Status.TokenID)
	g.Consistently(func() bool { return hashed("second") }).WithTimeout(4*time.Second).Should(BeFalse(), "the cap holds the second rollout while the first is in progress")
	completeRollout(h, "first")
	g.Eventually(func() bool { return hashed("second") }).WithTimeout(15 * time.Second).Should(BeTrue())
}

// TestRolloutSlotsAreSharedBetweenNamespaces: one namespace's rollouts that never complete
// (envtest runs no Deployment controller) hold no more than that namespace's share of the cap
// (a quarter of 4: one), so another namespace's workload is still rolled out after its debounce.
func TestRolloutSlotsAreSharedBetweenNamespaces(t *testing.T) {
	other := otherNamespace(t)
	h := newHarness(t, withRestarts, func(o *controllers.Options) {
		o.MaxConcurrentRestarts = 4
		o.WatchNamespaces = append(o.WatchNamespaces, other)
	})
	g := NewWithT(t)
	busy := h.waitFor(h.create(h.newToken("busy", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	var stuck []string
	for i := range 4 {
		stuck = append(stuck, fmt.Sprintf("stuck-%d", i))
		optedIn(h, stuck[i], busy.Name)
	}
	o := h.inNamespace(other)
	quiet := o.waitFor(o.create(o.newToken("quiet", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	optedIn(o, "panel", quiet.Name)

	started := func() int {
		n := 0
		for _, s := range stuck {
			if rolloutStarted(h, s) {
				n++
			}
		}
		return n
	}
	annotate(h, busy.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, busy.Name, busy.Status.TokenID)
	g.Eventually(started).WithTimeout(15 * time.Second).ShouldNot(BeZero())

	annotate(o, quiet.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(o, quiet.Name, quiet.Status.TokenID)
	// The debounce (1 s, counted from the end of the issue's second) and a few requeues.
	g.Eventually(func() bool { return rolloutStarted(o, "panel") }).WithTimeout(10*time.Second).Should(BeTrue(), "another namespace's stuck rollouts hold every slot")
	g.Expect(started()).To(Equal(1), "a namespace holds its share of the slots, no more")
}

// TestRolloutSlotIsReleased: with --max-concurrent-restarts 1, a rollout that never completes
// holds the one slot until its workload is deleted, or its rollout fails (Progressing=False,
// ProgressDeadlineExceeded); then the next workload is rolled out.
func TestRolloutSlotIsReleased(t *testing.T) {
	h := newHarness(t, withRestarts, func(o *controllers.Options) { o.MaxConcurrentRestarts = 1 })
	g := NewWithT(t)
	tokens := map[string]*tokensv1alpha1.APIToken{}
	for _, n := range []string{"gone", "failing", "next"} {
		tokens[n] = h.waitFor(h.create(h.newToken(n, tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
		optedIn(h, n, n)
	}
	rotate := func(n string) {
		annotate(h, n, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
		waitForNewToken(h, n, tokens[n].Status.TokenID)
	}
	started := func(n string) func() bool { return func() bool { return rolloutStarted(h, n) } }

	rotate("gone")
	g.Eventually(started("gone")).WithTimeout(15 * time.Second).Should(BeTrue())
	rotate("failing")
	g.Consistently(started("failing")).WithTimeout(3*time.Second).Should(BeFalse(), "the slot is held by the rollout in progress")
	g.Expect(h.c.Delete(h.ctx, getDeployment(h, "gone"))).To(Succeed())
	g.Eventually(started("failing")).WithTimeout(15*time.Second).Should(BeTrue(), "the deleted workload's slot was given back")

	rotate("next")
	g.Consistently(started("next")).WithTimeout(3*time.Second).Should(BeFalse(), "the slot is held by the rollout in progress")
	// The Deployment controller's verdict on a rollout that made no progress in time: one new
	// Pod never became available, and the rollout is not complete.
	g.Eventually(func() error {
		d := getDeployment(h, "failing")
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2, ReadyReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{{
				Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
				Message: `ReplicaSet "failing-1" has timed out progressing.`,
			}}}
		return h.c.Status().Update(h.ctx, d)
	}).Should(Succeed())
	g.Eventually(started("next")).WithTimeout(15*time.Second).Should(BeTrue(), "the failed rollout's slot was given back")
}

// TestOptingInRollsNothingOut: a Deployment created already opted in to an Active APIToken
// keeps generation 1 and its pod template; one that opts in later keeps the generation the
// person's annotation gave it.
func TestOptingInRollsNothingOut(t *testing.T) {
	h := newHarness(t, withRestarts)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("panel", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	deployment(h, "at-creation", tok.Name)
	deployment(h, "later", "")
	g.Eventually(func() error {
		d := getDeployment(h, "later")
		d.Annotations = map[string]string{tokensv1alpha1.AnnotationRestartOnRotate: tok.Name}
		return h.c.Update(h.ctx, d)
	}).Should(Succeed())

	// "later" is at 2: the person's annotation bumped it once.
	generations := func() []int64 {
		return []int64{getDeployment(h, "at-creation").Generation, getDeployment(h, "later").Generation}
	}
	// The debounce is 1 s: twice that and more.
	g.Consistently(generations).WithTimeout(5*time.Second).Should(Equal([]int64{1, 2}), "opting in rolls nothing out")
	for _, n := range []string{"at-creation", "later"} {
		g.Expect(rolloutStarted(h, n)).To(BeFalse(), n)
		g.Expect(observedHash(h, n)).NotTo(BeEmpty(), "%s: the operator has seen it", n)
	}
}

// TestFirstIssueIsNoRotation: a workload applied together with its APIToken is not rolled out
// when the token is issued for the first time (its Pods wait for the Secret and pick it up),
// whether the operator saw the workload before the APIToken or with it not issued yet; a
// rotation later rolls it out once.
func TestFirstIssueIsNoRotation(t *testing.T) {
	h := newHarness(t, withRestarts)
	g := NewWithT(t)
	deployment(h, "early", "fresh")
	g.Eventually(func() string { return observedHash(h, "early") }).WithTimeout(10*time.Second).ShouldNot(BeEmpty(), "remembered over a token that does not exist yet")
	missing := observedHash(h, "early")
	h.create(h.newToken("fresh", tokensv1alpha1.PermissionReadOnly))
	deployment(h, "together", "fresh")
	tok := h.waitFor("fresh", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Eventually(func() string { return observedHash(h, "early") }).WithTimeout(10*time.Second).ShouldNot(Equal(missing), "the memory follows the first issue")

	names := []string{"early", "together"}
	generations := func() []int64 {
		return []int64{getDeployment(h, "early").Generation, getDeployment(h, "together").Generation}
	}
	// The debounce is 1 s, counted from the end of the issue's second: twice that and more.
	g.Consistently(generations).WithTimeout(5*time.Second).Should(Equal([]int64{1, 1}), "a first issue is no rotation")
	for _, n := range names {
		g.Expect(rolloutStarted(h, n)).To(BeFalse(), n)
	}

	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Eventually(func() bool { return rolloutStarted(h, "early") && rolloutStarted(h, "together") }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Consistently(generations).WithTimeout(4*time.Second).Should(Equal([]int64{2, 2}), "a rotation rolls each out once")
}

// TestMemoryFromAnOlderVersion: a workload opted in by a version that kept the memory in an
// annotation is not patched when the hash it holds is current (not even to move it to the
// label: that would bump its generation), and a rotation rolls it out once, writing the label.
func TestMemoryFromAnOlderVersion(t *testing.T) {
	h := newHarness(t, withRestarts)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("panel", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	// The hash as every version computes it: sha256 of "name=tokenID\n" per named APIToken,
	// the first 32 hex digits. Changing it would roll out every opted-in workload on upgrade.
	sum := sha256.Sum256([]byte(tok.Name + "=" + tok.Status.TokenID + "\n"))
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "upgraded", Annotations: map[string]string{
		tokensv1alpha1.AnnotationRestartOnRotate:    tok.Name,
		"tokens.statusops.dev/observed-tokens-hash": hex.EncodeToString(sum[:])[:32],
	}}}
	one := int32(1)
	d.Spec.Replicas = &one
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": d.Name}}
	d.Spec.Template.Labels = map[string]string{"app": d.Name}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "example.invalid/panel:1"}}
	g.Expect(h.c.Create(h.ctx, d)).To(Succeed())
	rv := d.ResourceVersion
	g.Consistently(func() string { return getDeployment(h, d.Name).ResourceVersion }).WithTimeout(3*time.Second).Should(Equal(rv), "an up-to-date memory is not rewritten")

	annotate(h, tok.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, tok.Name, tok.Status.TokenID)
	g.Eventually(func() bool { return rolloutStarted(h, d.Name) }).WithTimeout(15 * time.Second).Should(BeTrue())
	g.Consistently(func() int64 { return getDeployment(h, d.Name).Generation }).WithTimeout(3*time.Second).Should(BeEquivalentTo(2), "one rollout")
	g.Expect(observedHash(h, d.Name)).To(Equal(getDeployment(h, d.Name).Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]))
}

// TestFirstIssueDoesNotHoldRetirement: an APIToken the workload names that is issued its first
// token after a rollout (it was created later) does not keep another named token's
// predecessor waiting for the grace period: the rollout carried every token id that was set.
func TestFirstIssueDoesNotHoldRetirement(t *testing.T) {
	h := newHarness(t, withRestarts)
	g := NewWithT(t)
	rot := withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute), RetireWhenUnused: &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: time.Second}}})
	a := h.waitFor(h.create(h.newToken("used", tokensv1alpha1.PermissionReadOnly, rot)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	optedIn(h, "panel", "used, later")
	annotate(h, a.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, a.Name, a.Status.TokenID)
	g.Eventually(func() bool { return rolloutStarted(h, "panel") }).WithTimeout(15 * time.Second).Should(BeTrue())

	h.waitFor(h.create(h.newToken("later", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.useToken(h.secret(a.Name).Data["token"], http.MethodGet, "/boards")).To(Equal(http.StatusOK))
	completeRollout(h, "panel")
	g.Eventually(func() backend.TokenStatus { return h.backendToken(a.Status.TokenID).Status }).WithTimeout(15*time.Second).Should(Equal(backend.StatusInactive), "retired once the rollout is complete, not after the grace period")
	g.Expect(getDeployment(h, "panel").Generation).To(BeEquivalentTo(2), "one rollout: the first issue rolled nothing out")
}
