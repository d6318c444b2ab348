package install

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/metrics"
	"github.com/statusops/apitoken-operator/internal/testenv"
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

// TestZabbixDocExampleApplies: every manifest in docs/backends/zabbix.md passes the API
// server's validation (a server-side dry run against the CRDs, their CEL rules included), and
// the example holds together: the Grafana Deployment reads the keys the operator writes into
// the APIToken's Secret, and the provisioning file uses only variables the Deployment sets.
func TestZabbixDocExampleApplies(t *testing.T) {
	g := NewWithT(t)
	doc, err := os.ReadFile(repoPath("docs", "backends", "zabbix.md"))
	g.Expect(err).NotTo(HaveOccurred())
	c, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := t.Context()

	var objs []*unstructured.Unstructured
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		for _, part := range strings.Split(string(block[1]), "\n---\n") {
			u := &unstructured.Unstructured{}
			g.Expect(yaml.Unmarshal([]byte(part), &u.Object)).To(Succeed(), part)
			if u.GetKind() != "" {
				objs = append(objs, u)
			}
		}
	}
	kinds := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		kinds[u.GetKind()] = u
	}
	g.Expect(kinds).To(HaveKey("ClusterStatusBackend"))
	g.Expect(kinds).To(HaveKey("APIToken"))
	g.Expect(kinds).To(HaveKey("Deployment"))
	g.Expect(kinds).To(HaveKey("ConfigMap"))

	// Each namespace of the example becomes one of this test's own.
	made := map[string]bool{}
	for _, u := range objs {
		ns := u.GetNamespace()
		if ns == "" {
			continue
		}
		u.SetNamespace("docs-zabbix-" + ns)
		if !made[ns] {
			made[ns] = true
			n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "docs-zabbix-" + ns}}
			g.Expect(c.Create(ctx, n)).To(Succeed())
			t.Cleanup(func() { _ = c.Delete(context.Background(), n) })
		}
	}
	for _, u := range objs {
		g.Expect(c.Create(ctx, u.DeepCopy(), client.DryRunAll)).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
	}

	// The Deployment's environment comes from the APIToken's Secret (named after it), and
	// from the keys the operator writes there.
	var dep appsv1.Deployment
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(kinds["Deployment"].Object, &dep)).To(Succeed())
	set := map[string]bool{}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		set[e.Name] = true
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		g.Expect(e.ValueFrom.SecretKeyRef.Name).To(Equal(kinds["APIToken"].GetName()), e.Name)
		g.Expect(e.ValueFrom.SecretKeyRef.Key).To(BeElementOf(tokensv1alpha1.SecretKeyURL, tokensv1alpha1.SecretKeyToken), e.Name)
	}
	var provisioning string
	for _, v := range kinds["ConfigMap"].Object["data"].(map[string]any) {
		provisioning += v.(string)
	}
	used := regexp.MustCompile(`\$\{?([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(provisioning, -1)
	g.Expect(used).NotTo(BeEmpty())
	for _, m := range used {
		g.Expect(set).To(HaveKey(m[1]), "the provisioning file reads $%s, which the Deployment does not set", m[1])
	}
}
