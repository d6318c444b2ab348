package install

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/installtest"
)

// The image dist/install.yaml is committed with (the Makefile's IMG default).
const defaultImage = "ghcr.io/statusops/apitoken-operator:v0.1.0"

// TestInstallYAMLIsUpToDate fails when config/ changed without `make build-installer`, and
// when the chart's copies of the CRDs and of the manager ClusterRole are stale.
func TestInstallYAMLIsUpToDate(t *testing.T) {
	g := NewWithT(t)
	want := runGo(t, "run", "-C", "hack/tools", "./kustomize-build",
		"-image", "ghcr.io/statusops/apitoken-operator="+defaultImage, repoPath("config", "default"))
	got, err := os.ReadFile(installtest.InstallManifestPath())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(got, want)).To(BeTrue(),
		"dist/install.yaml differs from config/default: run `make build-installer`")

	copies := map[string]string{
		"config/rbac/role.yaml": "dist/chart/files/manager-role.yaml",
	}
	crds, err := os.ReadDir(repoPath("config", "crd", "bases"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(crds).NotTo(BeEmpty())
	for _, e := range crds {
		copies["config/crd/bases/"+e.Name()] = "dist/chart/crds/" + e.Name()
	}
	chartCRDs, err := os.ReadDir(repoPath("dist", "chart", "crds"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(chartCRDs).To(HaveLen(len(crds)), "dist/chart/crds has other files than config/crd/bases: run `make build-installer`")
	for src, dst := range copies {
		a, err := os.ReadFile(repoPath(src))
		g.Expect(err).NotTo(HaveOccurred())
		b, err := os.ReadFile(repoPath(dst))
		g.Expect(err).NotTo(HaveOccurred(), "run `make build-installer`")
		g.Expect(bytes.Equal(a, b)).To(BeTrue(), "%s differs from %s: run `make build-installer`", dst, src)
	}
}

// TestInstallYAMLDeployment checks what the issue asks of the manager Deployment.
func TestInstallYAMLDeployment(t *testing.T) {
	checkManagerDeployment(t, installObjects(t), defaultImage)
}

// checkManagerDeployment checks replicas, leader election, probes, ports, resources and the
// restricted security settings of the manager Deployment in objs.
func checkManagerDeployment(t *testing.T, objs []*unstructured.Unstructured, image string) {
	t.Helper()
	g := NewWithT(t)
	d := managerDeployment(t, objs)
	g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
	pod := d.Spec.Template.Spec
	g.Expect(pod.ServiceAccountName).To(Equal(installtest.ServiceAccountName))
	g.Expect(pod.SecurityContext).NotTo(BeNil())
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(pod.SecurityContext.SeccompProfile).NotTo(BeNil())
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(pod.Containers).To(HaveLen(1))

	c := pod.Containers[0]
	g.Expect(c.Image).To(Equal(image))
	g.Expect(c.Args).To(ContainElements("--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"))
	// Metrics name tokens and namespaces: only authorized scrapers may read them (issue 11).
	g.Expect(c.Args).To(ContainElement("--metrics-secure=true"))
	g.Expect(c.Args).NotTo(ContainElement("--metrics-secure=false"))
	sc := c.SecurityContext
	g.Expect(sc).NotTo(BeNil())
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.Capabilities).NotTo(BeNil())
	g.Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(sc.Capabilities.Add).To(BeEmpty())
	g.Expect(sc.Privileged).To(Or(BeNil(), HaveValue(BeFalse())))

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		g.Expect(c.Resources.Requests).To(HaveKey(r), "requests.%s", r)
		g.Expect(c.Resources.Limits).To(HaveKey(r), "limits.%s", r)
	}
	g.Expect(c.LivenessProbe).NotTo(BeNil())
	g.Expect(c.LivenessProbe.HTTPGet).NotTo(BeNil())
	g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
	g.Expect(c.ReadinessProbe).NotTo(BeNil())
	g.Expect(c.ReadinessProbe.HTTPGet).NotTo(BeNil())
	g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	g.Expect(ports).To(Equal(map[string]int32{"https": 8443, "health": 8081}))
	g.Expect(c.LivenessProbe.HTTPGet.Port.String()).To(Equal("health"))

	// The metrics Service selects the manager's Pods and targets the metrics port.
	svcs := byKind(objs, "Service")
	g.Expect(svcs).To(HaveLen(1))
	var svc corev1.Service
	g.Expect(convert(svcs[0], &svc)).To(Succeed())
	for k, v := range svc.Spec.Selector {
		g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(k, v), "Service selector %s=%s does not match the Pods", k, v)
	}
	g.Expect(svc.Spec.Ports).To(HaveLen(1))
	g.Expect(svc.Spec.Ports[0].TargetPort.String()).To(Equal("https"))
}

