package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

const ns = "schema-test"

// zabbixBackend is the spec of a valid ClusterStatusBackend with the zabbix driver; rows
// append to its provider.
const zabbixBackend = "  url: https://zabbix.example.com\n  credentialsSecretRef: {name: zabbix-admin, namespace: apitoken-system}\n  provider:\n    zabbix: {readOnlyUser: apitoken-readonly, fullAccessUser: apitoken-fullaccess}"

func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("bad test manifest: %v", err)
	}
	return u
}

// TestSchemaRejectsBadManifests creates invalid objects on a real API server, with the
// strict field validation kubectl uses, and checks the error names the offending field.
func TestSchemaRejectsBadManifests(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

	token := func(spec string) string {
		return "apiVersion: tokens.statusops.dev/v1alpha1\nkind: APIToken\nmetadata: {name: bad, namespace: " + ns + "}\nspec:\n" + spec
	}
	cluster := func(spec string) string {
		return "apiVersion: tokens.statusops.dev/v1alpha1\nkind: ClusterStatusBackend\nmetadata: {name: bad}\nspec:\n" + spec
	}
	namespaced := func(spec string) string {
		return "apiVersion: tokens.statusops.dev/v1alpha1\nkind: StatusBackend\nmetadata: {name: bad, namespace: " + ns + "}\nspec:\n" + spec
	}
	cases := []struct {
		name     string
		manifest string
		field    string // must appear in the error
	}{
		{"permission outside the enum", token("  permission: Admin"), "spec.permission"},
		{"permission missing", token("  description: x"), "spec.permission"},
		{"permission of the wrong type", token("  permission: 5"), "spec.permission"},
		{"expiresAt not RFC 3339", token("  permission: ReadOnly\n  expiresAt: tomorrow"), "spec.expiresAt"},
		{"expiresAt a date without time", token("  permission: ReadOnly\n  expiresAt: \"2027-06-30\""), "spec.expiresAt"},
		{"secretName not a DNS-1123 subdomain", token("  permission: ReadOnly\n  secretName: Bad_Name"), "spec.secretName"},
		{"secretName too long", token("  permission: ReadOnly\n  secretName: " + strings.Repeat("a", 254)), "spec.secretName"},
		{"backendRef.kind outside the enum", token("  permission: ReadOnly\n  backendRef: {kind: Vault, name: x}"), "spec.backendRef.kind"},
		{"backendRef.name empty", token("  permission: ReadOnly\n  backendRef: {kind: StatusBackend, name: \"\"}"), "spec.backendRef.name"},
		{"unknown field in spec", token("  permission: ReadOnly\n  permissions: FullAccess"), "spec.permissions"},
		{"unknown nested field", token("  permission: ReadOnly\n  backendRef: {name: x, namespace: other}"), "spec.backendRef.namespace"},
		{"active of the wrong type", token("  permission: ReadOnly\n  active: \"yes\""), "spec.active"},
		{"deletionPolicy outside the enum", token("  permission: ReadOnly\n  deletionPolicy: Delete"), "spec.deletionPolicy"},
		{"description too long", token("  permission: ReadOnly\n  description: " + strings.Repeat("d", 256)), "spec.description"},
		{"description over 255 bytes in fewer characters", token("  permission: ReadOnly\n  description: " + strings.Repeat("é", 128)), "spec.description"},
		{"description with a newline", token("  permission: ReadOnly\n  description: \"two\\nlines\""), "spec.description"},
		{"description with a control character", token("  permission: ReadOnly\n  description: \"bell\\u0007\""), "spec.description"},
		{"secretTemplate label value with a space", token("  permission: ReadOnly\n  secretTemplate: {labels: {team: \"observability team\"}}"), "spec.secretTemplate.labels.team"},
		{"secretTemplate label value too long", token("  permission: ReadOnly\n  secretTemplate: {labels: {team: " + strings.Repeat("a", 64) + "}}"), "spec.secretTemplate.labels.team"},
		{"secretTemplate label key too long", token("  permission: ReadOnly\n  secretTemplate: {labels: {" + strings.Repeat("k", 318) + ": a}}"), "spec.secretTemplate.labels"},
		{"secretTemplate annotation value too long", token("  permission: ReadOnly\n  secretTemplate: {annotations: {a: " + strings.Repeat("v", 4097) + "}}"), "spec.secretTemplate.annotations.a"},
		{"rotation lifetime under a minute", token("  permission: ReadOnly\n  rotation: {lifetime: 30s}"), "spec.rotation.lifetime"},
		{"rotation lifetime not a duration", token("  permission: ReadOnly\n  rotation: {lifetime: a-month}"), "spec.rotation.lifetime"},
		{"rotation renewBefore not shorter than lifetime", token("  permission: ReadOnly\n  rotation: {lifetime: 1h, renewBefore: 1h}"), "spec.rotation.renewBefore"},
		{"rotation renewBefore without lifetime", token("  permission: ReadOnly\n  rotation: {renewBefore: 1h}"), "spec.rotation.renewBefore"},
		{"rotation gracePeriod longer than renewBefore", token("  permission: ReadOnly\n  rotation: {lifetime: 10h, renewBefore: 1h, gracePeriod: 2h}"), "spec.rotation.gracePeriod"},
		{"rotation gracePeriod longer than the default renewBefore", token("  permission: ReadOnly\n  rotation: {lifetime: 3h, gracePeriod: 2h}"), "spec.rotation.gracePeriod"},
		{"rotation quietPeriod missing", token("  permission: ReadOnly\n  rotation: {gracePeriod: 1h, retireWhenUnused: {}}"), "spec.rotation.retireWhenUnused.quietPeriod"},
		// Values the API server's own formats accept but the Go types cannot decode: stored,
		// one of them stopped the manager's LIST of APITokens for every namespace.
		{"rotation gracePeriod beyond time.Duration", token("  permission: ReadOnly\n  rotation: {gracePeriod: 99999999999h}"), "spec.rotation.gracePeriod"},
		{"rotation gracePeriod of a century without lifetime", token("  permission: ReadOnly\n  rotation: {gracePeriod: 876000h}"), "spec.rotation.gracePeriod"},
		{"rotation gracePeriod over a week", token("  permission: ReadOnly\n  rotation: {gracePeriod: 169h}"), "spec.rotation.gracePeriod"},
		{"rotation gracePeriod summing past time.Duration", token("  permission: ReadOnly\n  rotation: {gracePeriod: 999999999h999999999h}"), "spec.rotation.gracePeriod"},
		{"rotation quietPeriod beyond time.Duration", token("  permission: ReadOnly\n  rotation: {gracePeriod: 1h, retireWhenUnused: {quietPeriod: 99999999999h}}"), "spec.rotation.retireWhenUnused.quietPeriod"},
		{"rotation quietPeriod over a week", token("  permission: ReadOnly\n  rotation: {retireWhenUnused: {quietPeriod: 200h}}"), "spec.rotation.retireWhenUnused.quietPeriod"},
		{"rotation lifetime beyond time.Duration", token("  permission: ReadOnly\n  rotation: {lifetime: 99999999999h}"), "spec.rotation.lifetime"},
		{"rotation lifetime over a year", token("  permission: ReadOnly\n  rotation: {lifetime: 8761h}"), "spec.rotation.lifetime"},
		{"rotation renewBefore beyond time.Duration", token("  permission: ReadOnly\n  rotation: {lifetime: 10h, renewBefore: 99999999999h}"), "spec.rotation.renewBefore"},
		{"expiresAt with an offset of 25 hours", token("  permission: ReadOnly\n  expiresAt: \"2030-06-30T00:00:00+25:00\""), "spec.expiresAt"},
		{"expiresAt with junk after the seconds", token("  permission: ReadOnly\n  expiresAt: \"2030-06-30T00:00:00x5Z\""), "spec.expiresAt"},
		{"expiresAt on the 30th of February", token("  permission: ReadOnly\n  expiresAt: \"2030-02-30T00:00:00Z\""), "spec.expiresAt"},
		{"expiresAt at hour 24", token("  permission: ReadOnly\n  expiresAt: \"2030-06-30T24:00:00Z\""), "spec.expiresAt"},
		{"expiresAt with a leap second", token("  permission: ReadOnly\n  expiresAt: \"2030-06-30T23:59:60Z\""), "spec.expiresAt"},
		{"expiresAt in lower case", token("  permission: ReadOnly\n  expiresAt: \"2030-06-30t00:00:00z\""), "spec.expiresAt"},
		// The backend protocol refuses years from 9000 on: what the cluster admits, the backend must not refuse.
		{"expiresAt in the year 9999", token("  permission: ReadOnly\n  expiresAt: \"9999-12-31T23:59:59Z\""), "spec.expiresAt"},
		{"expiresAt in the year 9000", token("  permission: ReadOnly\n  expiresAt: \"9000-01-01T00:00:00Z\""), "spec.expiresAt"},
		{"retainNamespaces of the wrong type", cluster("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: b}\n  retainNamespaces: all"), "spec.retainNamespaces"},
		{"fullAccessNamespaces of the wrong type", cluster("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: b}\n  fullAccessNamespaces: all"), "spec.fullAccessNamespaces"},
		{"secretTemplate label of the wrong type", token("  permission: ReadOnly\n  secretTemplate: {labels: {team: {a: b}}}"), "spec.secretTemplate.labels.team"},
		{"name too long for a label value", strings.Replace(token("  permission: ReadOnly"), "name: bad", "name: "+strings.Repeat("n", 64), 1), "metadata.name"},
		{"spec missing", "apiVersion: tokens.statusops.dev/v1alpha1\nkind: APIToken\nmetadata: {name: bad, namespace: " + ns + "}", "spec"},
		{"backend url not http(s)", cluster("  url: ftp://status.example.com\n  credentialsSecretRef: {name: a, namespace: b}"), "spec.url"},
		{"backend url missing", namespaced("  credentialsSecretRef: {name: a}"), "spec.url"},
		{"cluster backend credentials without namespace", cluster("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a}"), "spec.credentialsSecretRef.namespace"},
		{"credentials name missing", namespaced("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {key: token}"), "spec.credentialsSecretRef.name"},
		{"allowedNamespaces of the wrong type", cluster("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: b}\n  allowedNamespaces: all"), "spec.allowedNamespaces"},
		{"caBundle not base64", cluster("  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: b}\n  caBundle: \"not base64!\""), "spec.caBundle"},
		// spec.provider is a one-of: each row names the field in the API server's own
		// "<path>: <kind of error>" form, which an unknown field ("spec.provider" before the
		// provider existed) does not match.
		{"provider with two drivers", cluster(zabbixBackend + "\n    native: {}"), "spec.provider: Invalid value"},
		{"provider with two drivers, namespaced", namespaced("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a}\n  provider:\n    native: {}\n    zabbix: {readOnlyUser: ro, fullAccessUser: fa}"), "spec.provider: Invalid value"},
		{"provider empty", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider: {}"), "spec.provider: Invalid value"},
		{"provider zabbix without users", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {}"), "spec.provider.zabbix.readOnlyUser: Required value"},
		{"provider zabbix without fullAccessUser", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {readOnlyUser: ro}"), "spec.provider.zabbix.fullAccessUser: Required value"},
		{"provider zabbix with the same user twice", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {readOnlyUser: grafana, fullAccessUser: grafana}"), "spec.provider.zabbix.fullAccessUser: Invalid value"},
		{"provider zabbix user empty", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {readOnlyUser: \"\", fullAccessUser: fa}"), "spec.provider.zabbix.readOnlyUser: Invalid value"},
		{"provider zabbix user longer than Zabbix allows", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {readOnlyUser: " + strings.Repeat("u", 101) + ", fullAccessUser: fa}"), "spec.provider.zabbix.readOnlyUser: Too long"},
		{"provider zabbix user with a newline", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    zabbix: {readOnlyUser: ro, fullAccessUser: \"full\\naccess\"}"), "spec.provider.zabbix.fullAccessUser: Invalid value"},
		{"provider naming an unknown driver", cluster("  url: https://zabbix.example.com\n  credentialsSecretRef: {name: a, namespace: b}\n  provider:\n    vault: {}"), "spec.provider.vault"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := env.Client.Create(ctx, object(t, tc.manifest), client.FieldValidation("Strict"))
			g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid manifest")
			g.Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "unexpected error kind: %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.field))
		})
	}
}

// TestStoredTimesAndDurationsDecode: every duration and time the schema admits at its edges
// is stored and read back through the Go types, so no admitted value can stop a LIST.
func TestStoredTimesAndDurationsDecode(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	specs := []string{
		"  permission: ReadOnly\n  expiresAt: \"8999-12-31T23:59:59.999999999+23:59\"",
		"  permission: ReadOnly\n  expiresAt: \"2030-06-30T00:00:00-00:00\"",
		"  permission: ReadOnly\n  expiresAt: \"2030-06-30T00:00:00.5Z\"",
		"  permission: ReadOnly\n  rotation: {lifetime: 8760h, renewBefore: 8759h59m59s, gracePeriod: 168h, retireWhenUnused: {quietPeriod: 168h}}",
		"  permission: ReadOnly\n  rotation: {lifetime: 1m, gracePeriod: 20s}",
		"  permission: ReadOnly\n  rotation: {gracePeriod: 1.5h, retireWhenUnused: {quietPeriod: 90m30s}}",
	}
	for i, spec := range specs {
		manifest := fmt.Sprintf("apiVersion: tokens.statusops.dev/v1alpha1\nkind: APIToken\nmetadata: {name: edge-%d, namespace: %s}\nspec:\n%s", i, ns, spec)
		g.Expect(env.Client.Create(ctx, object(t, manifest), client.FieldValidation("Strict"))).To(Succeed(), spec)
	}
	var list tokensv1alpha1.APITokenList
	g.Expect(env.Client.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	g.Expect(list.Items).To(HaveLen(len(specs)), "every admitted object decodes")
}

// TestSamplesAreAcceptedAndDefaulted applies config/samples and checks the defaults the
// API server fills in.
func TestSamplesAreAcceptedAndDefaulted(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	g := NewWithT(t)
	for _, n := range []string{"default", "apitoken-system"} {
		_ = env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "tokens_*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	kinds := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		u := object(t, string(data))
		g.Expect(env.Client.Create(ctx, u, client.FieldValidation("Strict"))).To(Succeed(), f)
		kinds[u.GetKind()]++
	}
	g.Expect(kinds).To(HaveKeyWithValue("APIToken", 2))
	g.Expect(kinds).To(HaveKeyWithValue("ClusterStatusBackend", 1))
	g.Expect(kinds).To(HaveKeyWithValue("StatusBackend", 1))

	var tokens tokensv1alpha1.APITokenList
	g.Expect(env.Client.List(ctx, &tokens, client.InNamespace("default"))).To(Succeed())
	perms := map[tokensv1alpha1.Permission]bool{}
	for _, tok := range tokens.Items {
		perms[tok.Spec.Permission] = true
		g.Expect(tok.Spec.DeletionPolicy).To(Equal(tokensv1alpha1.DeletionPolicyRevoke))
		g.Expect(tok.Spec.Active).NotTo(BeNil())
		g.Expect(*tok.Spec.Active).To(BeTrue())
		g.Expect(tok.Spec.BackendRef).To(Equal(&tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}))
	}
	g.Expect(perms).To(HaveLen(2), "one ReadOnly and one FullAccess sample")

	var backends tokensv1alpha1.StatusBackendList
	g.Expect(env.Client.List(ctx, &backends)).To(Succeed())
	g.Expect(backends.Items).To(HaveLen(1))
	g.Expect(backends.Items[0].Spec.CredentialsSecretRef.Key).To(Equal("token"))
}

// TestCRDsDocumentEveryField makes sure `kubectl explain` has a sentence for every field.
func TestCRDsDocumentEveryField(t *testing.T) {
	g := NewWithT(t)
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).To(HaveLen(3))
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		var crd apiextensionsv1.CustomResourceDefinition
		g.Expect(yaml.Unmarshal(data, &crd)).To(Succeed())
		g.Expect(crd.Spec.Names.Categories).To(ContainElement("statusops"), f)
		for _, v := range crd.Spec.Versions {
			g.Expect(v.Subresources).NotTo(BeNil())
			g.Expect(v.Subresources.Status).NotTo(BeNil(), "status subresource")
			var undocumented []string
			walk(crd.Spec.Names.Kind, *v.Schema.OpenAPIV3Schema, &undocumented)
			g.Expect(undocumented).To(BeEmpty(), "fields without a description in %s", f)
		}
	}
}

func walk(path string, s apiextensionsv1.JSONSchemaProps, undocumented *[]string) {
	for name, p := range s.Properties {
		child := path + "." + name
		if p.Description == "" && name != "apiVersion" && name != "kind" && name != "metadata" {
			*undocumented = append(*undocumented, child)
		}
		if name == "metadata" || strings.HasSuffix(child, ".conditions") {
			continue
		}
		walk(child, p, undocumented)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(path+"[]", *s.Items.Schema, undocumented)
	}
}

// TestAdoptCannotChange: spec.adopt is fixed once set; changing it names the field and says
// what to do instead, while removing it is allowed (it is ignored after adoption).
func TestAdoptCannotChange(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "adopt-test"}})).To(Succeed())
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "adopt-test", Name: "legacy"}}
	tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
	tok.Spec.Adopt = &tokensv1alpha1.AdoptSpec{TokenID: "tok_legacy42", SecretRef: tokensv1alpha1.AdoptSecretReference{Name: "legacy"}}
	g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
	tok.Spec.Adopt.TokenID = "tok_other"
	err := env.Client.Update(ctx, tok)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.adopt"))
	g.Expect(err.Error()).To(ContainSubstring("create another APIToken"))
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(tok), tok)).To(Succeed())
	tok.Spec.Adopt = nil
	g.Expect(env.Client.Update(ctx, tok)).To(Succeed())
}

