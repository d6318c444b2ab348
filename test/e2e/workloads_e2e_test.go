package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/devenv"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// rolloutTimeout bounds one rollout of a small Deployment on the simulated Node. It takes
// under a second; the margin is for a loaded two-core machine.
const rolloutTimeout = 90 * time.Second

// startWorkloadEnv starts an environment of the test's own in which workloads roll out:
// besides the usual processes, kube-scheduler and kwok with one simulated Node
// (devenv.Options.Workloads). It has a temporary directory and free ports and is stopped when
// the test ends. configure, when not nil, adjusts the options first: ControlPlaneOnly for a
// test that needs no manager, ManagerArgs for one that does (e.g. --restart-workloads).
// Without kwok or kube-scheduler (`make controlplane` builds both) the test skips, or fails in
// CI.
func startWorkloadEnv(t *testing.T, configure func(*devenv.Options)) *devenv.Env {
	t.Helper()
	requirePrerequisites(t)
	kwokDir, err := devenv.FindKwokDir(testenv.RepoRoot())
	if err == nil {
		if _, statErr := os.Stat(filepath.Join(assetsDir, "kube-scheduler")); statErr != nil {
			err = fmt.Errorf("no kube-scheduler beside kube-apiserver in %s: run `make controlplane`", assetsDir)
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("workload binaries: %v", err)
		}
		t.Skipf("workload binaries missing (%v)", err)
	}
	opts := envOptions(filepath.Join(t.TempDir(), "env"))
	opts.Workloads = true
	opts.KwokDir = kwokDir
	if configure != nil {
		configure(&opts)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	e, err := devenv.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting an environment with workloads: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping the environment: %v", err)
		}
	})
	if !opts.ControlPlaneOnly {
		dumpLogOnFailure(t, e)
	}
	dumpWorkloadLogsOnFailure(t, e)
	return e
}

// dumpWorkloadLogsOnFailure prints, when the test failed, the end of the logs of the
// processes that make workloads roll out.
func dumpWorkloadLogsOnFailure(t *testing.T, e *devenv.Env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if out, err := kubectlErr(e, "get", "nodes,pods", "-A", "-o", "wide"); err == nil {
			t.Logf("nodes and pods:\n%s", out)
		}
		for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok"} {
			path := filepath.Join(e.LogDir, name+".log")
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			t.Logf("last lines of %s:\n%s", path, strings.Join(lines, "\n"))
		}
	})
}

