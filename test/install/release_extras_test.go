package install

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/statusops/apitoken-operator/internal/installtest"
)

// The Prometheus Operator release whose CRDs the monitoring objects are checked against. Its
// Go module (served by the module proxy like every other dependency) carries the CRD YAML in
// example/prometheus-operator-crd.
const prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

var (
	promCRDsOnce sync.Once
	promCRDs     []*unstructured.Unstructured
	promCRDsErr  error
)

// prometheusOperatorCRDs returns the real PrometheusRule and ServiceMonitor CRDs.
func prometheusOperatorCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	promCRDsOnce.Do(func() {
		out := runGo(t, "mod", "download", "-json", prometheusOperatorModule)
		var mod struct{ Dir, Error string }
		if promCRDsErr = json.Unmarshal(out, &mod); promCRDsErr != nil {
			return
		}
		if mod.Error != "" {
			promCRDsErr = fmt.Errorf("downloading %s: %s", prometheusOperatorModule, mod.Error)
			return
		}
		for _, kind := range []string{"prometheusrules", "servicemonitors"} {
			raw, err := os.ReadFile(filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
			if err != nil {
				promCRDsErr = err
				return
			}
			objs, err := installtest.DecodeManifests(raw)
			if err != nil {
				promCRDsErr = err
				return
			}
			promCRDs = append(promCRDs, objs...)
		}
	})
	if promCRDsErr != nil {
		t.Fatal(promCRDsErr)
	}
	return promCRDs
}

// specOf reads the spec of the PrometheusRule in config/prometheus.
func configPrometheusRuleSpec(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(repoPath("config", "prometheus", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	return obj["spec"].(map[string]any)
}

func managerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	return managerDeployment(t, objs).Spec.Template.Spec.Containers[0].Args
}

// TestChartCopiesConfigPrometheus: the chart's copies of the rules and the dashboard are those
// of config/prometheus (`make build-installer` refreshes them).
func TestChartCopiesConfigPrometheus(t *testing.T) {
	for _, f := range []string{"prometheusrule.yaml", "grafana-dashboard.json"} {
		want, err := os.ReadFile(repoPath("config", "prometheus", f))
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(repoPath("dist", "chart", "files", f))
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		NewWithT(t).Expect(string(got)).To(Equal(string(want)), "dist/chart/files/%s is stale: run make build-installer", f)
	}
}

// TestChartMonitoringSwitches: off by default; on, the PrometheusRule carries exactly the rules
// of config/prometheus and the dashboard ConfigMap the dashboard, with the selecting labels.
func TestChartMonitoringSwitches(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "apitoken-operator", installtest.Namespace)
	g.Expect(byKind(objs, "PrometheusRule")).To(BeEmpty())
	for _, cm := range byKind(objs, "ConfigMap") {
		g.Expect(cm.GetName()).NotTo(ContainSubstring("dashboard"))
	}

	objs = helmTemplate(t, "apitoken-operator", installtest.Namespace,
		"--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prometheus",
		"--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=grafana")
	rules := byKind(objs, "PrometheusRule")
	g.Expect(rules).To(HaveLen(1))
	g.Expect(rules[0].GetNamespace()).To(Equal(installtest.Namespace))
	g.Expect(rules[0].GetLabels()).To(HaveKeyWithValue("release", "prometheus"))
	g.Expect(rules[0].Object["spec"]).To(Equal(configPrometheusRuleSpec(t)))

	dashboards := byKind(objs, "ConfigMap")
	g.Expect(dashboards).To(HaveLen(1))
	g.Expect(dashboards[0].GetNamespace()).To(Equal("grafana"))
	g.Expect(dashboards[0].GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	want, err := os.ReadFile(repoPath("config", "prometheus", "grafana-dashboard.json"))
	g.Expect(err).NotTo(HaveOccurred())
	data, _, _ := unstructured.NestedStringMap(dashboards[0].Object, "data")
	g.Expect(data["apitoken-operator.json"]).To(MatchJSON(want))
}

// TestChartRestartSwitch: the rollout rights and the flag exist only when the switch is on.
func TestChartRestartSwitch(t *testing.T) {
	g := NewWithT(t)
	off := helmTemplate(t, "apitoken-operator", installtest.Namespace)
	g.Expect(managerArgs(t, off)).NotTo(ContainElement(HavePrefix("--restart-workloads")))
	for _, o := range byKind(off, "ClusterRole") {
		var role rbacv1.ClusterRole
		g.Expect(convert(o, &role)).To(Succeed())
		for _, r := range role.Rules {
			g.Expect(r.APIGroups).NotTo(ContainElement("apps"), "ClusterRole %s grants apps rights with the switch off", role.Name)
		}
	}

	on := helmTemplate(t, "apitoken-operator", installtest.Namespace,
		"--set", "restartWorkloads.enabled=true", "--set", "restartWorkloads.maxConcurrentRestarts=3")
	g.Expect(managerArgs(t, on)).To(ContainElements("--restart-workloads=true", "--max-concurrent-restarts=3"))
	cluster, _ := boundRules(t, on, installtest.Namespace, installtest.ServiceAccountName)
	granted, _ := flattenRules(cluster)
	for _, res := range []string{"deployments", "statefulsets", "daemonsets"} {
		g.Expect(granted).To(HaveKey(grant{group: "apps", resource: res, verb: "patch"}), res)
	}
	g.Expect(granted).NotTo(HaveKey(grant{group: "apps", resource: "deployments", verb: "delete"}))
}

// TestChartReviewWindow: the value reaches --permission-review-window as written, "0" included;
// empty leaves the manager's default; a value that is not a Go duration is refused.
func TestChartReviewWindow(t *testing.T) {
	g := NewWithT(t)
	g.Expect(managerArgs(t, helmTemplate(t, "x", "ns"))).NotTo(ContainElement(HavePrefix("--permission-review-window")))
	g.Expect(managerArgs(t, helmTemplate(t, "x", "ns", "--set", "permissionReviewWindow=240h"))).To(ContainElement("--permission-review-window=240h"))
	g.Expect(managerArgs(t, helmTemplate(t, "x", "ns", "--set", "permissionReviewWindow=0"))).To(ContainElement("--permission-review-window=0"))
	g.Expect(managerArgs(t, helmTemplate(t, "x", "ns", "--set", "permissionReviewWindow=1h30m"))).To(ContainElement("--permission-review-window=1h30m"))
	cmd := exec.Command(helmBinary(t), "template", "x", repoPath("dist", "chart"), "--set", "permissionReviewWindow=30 days")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	g.Expect(err).To(HaveOccurred(), "%s", out)
	g.Expect(string(out)).To(ContainSubstring("permissionReviewWindow must be a Go duration"))
}

// TestChartDefaultImageIsMakeImageTag: `make image` tags its tarball with IMG, and the chart's
// default image is that reference, so a loaded tarball is what the chart runs.
func TestChartDefaultImageIsMakeImageTag(t *testing.T) {
	g := NewWithT(t)
	mk, err := os.ReadFile(repoPath("Makefile"))
	g.Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`(?m)^IMG \?= (\S+)$`).FindSubmatch(mk)
	g.Expect(m).NotTo(BeNil(), "IMG ?= in the Makefile")
	g.Expect(managerDeployment(t, helmTemplate(t, "x", "ns")).Spec.Template.Spec.Containers[0].Image).To(Equal(string(m[1])))
	// And a locally built tag, as docs/install.md shows for kind.
	d := managerDeployment(t, helmTemplate(t, "x", "ns", "--set", "image.repository=example.com/apitoken-operator", "--set", "image.tag=dev", "--set", "image.pullPolicy=Never"))
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("example.com/apitoken-operator:dev"))
	g.Expect(string(d.Spec.Template.Spec.Containers[0].ImagePullPolicy)).To(Equal("Never"))
}

