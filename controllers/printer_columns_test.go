package controllers_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// TestKubectlGetShowsColumns runs the real kubectl against the test API server.
func TestKubectlGetShowsColumns(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		// A skip is a silent pass: in CI (.ci/run exports CI=true) a missing kubectl fails.
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubectl is not installed (%v); CI must run the printer-column check", err)
		}
		t.Skip("kubectl is not installed")
	}
	h := newHarness(t)
	g := NewWithT(t)
	h.create(h.newToken("shown", tokensv1alpha1.PermissionReadOnly))
	tok := h.waitFor("shown", tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	_ = tok

	user, err := env.Environment.ControlPlane.AddUser(envtest.User{Name: "viewer", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())

	// LAST USED is filled once the token has been used and the inventory has run.
	g.Expect(h.useToken(h.secret("shown").Data["token"], "GET", "/boards")).To(Equal(200))
	g.Eventually(func() bool { return h.get("shown").Status.LastUsedAt != nil }).Should(BeTrue())

	out, err := exec.Command(kubectl, "--kubeconfig", path, "get", "apitok", "-n", h.ns).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	g.Expect(lines).To(HaveLen(2), string(out))
	t.Logf("kubectl get apitok:\n%s", out)
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "PERMISSION", "PHASE", "EXPIRES", "LAST", "USED", "SECRET", "AGE"}))
	// Cut the row at the header's column starts: an empty cell (EXPIRES for a token that
	// never expires) stays empty.
	cell := func(col string) string {
		start := strings.Index(lines[0], col)
		end := len(lines[1])
		for _, next := range []string{"PERMISSION", "PHASE", "EXPIRES", "LAST USED", "SECRET", "AGE"} {
			if i := strings.Index(lines[0], next); i > start && i < end {
				end = i
			}
		}
		return strings.TrimSpace(lines[1][start:min(end, len(lines[1]))])
	}
	g.Expect(cell("NAME")).To(Equal("shown"))
	g.Expect(cell("PERMISSION")).To(Equal("ReadOnly"))
	g.Expect(cell("PHASE")).To(Equal("Active"))
	g.Expect(cell("EXPIRES")).To(BeEmpty(), "never expires")
	g.Expect(cell("LAST USED")).To(MatchRegexp(`^\d+s$`))
	g.Expect(cell("SECRET")).To(Equal("shown"))
	g.Expect(cell("AGE")).To(MatchRegexp(`^\d+s$`))

	// The category lists every kind: kubectl get statusops.
	out, err = exec.Command(kubectl, "--kubeconfig", path, "get", "statusops", "-A").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring("apitoken.tokens.statusops.dev/shown"))
	g.Expect(string(out)).To(ContainSubstring("clusterstatusbackend.tokens.statusops.dev/" + h.backendName))
}
