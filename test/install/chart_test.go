package install

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/statusops/apitoken-operator/internal/installtest"
)

// TestChartDefaultsMatchInstallYAML renders the chart as release "apitoken-operator" in
// apitoken-system, which must give the same manager, metrics Service and permissions as
// dist/install.yaml.
func TestChartDefaultsMatchInstallYAML(t *testing.T) {
	objs := helmTemplate(t, "apitoken-operator", installtest.Namespace)
	checkManagerDeployment(t, objs, defaultImage)
	checkShippedPermissions(t, objs, installtest.Namespace, installtest.ServiceAccountName)

	g := NewWithT(t)
	names := func(objs []*unstructured.Unstructured) map[string]bool {
		out := map[string]bool{}
		for _, o := range objs {
			if o.GetKind() != "Namespace" {
				out[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
			}
		}
		return out
	}
	g.Expect(names(objs)).To(Equal(names(installObjects(t))), "the chart and dist/install.yaml install different objects")
}

// TestChartAppliesToAPIServer renders the chart with non-default values into another
// namespace, creates its CRDs and the namespace for real, and dry-runs the rest.
func TestChartAppliesToAPIServer(t *testing.T) {
	const ns = "apitoken-chart"
	g := NewWithT(t)
	objs := helmTemplate(t, "tokens", ns,
		"--set", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"--set", "logLevel=debug", "--set", "logFormat=console", "--set", "syncInterval=30s",
		"--set", "maxConcurrentReconciles=4", "--set", "watchNamespaces={team-a,team-b}",
		"--set", "replicaCount=3", "--set", "serviceAccount.annotations.example\\.com/role=operator",
		"--set", "clusterName=prod-eu-1",
	)
	d := managerDeployment(t, objs)
	g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(HaveSuffix("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements(
		"--leader-elect", "--leader-election-namespace="+ns, "--log-level=debug", "--log-format=console",
		"--sync-interval=30s", "--max-concurrent-reconciles=4", "--watch-namespaces=team-a,team-b",
		"--cluster-name=prod-eu-1"))
	checkShippedPermissions(t, objs, ns, "tokens-apitoken-operator-controller-manager")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
	}}}
	g.Expect(env.Client.Create(ctx, namespace)).To(Succeed())
	applyForRealThenDryRun(t, objs)
}

// TestChartOptionalParts checks the switches: metrics off removes the Service and port,
// the ServiceMonitor appears only when asked, and user roles can be left out.
func TestChartOptionalParts(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "apitoken-operator", installtest.Namespace,
		"--set", "metrics.enabled=false", "--set", "rbac.aggregateToDefaultRoles=false")
	g.Expect(byKind(objs, "Service")).To(BeEmpty())
	g.Expect(byKind(objs, "ServiceMonitor")).To(BeEmpty())
	g.Expect(byKind(objs, "ClusterRole")).To(HaveLen(1), "only the manager's ClusterRole")
	d := managerDeployment(t, objs)
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--metrics-bind-address=0"))
	g.Expect(d.Spec.Template.Spec.Containers[0].Ports).To(HaveLen(1))

	objs = helmTemplate(t, "apitoken-operator", installtest.Namespace,
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prometheus")
	monitors := byKind(objs, "ServiceMonitor")
	g.Expect(monitors).To(HaveLen(1))
	endpoints, _, _ := unstructured.NestedSlice(monitors[0].Object, "spec", "endpoints")
	g.Expect(endpoints).To(HaveLen(1))
	g.Expect(endpoints[0]).To(HaveKeyWithValue("scheme", "https"), "the secure endpoint is scraped over HTTPS")
	g.Expect(endpoints[0]).To(HaveKey("bearerTokenFile"), "with Prometheus's ServiceAccount token")
	g.Expect(monitors[0].GetLabels()).To(HaveKeyWithValue("release", "prometheus"))
	svc := byKind(objs, "Service")
	g.Expect(svc).To(HaveLen(1))
	sel, _, _ := unstructured.NestedStringMap(monitors[0].Object, "spec", "selector", "matchLabels")
	g.Expect(sel).NotTo(BeEmpty())
	for k, v := range sel {
		g.Expect(svc[0].GetLabels()).To(HaveKeyWithValue(k, v), "the ServiceMonitor must select the metrics Service")
	}
}

// TestChartInsecureMetrics: metrics.secure=false serves plain HTTP (--metrics-secure=false),
// without the TokenReview/SubjectAccessReview grants and the metrics-reader role; by default
// all three are there and the manager serves HTTPS.
func TestChartInsecureMetrics(t *testing.T) {
	g := NewWithT(t)
	roleNames := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range byKind(objs, "ClusterRole") {
			out = append(out, o.GetName())
		}
		return out
	}
	secure := helmTemplate(t, "apitoken-operator", installtest.Namespace)
	g.Expect(managerDeployment(t, secure).Spec.Template.Spec.Containers[0].Args).To(ContainElement("--metrics-secure=true"))
	g.Expect(roleNames(secure)).To(ContainElements("apitoken-operator-metrics-auth-role", "apitoken-operator-metrics-reader"))

	objs := helmTemplate(t, "apitoken-operator", installtest.Namespace,
		"--set", "metrics.secure=false", "--set", "metrics.serviceMonitor.enabled=true")
	c := managerDeployment(t, objs).Spec.Template.Spec.Containers[0]
	g.Expect(c.Args).To(ContainElement("--metrics-secure=false"))
	g.Expect(roleNames(objs)).NotTo(ContainElements(ContainSubstring("metrics")))
	g.Expect(byKind(objs, "ClusterRoleBinding")).To(HaveLen(1), "only the manager's")
	g.Expect(c.Ports).To(ContainElement(HaveField("Name", "http-metrics")))
	endpoints, _, _ := unstructured.NestedSlice(byKind(objs, "ServiceMonitor")[0].Object, "spec", "endpoints")
	g.Expect(endpoints[0]).NotTo(HaveKey("scheme"))
	g.Expect(endpoints[0]).To(HaveKeyWithValue("port", "http-metrics"))
}

// TestChartRejectsUnsafeValues: two managers without leader election would both issue tokens.
func TestChartRejectsUnsafeValues(t *testing.T) {
	for name, args := range map[string][]string{
		"replicas without leader election": {"--set", "replicaCount=2", "--set", "leaderElection.enabled=false"},
		"unknown log level":                {"--set", "logLevel=trace"},
		"unknown log format":               {"--set", "logFormat=xml"},
	} {
		t.Run(name, func(t *testing.T) {
			full := append([]string{"template", "x", repoPath("dist", "chart")}, args...)
			cmd := exec.Command(helmBinary(t), full...)
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			NewWithT(t).Expect(err).To(HaveOccurred(), "helm template should fail:\n%s", out)
		})
	}
}

// TestChartLints runs helm lint --strict.
func TestChartLints(t *testing.T) {
	cmd := exec.Command(helmBinary(t), "lint", "--strict", repoPath("dist", "chart"))
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	NewWithT(t).Expect(err).NotTo(HaveOccurred(), "%s", out)
}