// deploymentManifest is a Deployment of two replicas whose image is never pulled: kwok only
// pretends to run its Pods.
func deploymentManifest(namespace, name string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: 2
  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      containers:
      - name: app
        image: registry.invalid/never-pulled:1
`, namespace, name)
}

// TestDeploymentRollsOutOnTheSimulatedNode is the ground the restart-on-rotate feature stands
// on: a Deployment becomes available with no container runtime, and a change of its pod
// template (what the operator's tokens-hash annotation will be) rolls out to a new
// ReplicaSet, whose Pods replace the old ones completely.
func TestDeploymentRollsOutOnTheSimulatedNode(t *testing.T) {
	e := startWorkloadEnv(t, func(o *devenv.Options) { o.ControlPlaneOnly = true })
	g := NewWithT(t)
	ctx := t.Context()
	const ns, name = "rollout", "web"
	createNamespace(t, e, ns)

	began := time.Now()
	applyManifest(t, e, deploymentManifest(ns, name))
	d := &appsv1.Deployment{}
	d.Namespace, d.Name = ns, name
	g.Expect(e.WaitRolloutComplete(ctx, rolloutTimeout, d)).To(Succeed())
	t.Logf("created Deployment available after %s", time.Since(began).Round(100*time.Millisecond))
	expectRolledOut(g, d, 2)
	first, err := e.ReplicaSetsOf(ctx, d)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first).To(HaveLen(1))
	g.Expect(podsOf(ctx, g, e, ns, name)).To(ConsistOf(
		beReadyOnTheSimulatedNode(first[0].Labels[appsv1.DefaultDeploymentUniqueLabelKey]),
		beReadyOnTheSimulatedNode(first[0].Labels[appsv1.DefaultDeploymentUniqueLabelKey]),
	))

	// The restart the operator will trigger: an annotation on the pod template.
	generation := d.Generation
	began = time.Now()
	kubectl(t, e, "patch", "deployment", name, "-n", ns, "--type=merge",
		"-p", `{"spec":{"template":{"metadata":{"annotations":{"e2e.statusops.dev/restarted":"1"}}}}}`)
	g.Expect(e.WaitRolloutComplete(ctx, rolloutTimeout, d)).To(Succeed())
	t.Logf("pod-template change rolled out after %s", time.Since(began).Round(100*time.Millisecond))
	g.Expect(d.Generation).To(Equal(generation+1), "the patch changed the pod template")
	expectRolledOut(g, d, 2)

	second, err := e.ReplicaSetsOf(ctx, d)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second).To(HaveLen(2), "one new ReplicaSet for one rollout")
	old, current := second[0], second[1]
	g.Expect(old.UID).To(Equal(first[0].UID))
	g.Expect(old.Spec.Replicas).To(HaveValue(BeEquivalentTo(0)), "the old ReplicaSet is scaled down")
	g.Expect(current.Spec.Template.Annotations).To(HaveKeyWithValue("e2e.statusops.dev/restarted", "1"))
	g.Expect(current.Status.AvailableReplicas).To(BeEquivalentTo(2))
	newHash := current.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	// The old Pods are deleted by the ReplicaSet controller and removed by kwok (there is no
	// kubelet to confirm it); then only the new ones are left, none of them terminating.
	g.Eventually(func() []corev1.Pod { return podsOf(ctx, g, e, ns, name) }).
		WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).
		Should(ConsistOf(beReadyOnTheSimulatedNode(newHash), beReadyOnTheSimulatedNode(newHash)))

	// A rollout held in progress, as a test of retirement-waits-for-the-rollout needs: the new
	// Pods become Ready only after the delay (one after the other, with maxSurge 1 and
	// maxUnavailable 0), and until then the rollout is not complete.
	const delay = 4 * time.Second
	began = time.Now()
	kubectl(t, e, "patch", "deployment", name, "-n", ns, "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, devenv.PodReadyDelayAnnotation, delay))
	g.Consistently(func() (bool, error) {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		done, _ := devenv.RolloutComplete(d)
		return done, nil
	}).WithTimeout(delay - time.Second).WithPolling(100 * time.Millisecond).Should(BeFalse())
	g.Expect(e.WaitRolloutComplete(ctx, rolloutTimeout, d)).To(Succeed())
	took := time.Since(began)
	t.Logf("delayed rollout completed after %s", took.Round(100*time.Millisecond))
	g.Expect(took).To(BeNumerically(">=", delay), "the Pods waited for their delay")
	expectRolledOut(g, d, 2)
	third, err := e.ReplicaSetsOf(ctx, d)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(third).To(HaveLen(3))
}

// expectRolledOut checks, field by field, the rollout-complete condition the operator's
// retirement of a predecessor will wait for.
func expectRolledOut(g Gomega, d *appsv1.Deployment, replicas int32) {
	g.Expect(d.Status.ObservedGeneration).To(Equal(d.Generation))
	g.Expect(d.Status.Replicas).To(Equal(replicas))
	g.Expect(d.Status.UpdatedReplicas).To(Equal(replicas))
	g.Expect(d.Status.AvailableReplicas).To(Equal(replicas))
	g.Expect(d.Status.ReadyReplicas).To(Equal(replicas))
}

// podsOf lists the Pods with the Deployment's app label, also those being deleted.
func podsOf(ctx context.Context, g Gomega, e *devenv.Env, namespace, app string) []corev1.Pod {
	var list corev1.PodList
	g.Expect(e.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{"app": app})).To(Succeed())
	return list.Items
}

// beReadyOnTheSimulatedNode matches a Pod of the ReplicaSet with the given pod-template-hash
// that the scheduler bound to the simulated Node and kwok marked Running and Ready.
func beReadyOnTheSimulatedNode(podTemplateHash string) OmegaMatcher {
	return SatisfyAll(
		HaveField("ObjectMeta.Labels", HaveKeyWithValue(appsv1.DefaultDeploymentUniqueLabelKey, podTemplateHash)),
		HaveField("ObjectMeta.DeletionTimestamp", BeNil()),
		HaveField("Spec.NodeName", devenv.SimulatedNodeName),
		HaveField("Status.Phase", corev1.PodRunning),
		HaveField("Status.Conditions", ContainElement(SatisfyAll(
			HaveField("Type", corev1.PodReady), HaveField("Status", corev1.ConditionTrue)))),
	)
}
