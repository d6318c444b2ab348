package install

import (
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

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

// TestMetricsDocListsEveryMetric: every metric the operator registers (the controllers'
// and internal/metrics' collectors, described as the registry would) has a row with its
// labels in docs/metrics.md, so a new metric cannot ship undocumented.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	g := NewWithT(t)
	doc, err := os.ReadFile(repoPath("docs", "metrics.md"))
	g.Expect(err).NotTo(HaveOccurred())
	described := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	var names []string
	for _, c := range metrics.Collectors() {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := described.FindStringSubmatch(d.String())
			g.Expect(m).NotTo(BeNil(), "cannot read %s", d.String())
			names = append(names, m[1])
			// | Metric | Type | Labels | Meaning |
			row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(m[1]) + "` \\|[^|]*\\|([^|]*)\\|")
			r := row.FindSubmatch(doc)
			if !g.Expect(r).NotTo(BeNil(), "docs/metrics.md has no row for %s", m[1]) {
				continue
			}
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					g.Expect(string(r[1])).To(ContainSubstring("`"+l+"`"), "docs/metrics.md's row for %s does not name its label %s", m[1], l)
				}
			}
		}
	}
	// Not a hand-kept list: the collectors the controllers register are all seen.
	g.Expect(names).To(ContainElements(metrics.Tokens, metrics.BackendRequestErrors, "apitoken_predecessor_used_after_grace_total", "apitoken_backend_tokens"))
	g.Expect(string(doc)).To(ContainSubstring("| `controller_runtime_reconcile_errors_total` |"), "the alert examples use it")
}