// TestChartSwitchesApplyToAPIServer renders the chart for every setting of the switches this
// file covers, each into a namespace of its own, and applies it to a real API server (CRDs,
// the real Prometheus Operator CRDs and the namespace for real, the rest as a server-side
// dry run), so each rendering is admitted as a whole, schema validation included.
func TestChartSwitchesApplyToAPIServer(t *testing.T) {
	settings := map[string][]string{
		"all off":           nil,
		"prometheus rule":   {"--set", "prometheusRule.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"},
		"grafana dashboard": {"--set", "grafanaDashboard.enabled=true"},
		"restart workloads": {"--set", "restartWorkloads.enabled=true", "--set", "restartWorkloads.maxConcurrentRestarts=5"},
		"review window":     {"--set", "permissionReviewWindow=168h"},
		"review off":        {"--set", "permissionReviewWindow=0"},
		"all on": {"--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
			"--set", "restartWorkloads.enabled=true", "--set", "permissionReviewWindow=720h", "--set", "metrics.serviceMonitor.enabled=true"},
	}
	i := 0
	for name, args := range settings {
		i++
		ns := fmt.Sprintf("chart-switch-%d", i)
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			objs := helmTemplate(t, "sw"+fmt.Sprint(i), ns, args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted",
			}}})).To(Succeed())
			applyForRealThenDryRun(t, append(append([]*unstructured.Unstructured{}, prometheusOperatorCRDs(t)...), objs...))
		})
	}
}

// TestKustomizeConfigPrometheus: config/prometheus builds on its own into the PrometheusRule
// and a dashboard ConfigMap the Grafana sidecar picks up, and both are admitted by a real API
// server with the Prometheus Operator's CRDs.
func TestKustomizeConfigPrometheus(t *testing.T) {
	g := NewWithT(t)
	out := runGo(t, "run", "-C", "hack/tools", "./kustomize-build", repoPath("config", "prometheus"))
	objs, err := installtest.DecodeManifests(out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(objs).To(HaveLen(2))
	rules := byKind(objs, "PrometheusRule")
	g.Expect(rules).To(HaveLen(1))
	g.Expect(rules[0].Object["spec"]).To(Equal(configPrometheusRuleSpec(t)))
	cms := byKind(objs, "ConfigMap")
	g.Expect(cms).To(HaveLen(1))
	g.Expect(cms[0].GetName()).To(Equal("apitoken-operator-grafana-dashboard"), "no hash suffix: the name is stable for Grafana")
	g.Expect(cms[0].GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	want, err := os.ReadFile(repoPath("config", "prometheus", "grafana-dashboard.json"))
	g.Expect(err).NotTo(HaveOccurred())
	data, _, _ := unstructured.NestedStringMap(cms[0].Object, "data")
	g.Expect(strings.TrimSpace(data["apitoken-operator.json"])).To(Equal(string(bytes.TrimSpace(want))))
	for _, o := range objs {
		g.Expect(o.GetNamespace()).To(Equal(installtest.Namespace))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installtest.Namespace}}
	if err := env.Client.Create(ctx, ns); err != nil {
		g.Expect(err.Error()).To(ContainSubstring("already exists"))
	}
	applyForRealThenDryRun(t, append(append([]*unstructured.Unstructured{}, prometheusOperatorCRDs(t)...), objs...))
}
