package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// TestRestartOnRotateOnTheSimulatedNode is the restart feature on a cluster where
// Deployments really roll out (kube-controller-manager, kube-scheduler, kwok): five tokens
// rotating together give exactly one new ReplicaSet; opting in and an operator restart
// give none; a workload without consent is never touched; and the predecessor stays active
// while the rollout is in progress, and is retired after it.
func TestRestartOnRotateOnTheSimulatedNode(t *testing.T) {
	e := startWorkloadEnv(t, func(o *devenv.Options) {
		o.RestartWorkloads = true
		o.ManagerArgs = append(o.ManagerArgs, "--restart-debounce=2s", "--sync-interval=1s")
	})
	g := NewWithT(t)
	ctx := t.Context()
	const ns = "restart"
	createNamespace(t, e, ns)
	var names []string
	for i := range 5 {
		n := fmt.Sprintf("panel-%d", i)
		names = append(names, n)
		applyManifest(t, e, tokenManifest(ns, n, "ReadOnly", "  rotation: {gracePeriod: 2m, retireWhenUnused: {quietPeriod: 2s}}\n"))
	}
	waitReady(t, e, ns, names...)

	consenting := strings.Replace(deploymentManifest(ns, "consenting"), "  namespace: "+ns+"\n",
		"  namespace: "+ns+"\n  annotations:\n    tokens.statusops.dev/restart-on-rotate: \""+strings.Join(names, ",")+"\"\n", 1)
	// Each new Pod becomes Ready only after 3 s, so a rollout is in progress for a while.
	consenting = strings.Replace(consenting, "      labels: {app: consenting}\n", fmt.Sprintf("      labels: {app: consenting}\n      annotations: {%q: \"3s\"}\n", devenv.PodReadyDelayAnnotation), 1)
	applyManifest(t, e, consenting)
	applyManifest(t, e, deploymentManifest(ns, "bystander"))
	d := &appsv1.Deployment{}
	d.Namespace, d.Name = ns, "consenting"
	g.Expect(e.WaitRolloutComplete(ctx, rolloutTimeout, d)).To(Succeed())
	replicaSets := func() int {
		rs, err := e.ReplicaSetsOf(ctx, d)
		g.Expect(err).NotTo(HaveOccurred())
		return len(rs)
	}
	g.Eventually(func() string {
		_ = e.Client.Get(ctx, client.ObjectKeyFromObject(d), d)
		return d.Labels["tokens.statusops.dev/observed-tokens-hash"]
	}).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
	g.Consistently(replicaSets).WithTimeout(3*time.Second).Should(Equal(1), "opting in causes no rollout")

	old := getAPIToken(t, e, ns, names[0]).Status.TokenID
	for _, n := range names {
		kubectl(t, e, "annotate", "apitoken", n, "-n", ns, "--overwrite", "tokens.statusops.dev/rotate-requested-at=r1")
	}
	g.Eventually(func() bool {
		for _, n := range names {
			if getAPIToken(t, e, ns, n).Status.TokenID == "" {
				return false
			}
		}
		return getAPIToken(t, e, ns, names[0]).Status.TokenID != old
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	// The successor is used at once; without the rollout the quiet predecessor would go.
	newValue := readSecret(t, e, ns, names[0]).Data["token"]
	code, _ := callBackend(t, http.MethodGet, e.BackendURL+"/boards", newValue, "")
	g.Expect(code).To(Equal(http.StatusOK))

	g.Eventually(replicaSets).WithTimeout(20 * time.Second).Should(Equal(2))
	began := time.Now()
	g.Consistently(func() (bool, error) {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		done, _ := devenv.RolloutComplete(d)
		return done || getBackendToken(t, e, old).Status == "active", nil
	}).WithTimeout(2*time.Second).Should(BeTrue(), "while the rollout is in progress the predecessor is active")
	g.Expect(e.WaitRolloutComplete(ctx, rolloutTimeout, d)).To(Succeed())
	g.Eventually(func() string { return getBackendToken(t, e, old).Status }).WithTimeout(20 * time.Second).Should(Equal("inactive"))
	t.Logf("rollout complete and predecessor retired %s after the new ReplicaSet appeared", time.Since(began).Round(100*time.Millisecond))
	g.Consistently(replicaSets).WithTimeout(4*time.Second).Should(Equal(2), "five tokens rotating together gave exactly one new ReplicaSet")

	// An operator restart patches no workload.
	generation := d.Generation
	g.Expect(e.RestartManager(ctx)).To(Succeed())
	g.Consistently(func() int64 {
		_ = e.Client.Get(ctx, client.ObjectKeyFromObject(d), d)
		return d.Generation
	}).WithTimeout(5*time.Second).Should(Equal(generation), "an operator restart patches no workload")
	g.Expect(replicaSets()).To(Equal(2))

	by := &appsv1.Deployment{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bystander"}, by)).To(Succeed())
	g.Expect(by.Generation).To(BeEquivalentTo(1), "a workload without consent is never touched")
	g.Expect(by.Spec.Template.Annotations).NotTo(HaveKey("tokens.statusops.dev/tokens-hash"))
}
