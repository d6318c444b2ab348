package install

import (
	"os"
	"regexp"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/metrics"
)

// TestTroubleshootingCoversEveryReason: every condition reason of api/v1alpha1 has a row in
// docs/troubleshooting.md, so a new reason cannot ship undocumented.
func TestTroubleshootingCoversEveryReason(t *testing.T) {
	g := NewWithT(t)
	src, err := os.ReadFile(repoPath("api", "v1alpha1", "conditions.go"))
	g.Expect(err).NotTo(HaveOccurred())
	doc, err := os.ReadFile(repoPath("docs", "troubleshooting.md"))
	g.Expect(err).NotTo(HaveOccurred())
	reasons := regexp.MustCompile(`(?m)^\s*Reason\w+\s*=\s*"(\w+)"`).FindAllSubmatch(src, -1)
	g.Expect(len(reasons)).To(BeNumerically(">=", 15))
	for _, r := range reasons {
		row := regexp.MustCompile("(?m)^\\| `" + string(r[1]) + "`")
		g.Expect(row.Match(doc)).To(BeTrue(), "docs/troubleshooting.md has no table row for reason %s", r[1])
	}
}

// TestMetricsDocListsEveryMetric: every metric of internal/metrics is in docs/metrics.md.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	g := NewWithT(t)
	doc, err := os.ReadFile(repoPath("docs", "metrics.md"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, name := range []string{
		metrics.Tokens, metrics.TokenExpirationTimestamp, metrics.TokenLastUsedTimestamp, metrics.TokenInfo,
		metrics.TokenCollectorSuccess, metrics.BackendRequestDuration, metrics.BackendRequestErrors,
		"controller_runtime_reconcile_errors_total",
	} {
		g.Expect(string(doc)).To(ContainSubstring("| `"+name+"` |"), "docs/metrics.md has no row for %s", name)
	}
}
