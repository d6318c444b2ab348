package controllers_test

import (
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
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/operator"
)

func withRestarts(o *operator.Options) {
	o.RestartWorkloads = true
	o.RestartDebounce = time.Second
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
	h := newHarness(t, withRestarts, func(o *operator.Options) { o.RestartDebounce = 4 * time.Second })
	g := NewWithT(t)
	rot := withRotation(tokensv1alpha1.RotationSpec{GracePeriod: dur(10 * time.Minute), RetireWhenUnused: &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: time.Second}}})
	a := h.waitFor(h.create(h.newToken("panel-a", tokensv1alpha1.PermissionReadOnly, rot)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	b := h.waitFor(h.create(h.newToken("panel-b", tokensv1alpha1.PermissionReadOnly, rot)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	deployment(h, "consenting", "panel-a, panel-b")
	deployment(h, "bystander", "")
	completeRollout(h, "consenting")

	// Opting in: the workload remembers the hash, its template is untouched.
	g.Eventually(func() string {
		return getDeployment(h, "consenting").Annotations["tokens.statusops.dev/observed-tokens-hash"]
	}).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
	// (The annotation bumps a Deployment's generation, as any annotation does, but the pod
	// template, and so the Pods, are untouched.)
	g.Expect(getDeployment(h, "consenting").Spec.Template.Annotations).NotTo(HaveKey(tokensv1alpha1.AnnotationTokensHash), "opting in causes no rollout")
	optedIn := getDeployment(h, "consenting").Generation

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
	g.Expect(getDeployment(h, "bystander").Annotations).NotTo(HaveKey("tokens.statusops.dev/observed-tokens-hash"))
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
	h := newHarness(t, withRestarts, func(o *operator.Options) { o.MaxConcurrentRestarts = 1 })
	g := NewWithT(t)
	a := h.waitFor(h.create(h.newToken("cap-a", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	b := h.waitFor(h.create(h.newToken("cap-b", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	for _, n := range []string{"first", "second"} {
		deployment(h, n, map[string]string{"first": a.Name, "second": b.Name}[n])
		completeRollout(h, n)
	}
	hashed := func(n string) bool {
		_, ok := getDeployment(h, n).Spec.Template.Annotations[tokensv1alpha1.AnnotationTokensHash]
		return ok
	}
	g.Eventually(func() string {
		return getDeployment(h, "second").Annotations["tokens.statusops.dev/observed-tokens-hash"]
	}).WithTimeout(10 * time.Second).ShouldNot(BeEmpty())
	annotate(h, a.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	g.Eventually(func() bool { return hashed("first") }).WithTimeout(15 * time.Second).Should(BeTrue())
	annotate(h, b.Name, tokensv1alpha1.AnnotationRotateRequestedAt, "r1")
	waitForNewToken(h, b.Name, b.Status.TokenID)
	g.Consistently(func() bool { return hashed("second") }).WithTimeout(4*time.Second).Should(BeFalse(), "the cap holds the second rollout while the first is in progress")
	completeRollout(h, "first")
	g.Eventually(func() bool { return hashed("second") }).WithTimeout(15 * time.Second).Should(BeTrue())
}
