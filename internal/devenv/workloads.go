package devenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Workloads roll out here without a container runtime: kube-controller-manager runs the
// deployment, replicaset, statefulset and daemonset controllers, kube-scheduler binds their
// Pods, and kwok (sigs.k8s.io/kwok, built by hack/kwok) plays the kubelet of one simulated
// Node. kwok's Stages (stages.yaml beside its binary: kwokctl's defaults, plus
// PodReadyDelayAnnotation) make the Node Ready, mark a scheduled Pod Running and Ready, and
// remove a Pod once it is deleted. Nothing runs: no image is pulled, no container started.

// SimulatedNodeName is the one Node the environment registers for kwok to play.
const SimulatedNodeName = "kwok-node-0"

// PodReadyDelayAnnotation on a Pod (put it in a pod template) holds the Pod not-Ready for the
// given duration ("10s") before kwok marks it Ready, so a test can observe a rollout while it
// is in progress; without it a Pod is Ready at once. hack/kwok/build.sh adds it to the
// pod-ready Stage under kwok's own name for it.
const PodReadyDelayAnnotation = "pod-ready.stage.kwok.x-k8s.io/delay"

// kwokNodeAnnotation marks the Nodes kwok manages; kwok is started with a selector on it, so
// it never touches a Node it was not given.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// kwokBinaries are the files KwokDir must hold.
var kwokBinaries = []string{"kwok", "stages.yaml"}

// FindKwokDir returns a directory holding kwok and its stages.yaml: KWOK_DIR when set (make
// exports the one keyed by the version in hack/kwok/go.mod), else the newest bin/kwok/* of
// repoRoot. kwok does not come from KUBEBUILDER_ASSETS: `make controlplane` always builds it,
// also when KUBEBUILDER_ASSETS names a control plane of the user's.
func FindKwokDir(repoRoot string) (string, error) {
	if dir := os.Getenv("KWOK_DIR"); dir != "" {
		if !hasAll(dir, kwokBinaries) {
			return "", fmt.Errorf("KWOK_DIR=%s does not hold kwok and stages.yaml: run `make controlplane`", dir)
		}
		return dir, nil
	}
	candidates, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "kwok", "*"))
	sort.Sort(sort.Reverse(sort.StringSlice(candidates)))
	for _, dir := range candidates {
		if hasAll(dir, kwokBinaries) {
			return dir, nil
		}
	}
	return "", errors.New("no directory with kwok and stages.yaml in KWOK_DIR or bin/kwok: run `make controlplane`")
}

func hasAll(dir string, files []string) bool {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// validateWorkloads checks the binaries Options.Workloads needs.
func (o Options) validateWorkloads() []error {
	var errs []error
	if o.AssetsDir != "" {
		if _, err := os.Stat(filepath.Join(o.AssetsDir, "kube-scheduler")); err != nil {
			errs = append(errs, fmt.Errorf("kube-scheduler not found in %s: run `make controlplane`, or put a kube-scheduler of the same version beside kube-apiserver in KUBEBUILDER_ASSETS (--assets)", o.AssetsDir))
		}
	}
	if o.KwokDir == "" {
		errs = append(errs, errors.New("KwokDir is required with Workloads (the directory with kwok and stages.yaml; `make controlplane` builds it into bin/kwok/<version>)"))
	} else {
		for _, f := range kwokBinaries {
			if _, err := os.Stat(filepath.Join(o.KwokDir, f)); err != nil {
				errs = append(errs, fmt.Errorf("%s not found in %s: run `make controlplane`", f, o.KwokDir))
			}
		}
	}
	return errs
}

// startScheduler starts kube-scheduler with the admin kubeconfig, serving its health checks
// on 127.0.0.1 only.
func (e *Env) startScheduler(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(e.Ports.Scheduler),
		"--cert-dir=" + filepath.Join(e.Dir, "pki", "scheduler"),
	}
	p, err := e.start("kube-scheduler", filepath.Join(e.opts.AssetsDir, "kube-scheduler"), args, nil)
	if err != nil {
		return err
	}
	// Like kube-controller-manager's, its serving certificate is self-signed and /readyz is
	// readable without credentials; it turns ready once its informers have synced.
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // local health probe only
	return waitUntil(ctx, p, startTimeout, "kube-scheduler to become ready", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, localURL("https", e.Ports.Scheduler)+"/readyz")
	})
}

