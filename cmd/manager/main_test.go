package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"github.com/statusops/apitoken-operator/internal/reliability/oracle"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/installtest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// buildManager builds this command into the test's temporary directory.
func buildManager(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "manager")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
	return bin
}

// startManagerProcess runs the built manager against env with args and the extra
// environment; it is killed when the test ends.
func startManagerProcess(t *testing.T, bin string, env *testenv.Env, extraEnv []string, args ...string) *testenv.SyncBuffer {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := installtest.WriteKubeconfig(env.Config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	cmd := exec.Command(bin, append([]string{"--kubeconfig=" + kubeconfig,
		"--health-probe-bind-address=0", "--metrics-bind-address=0"}, args...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), extraEnv...)
	testenv.StartProcess(t, cmd)
	return logs
}

// encodings are the forms in which a value can show up in a log: as it is, and as JSON,
// a URL, a hex dump or a Go %x would print its bytes.
func encodings(v string) map[string]string {
	b := []byte(v)
	return map[string]string{
		"plain":         v,
		"base64":        base64.StdEncoding.EncodeToString(b),
		"base64 url":    base64.URLEncoding.EncodeToString(b),
		"base64 raw":    base64.RawStdEncoding.EncodeToString(b),
		"base64 rawurl": base64.RawURLEncoding.EncodeToString(b),
		"hex":           hex.EncodeToString(b),
	}
}

// TestLogLevelTenLeaksNoSecret (finding 4): with informers listing instead of streaming
// (KUBE_FEATURE_WatchListClient=false) and --log-level=10, client-go would log the SecretList
// its reflector reads, token values included. No logger in the process may write above the
// cap, so no form of a managed Secret's canary value may appear in the output.
func TestLogLevelTenLeaksNoSecret(t *testing.T) {
	g := NewWithT(t)
	env := testenv.Start(t)
	bin := buildManager(t)
	ctx := context.Background()
	const canary = "canary-7f3c9a1e5b2d4f60a8c1e3b5d7f9a2c4"
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: "default",
			Labels: map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}},
		Data: map[string][]byte{tokensv1alpha1.SecretKeyToken: []byte(canary)},
	})).To(Succeed())

	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			g := NewWithT(t)
			logs := startManagerProcess(t, bin, env, []string{"KUBE_FEATURE_WatchListClient=false"},
				"--log-level=10", "--log-format="+format)
			// Each controller starts its workers once its caches, the Secrets' included, have
			// listed: three controllers, three lines.
			g.Eventually(func() int { return strings.Count(logs.String(), "Starting workers") }).
				WithTimeout(60 * time.Second).Should(BeNumerically(">=", 3))
			out := logs.String()
			if dump := os.Getenv("DUMP_LOGS"); dump != "" {
				_ = os.WriteFile(filepath.Join(dump, "manager-"+format+".log"), []byte(out), 0o644)
			}
			// Debug lines up to V(5) still come through: the cap is not a blanket silence.
			g.Expect(regexp.MustCompile(`(?i)level\(-[2-5]\)`).MatchString(out)).To(BeTrue(), "no V(2..5) line was logged")
			// client-go logs protobuf bodies (a SecretList is one) as a hex dump, whose
			// 16-byte lines split the value: search the dumped bytes too.
			dumped := oracle.HexDumpBytes(out)
			for form, v := range encodings(canary) {
				g.Expect(strings.Contains(out, v)).To(BeFalse(), "the canary appears %s in the manager's output", form)
				g.Expect(strings.Contains(dumped, v)).To(BeFalse(), "the canary appears %s in a hex dump in the manager's output", form)
			}
			g.Expect(regexp.MustCompile(`(?i)level\((-[6-9]|-\d\d)\)`).FindString(out)).To(BeEmpty(), "a line above V(5) was logged")
		})
	}
}