// TestInstallYAMLAppliesToAPIServer creates the CRDs and the Namespace of dist/install.yaml
// for real and server-side dry-run applies everything else, failing on any error or API
// warning (deprecated API, Pod Security "would violate").
func TestInstallYAMLAppliesToAPIServer(t *testing.T) {
	objs := installObjects(t)
	g := NewWithT(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		g.Expect(o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" ||
			o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" ||
			o.GetNamespace() == installtest.Namespace).To(BeTrue(),
			"%s %s is not in namespace %s", o.GetKind(), o.GetName(), installtest.Namespace)
	}
	g.Expect(kinds).To(Equal(map[string]int{
		"Namespace": 1, "CustomResourceDefinition": 3, "ServiceAccount": 1,
		"ClusterRole": 5, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1,
		"Deployment": 1, "Service": 1,
	}))
	applyForRealThenDryRun(t, objs)
}

// applyForRealThenDryRun applies the CRDs and Namespaces for real (they must exist before the
// rest can be admitted) and dry-runs the rest.
func applyForRealThenDryRun(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, warnings := adminClientWithWarnings(t)

	first := installtest.Filter(objs, func(o *unstructured.Unstructured) bool { return isCRD(o) || isNamespace(o) })
	rest := installtest.Filter(objs, func(o *unstructured.Unstructured) bool { return !isCRD(o) && !isNamespace(o) })
	g.Expect(installtest.Apply(ctx, c, first, false)).To(Succeed())
	for _, crd := range installtest.Filter(first, isCRD) {
		waitForCRDEstablished(t, c, crd.GetName())
	}
	g.Expect(installtest.Apply(ctx, c, rest, true)).To(Succeed())
	g.Expect(warnings.list()).To(BeEmpty(), "the API server warned about the manifests")
}

// waitForCRDEstablished waits until a CRD serves its kinds.
func waitForCRDEstablished(t *testing.T, c client.Client, name string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		g.Expect(c.Get(context.Background(), client.ObjectKey{Name: name}, crd)).To(Succeed())
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		established := slices.ContainsFunc(conds, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["type"] == "Established" && m["status"] == "True"
		})
		g.Expect(established).To(BeTrue(), "CRD %s not Established", name)
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// TestManagerPodPassesRestrictedPodSecurity creates (dry run) a Pod from the manager's Pod
// template in the operator's namespace, which enforces the restricted Pod Security level;
// a privileged Pod there is rejected, which shows the enforcement is really on.
func TestManagerPodPassesRestrictedPodSecurity(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	objs := installObjects(t)
	c, warnings := adminClientWithWarnings(t)

	nsObjs := byKind(objs, "Namespace")
	g.Expect(nsObjs).To(HaveLen(1))
	g.Expect(nsObjs[0].GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	g.Expect(installtest.Apply(ctx, c, nsObjs, false)).To(Succeed())

	d := managerDeployment(t, objs)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "manager-template", Namespace: installtest.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       d.Spec.Template.Spec,
	}
	g.Expect(c.Create(ctx, pod, client.DryRunAll)).To(Succeed())
	g.Expect(warnings.list()).To(BeEmpty())

	privileged := pod.DeepCopy()
	privileged.Name = "privileged"
	privileged.Spec.Containers[0].SecurityContext.Privileged = ptr.To(true)
	privileged.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err := c.Create(ctx, privileged, client.DryRunAll)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a privileged Pod must be rejected in %s, got %v", installtest.Namespace, err)
	g.Expect(strings.Contains(err.Error(), "restricted")).To(BeTrue(), "rejection should come from Pod Security: %v", err)
}

// convert turns an unstructured object into a typed one.
func convert(u *unstructured.Unstructured, into any) error {
	return runtimeConverter.FromUnstructured(u.Object, into)
}