// startKwok starts kwok for the Nodes annotated kwokNodeAnnotation=fake (and the Pods bound
// to them), registers SimulatedNodeName and waits until kwok has made it Ready. kwok serves
// nothing (no --server-address or --node-port), so it listens on no port. HOME points into
// Dir so that a ~/.kwok/kwok.yaml of the user is not read.
func (e *Env) startKwok(ctx context.Context) error {
	home := filepath.Join(e.Dir, "kwok")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--config=" + filepath.Join(e.opts.KwokDir, "stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		// Pod IPs are only written into status; this range overlaps nothing of the cluster.
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
	}
	p, err := e.startWithEnv("kwok", filepath.Join(e.opts.KwokDir, "kwok"), args, []string{"HOME=" + home}, nil)
	if err != nil {
		return err
	}
	if err := e.registerSimulatedNode(ctx); err != nil {
		return err
	}
	return waitUntil(ctx, p, startTimeout, "kwok to make Node "+SimulatedNodeName+" Ready", func(ctx context.Context) error {
		var node corev1.Node
		if err := e.Client.Get(ctx, client.ObjectKey{Name: SimulatedNodeName}, &node); err != nil {
			return err
		}
		if !nodeReady(&node) {
			return errors.New("not Ready yet")
		}
		return e.untaintReadyNode(ctx, &node)
	})
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// untaintReadyNode removes the node.kubernetes.io/not-ready taint from a Ready Node. The API
// server's TaintNodesByCondition admission puts it on every new Node, and the node-lifecycle
// controller would take it off; that controller does not run here, because with no kubelet
// heartbeats it would soon declare the Node unreachable and evict its Pods.
func (e *Env) untaintReadyNode(ctx context.Context, node *corev1.Node) error {
	var kept []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(node.Spec.Taints) {
		return nil
	}
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	node.Spec.Taints = kept
	if err := e.Client.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("removing the %s taint: %w", corev1.TaintNodeNotReady, err)
	}
	return nil
}

// registerSimulatedNode creates SimulatedNodeName unless a reused directory has it already.
// It has no taints, so Pods need no toleration to land on it; kwok's node-initialize Stage
// gives it capacity (1k CPUs, 1Ti memory, 1M Pods) and the Ready condition.
func (e *Env) registerSimulatedNode(ctx context.Context) error {
	if e.Client == nil {
		c, err := client.New(e.RESTConfig, client.Options{Scheme: Scheme})
		if err != nil {
			return err
		}
		e.Client = c
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        SimulatedNodeName,
		Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		Labels: map[string]string{
			corev1.LabelHostname:   SimulatedNodeName,
			corev1.LabelOSStable:   "linux",
			corev1.LabelArchStable: "amd64",
			"type":                 "kwok",
		},
	}}
	if err := e.Client.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("registering Node %s: %w", SimulatedNodeName, err)
	}
	return nil
}

