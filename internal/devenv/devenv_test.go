package devenv_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/devenv"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// controlPlaneOptions returns options for the control plane alone in dir, or skips the
// test when the binaries are missing outside CI.
func controlPlaneOptions(t *testing.T, dir string) devenv.Options {
	t.Helper()
	assets, err := devenv.FindAssetsDir(testenv.RepoRoot())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("control-plane binaries: %v", err)
		}
		t.Skipf("control-plane binaries missing (%v); run `make controlplane`", err)
	}
	return devenv.Options{
		Dir:              dir,
		AssetsDir:        assets,
		RepoRoot:         testenv.RepoRoot(),
		ControlPlaneOnly: true,
		UnsafeNoFsync:    true,
	}
}

// TestControlPlaneDeletesNamespacesAndOwnedObjectsAndSurvivesRestart checks what the
// environment adds over a bare API server (the namespace and garbage-collector controllers)
// and that a second start on the same directory reuses the cluster.
func TestControlPlaneDeletesNamespacesAndOwnedObjectsAndSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	g := NewWithT(t)
	ctx := t.Context()
	dir := t.TempDir()
	opts := controlPlaneOptions(t, dir)

	env, err := devenv.Start(ctx, opts)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	c := env.Client

	// Namespace deletion completes only with the namespace controller.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
	g.Expect(c.Create(ctx, ns)).To(Succeed())
	g.Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inside", Namespace: "doomed"}})).To(Succeed())
	g.Expect(c.Delete(ctx, ns)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(ns), &corev1.Namespace{}))
	}, 60*time.Second, 200*time.Millisecond).Should(BeTrue(), "namespace was not deleted")

	// Owned objects go with their owner only with the garbage collector.
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: "default"}}
	g.Expect(c.Create(ctx, owner)).To(Succeed())
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owned", Namespace: "default", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true),
	}}}}
	g.Expect(c.Create(ctx, owned)).To(Succeed())
	g.Expect(c.Delete(ctx, owner)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(owned), &corev1.ConfigMap{}))
	}, 60*time.Second, 200*time.Millisecond).Should(BeTrue(), "owned ConfigMap was not garbage-collected")

	keep := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	g.Expect(c.Create(ctx, keep)).To(Succeed())
	kubeconfig, err := os.ReadFile(env.Kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	ports := env.Ports
	g.Expect(env.Reused).To(BeFalse())

	// While it runs, the directory is locked.
	_, err = devenv.Start(ctx, opts)
	g.Expect(err).To(MatchError(ContainSubstring("another environment")))

	g.Expect(env.Stop()).To(Succeed())
	assertNothingListens(t, ports)

	// A second start reuses ports, certificates (so the kubeconfig is unchanged) and data.
	env2, err := devenv.Start(ctx, opts)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env2.Stop() })
	g.Expect(env2.Reused).To(BeTrue())
	g.Expect(env2.Ports).To(Equal(ports))
	kubeconfig2, err := os.ReadFile(env2.Kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(kubeconfig2)).To(Equal(string(kubeconfig)))
	var got corev1.ConfigMap
	g.Expect(env2.Client.Get(ctx, client.ObjectKeyFromObject(keep), &got)).To(Succeed())
	g.Expect(got.Data).To(Equal(keep.Data))
	g.Expect(env2.Stop()).To(Succeed())
	assertNothingListens(t, ports)
}

// TestPortInUseNamesThePortAndTheFlag checks the message a developer sees when a port is
// taken, before anything is started.
func TestPortInUseNamesThePortAndTheFlag(t *testing.T) {
	g := NewWithT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	opts := controlPlaneOptions(t, t.TempDir())
	opts.Ports.APIServer = port
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = devenv.Start(ctx, opts)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(And(
		ContainSubstring("port "+strconv.Itoa(port)+" for kube-apiserver"),
		ContainSubstring("in use"),
		ContainSubstring("--apiserver-port"),
	))
	g.Expect(filepath.Join(opts.Dir, "etcd")).NotTo(BeADirectory(), "nothing should have started")
}

func assertNothingListens(t *testing.T, p devenv.Ports) {
	t.Helper()
	for _, port := range []int{p.Etcd, p.EtcdPeer, p.APIServer, p.ControllerManager} {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = conn.Close()
			t.Errorf("port %d still accepts connections after Stop", port)
		}
	}
}