// TestProviderIsOptionalAndRoundTrips: spec.provider is optional, so backends written before
// drivers existed are accepted unchanged (and mean the native protocol); provider.native and
// provider.zabbix are accepted as written, and a zabbix backend's spec and the status the
// controller writes (driver, capabilities) come back through the typed client unchanged.
func TestProviderIsOptionalAndRoundTrips(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "provider-test"}})).To(Succeed())

	// Manifests as they were written before drivers existed.
	manifests := map[string]string{
		"legacy-cluster":    "apiVersion: tokens.statusops.dev/v1alpha1\nkind: ClusterStatusBackend\nmetadata: {name: legacy-cluster}\nspec:\n  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: apitoken-system}",
		"legacy-namespaced": "apiVersion: tokens.statusops.dev/v1alpha1\nkind: StatusBackend\nmetadata: {name: legacy-namespaced, namespace: provider-test}\nspec:\n  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a}",
		"native":            "apiVersion: tokens.statusops.dev/v1alpha1\nkind: ClusterStatusBackend\nmetadata: {name: native}\nspec:\n  url: https://status.example.com/api/v3\n  credentialsSecretRef: {name: a, namespace: apitoken-system}\n  provider: {native: {}}",
		"zabbix":            "apiVersion: tokens.statusops.dev/v1alpha1\nkind: ClusterStatusBackend\nmetadata: {name: zabbix}\nspec:\n" + zabbixBackend,
		"zabbix-namespaced": "apiVersion: tokens.statusops.dev/v1alpha1\nkind: StatusBackend\nmetadata: {name: zabbix-namespaced, namespace: provider-test}\nspec:\n  url: https://zabbix.example.com\n  credentialsSecretRef: {name: zabbix-admin}\n  provider:\n    zabbix: {readOnlyUser: grafana-ro, fullAccessUser: automation}",
		// Zabbix counts a username's length in characters (100), as the API server does.
		"zabbix-long-names": "apiVersion: tokens.statusops.dev/v1alpha1\nkind: StatusBackend\nmetadata: {name: zabbix-long-names, namespace: provider-test}\nspec:\n  url: https://zabbix.example.com\n  credentialsSecretRef: {name: zabbix-admin}\n  provider:\n    zabbix: {readOnlyUser: " + strings.Repeat("é", 100) + ", fullAccessUser: \"Grafana Automation (ops)\"}",
	}
	for name, m := range manifests {
		g.Expect(env.Client.Create(ctx, object(t, m), client.FieldValidation("Strict"))).To(Succeed(), name)
	}

	var legacy tokensv1alpha1.ClusterStatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "legacy-cluster"}, &legacy)).To(Succeed())
	g.Expect(legacy.Spec.Provider).To(BeNil(), "an unset provider stays unset: it means native")
	var legacyNS tokensv1alpha1.StatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "provider-test", Name: "legacy-namespaced"}, &legacyNS)).To(Succeed())
	g.Expect(legacyNS.Spec.Provider).To(BeNil())

	var native tokensv1alpha1.ClusterStatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "native"}, &native)).To(Succeed())
	g.Expect(native.Spec.Provider).To(Equal(&tokensv1alpha1.BackendProvider{Native: &tokensv1alpha1.NativeProvider{}}))

	var zabbixNS tokensv1alpha1.StatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "provider-test", Name: "zabbix-namespaced"}, &zabbixNS)).To(Succeed())
	g.Expect(zabbixNS.Spec.Provider).To(Equal(&tokensv1alpha1.BackendProvider{Zabbix: &tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "grafana-ro", FullAccessUser: "automation"}}))

	// Typed create, status write and read back of a zabbix backend.
	want := &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: "zabbix-typed"}}
	want.Spec.URL = "https://zabbix.example.com"
	want.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "zabbix-admin", Namespace: "apitoken-system", Key: "token"}
	want.Spec.Provider = &tokensv1alpha1.BackendProvider{Zabbix: &tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "apitoken-readonly", FullAccessUser: "apitoken-fullaccess"}}
	g.Expect(env.Client.Create(ctx, want)).To(Succeed())
	want.Status.Driver = tokensv1alpha1.DriverZabbix
	want.Status.Capabilities = []tokensv1alpha1.BackendCapability{
		{Name: tokensv1alpha1.CapabilityUsage, Supported: false, Effect: "the least-privilege review reports Unknown"},
		{Name: tokensv1alpha1.CapabilityClaim, Supported: true},
		{Name: tokensv1alpha1.CapabilityUpdatedSince, Supported: false, Effect: "the inventory lists every token each interval"},
	}
	g.Expect(env.Client.Status().Update(ctx, want)).To(Succeed())
	var got tokensv1alpha1.ClusterStatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "zabbix-typed"}, &got)).To(Succeed())
	g.Expect(got.Spec).To(Equal(want.Spec))
	g.Expect(got.Status.Driver).To(Equal("zabbix"))
	g.Expect(got.Status.Capabilities).To(Equal(want.Status.Capabilities))

	// The example for users: config/samples/zabbix.
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "zabbix", "tokens_v1alpha1_clusterstatusbackend.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Create(ctx, object(t, string(data)), client.FieldValidation("Strict"))).To(Succeed())
	var sample tokensv1alpha1.ClusterStatusBackend
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, &sample)).To(Succeed())
	g.Expect(sample.Spec.Provider).NotTo(BeNil())
	g.Expect(sample.Spec.Provider.Zabbix).To(Equal(&tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "apitoken-readonly", FullAccessUser: "apitoken-fullaccess"}))

	// The list decodes too (the operator's informers LIST), with the tolerant decoder.
	var list tokensv1alpha1.ClusterStatusBackendList
	g.Expect(env.Client.List(ctx, &list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(5))

	// capabilities is a map keyed by name: the same name twice is refused.
	got.Status.Capabilities = append(got.Status.Capabilities, tokensv1alpha1.BackendCapability{Name: tokensv1alpha1.CapabilityClaim, Supported: false})
	err = env.Client.Status().Update(ctx, &got)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("status.capabilities[3]"))
}