// RolloutComplete reports whether a Deployment, StatefulSet or DaemonSet has rolled out its
// current spec, the condition the operator's retirement waits for: the controller has
// observed the current generation, and every desired replica is updated and available (and
// no old one is left). When it has not, the string says what is missing.
func RolloutComplete(obj client.Object) (bool, string) {
	var (
		observed, desired, updated, available, current int64
		kind                                           string
	)
	switch w := obj.(type) {
	case *appsv1.Deployment:
		kind = "Deployment"
		observed = w.Status.ObservedGeneration
		desired = 1
		if w.Spec.Replicas != nil {
			desired = int64(*w.Spec.Replicas)
		}
		updated, available, current = int64(w.Status.UpdatedReplicas), int64(w.Status.AvailableReplicas), int64(w.Status.Replicas)
	case *appsv1.StatefulSet:
		kind = "StatefulSet"
		observed = w.Status.ObservedGeneration
		desired = 1
		if w.Spec.Replicas != nil {
			desired = int64(*w.Spec.Replicas)
		}
		updated, available, current = int64(w.Status.UpdatedReplicas), int64(w.Status.AvailableReplicas), int64(w.Status.Replicas)
		if w.Status.UpdateRevision != "" && w.Status.CurrentRevision != w.Status.UpdateRevision {
			return false, fmt.Sprintf("StatefulSet: currentRevision %s is not updateRevision %s yet", w.Status.CurrentRevision, w.Status.UpdateRevision)
		}
	case *appsv1.DaemonSet:
		kind = "DaemonSet"
		observed = w.Status.ObservedGeneration
		desired = int64(w.Status.DesiredNumberScheduled)
		updated, available, current = int64(w.Status.UpdatedNumberScheduled), int64(w.Status.NumberAvailable), int64(w.Status.CurrentNumberScheduled)
	default:
		return false, fmt.Sprintf("%T is not a Deployment, StatefulSet or DaemonSet", obj)
	}
	switch {
	case observed < obj.GetGeneration():
		return false, fmt.Sprintf("%s: observedGeneration %d, generation %d", kind, observed, obj.GetGeneration())
	case updated != desired || available != desired || current != desired:
		return false, fmt.Sprintf("%s: %d desired, %d current, %d updated, %d available", kind, desired, current, updated, available)
	}
	return true, ""
}

// WaitRolloutComplete polls the Deployment, StatefulSet or DaemonSet obj (its kind and key
// are taken from obj, which receives the last state read) until RolloutComplete holds, for at
// most timeout. It needs an environment started with Workloads: without the scheduler and
// kwok, no Pod ever becomes available.
func (e *Env) WaitRolloutComplete(ctx context.Context, timeout time.Duration, obj client.Object) error {
	key := client.ObjectKeyFromObject(obj)
	lastWhy := "not read yet"
	err := waitUntil(ctx, nil, timeout, "the rollout of "+key.String(), func(ctx context.Context) error {
		if err := e.Client.Get(ctx, key, obj); err != nil {
			return err
		}
		done, why := RolloutComplete(obj)
		if !done {
			lastWhy = why
			return errors.New(why)
		}
		return nil
	})
	if err != nil {
		// The last poll may have failed on the deadline itself; say what the status was.
		return fmt.Errorf("%w (last status: %s)", err, lastWhy)
	}
	return nil
}

// ReplicaSetsOf lists the ReplicaSets the Deployment d owns (by UID), oldest revision first
// (the deployment.kubernetes.io/revision annotation the deployment controller numbers them
// with; creation times have one-second resolution, too coarse for a quick rollout). A rollout
// adds one, so counting them tells how many rollouts a Deployment has had.
func (e *Env) ReplicaSetsOf(ctx context.Context, d *appsv1.Deployment) ([]appsv1.ReplicaSet, error) {
	var list appsv1.ReplicaSetList
	if err := e.Client.List(ctx, &list, client.InNamespace(d.Namespace)); err != nil {
		return nil, err
	}
	var owned []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == d.UID {
			owned = append(owned, rs)
		}
	}
	revision := func(rs *appsv1.ReplicaSet) int64 {
		n, _ := strconv.ParseInt(rs.Annotations[deploymentRevisionAnnotation], 10, 64)
		return n
	}
	sort.Slice(owned, func(i, j int) bool { return revision(&owned[i]) < revision(&owned[j]) })
	return owned, nil
}

// deploymentRevisionAnnotation is where the deployment controller numbers a Deployment's
// ReplicaSets, 1 for the first.
const deploymentRevisionAnnotation = "deployment.kubernetes.io/revision"
