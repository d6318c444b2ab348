package devenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// testZabbix is a Zabbix as start.sh describes it, with users named unlike the sample's, so a
// test sees which names reach the backend object.
func testZabbix() *ZabbixServer {
	z := &ZabbixServer{
		URL:            "http://127.0.0.1:18334",
		APIURL:         "http://127.0.0.1:18334/api_jsonrpc.php",
		Version:        "6.0.14",
		AdminToken:     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		ReadOnlyUser:   ZabbixUser{ID: "3", Name: "dev-readonly"},
		FullAccessUser: ZabbixUser{ID: "4", Name: "dev-fullaccess"},
		Dir:            "/tmp/zabbix-x",
	}
	z.HostGroup.ID, z.HostGroup.Name = "20", "apitoken-operator"
	return z
}

func zabbixSample(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := readManifests(filepath.Join(testenv.RepoRoot(), "config", "samples", "zabbix", "tokens_v1alpha1_clusterstatusbackend.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestZabbixBackendObjects: the ClusterStatusBackend "default" make dev BACKEND=zabbix applies
// is the sample with the running server's URL, the Secret it creates, and the two users
// bootstrap.php made; it decodes strictly into the API types (no misspelt field), and the
// sample itself is left as it was.
func TestZabbixBackendObjects(t *testing.T) {
	g := NewWithT(t)
	sample := zabbixSample(t)
	before := sample[0].DeepCopy()
	z := testZabbix()

	objs, err := ZabbixBackendObjects(sample, z)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(objs).To(HaveLen(3))
	g.Expect(sample[0]).To(Equal(before), "the sample is not modified")

	var ns corev1.Namespace
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, &ns, true)).To(Succeed())
	g.Expect(ns.Name).To(Equal(AdminNamespace))

	var secret corev1.Secret
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[1].Object, &secret, true)).To(Succeed())
	g.Expect(secret.Namespace).To(Equal(AdminNamespace))
	g.Expect(secret.Name).To(Equal(ZabbixAdminSecretName))
	g.Expect(secret.StringData).To(Equal(map[string]string{AdminSecretKey: z.AdminToken}))

	var backend tokensv1alpha1.ClusterStatusBackend
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[2].Object, &backend, true)).To(Succeed())
	g.Expect(backend.APIVersion).To(Equal(tokensv1alpha1.GroupVersion.String()))
	g.Expect(backend.Kind).To(Equal("ClusterStatusBackend"))
	g.Expect(backend.Name).To(Equal(DefaultBackendName))
	g.Expect(backend.Spec.URL).To(Equal("http://127.0.0.1:18334"), "the frontend's base URL, not the API's")
	g.Expect(backend.Spec.CredentialsSecretRef).To(Equal(tokensv1alpha1.CredentialsSecretReference{Name: ZabbixAdminSecretName, Namespace: AdminNamespace, Key: AdminSecretKey}))
	g.Expect(backend.Spec.Provider).To(Equal(&tokensv1alpha1.BackendProvider{Zabbix: &tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "dev-readonly", FullAccessUser: "dev-fullaccess"}}))
}

// TestZabbixBackendObjectsRefusesWhatItCannotBuild: no server, or a sample without the
// ClusterStatusBackend "default", is an error that says so.
func TestZabbixBackendObjectsRefusesWhatItCannotBuild(t *testing.T) {
	g := NewWithT(t)
	_, err := ZabbixBackendObjects(zabbixSample(t), nil)
	g.Expect(err).To(MatchError(ContainSubstring("no Zabbix server")))

	renamed := zabbixSample(t)
	renamed[0].SetName("zabbix")
	_, err = ZabbixBackendObjects(renamed, testZabbix())
	g.Expect(err).To(MatchError(ContainSubstring(`no ClusterStatusBackend named "default"`)))
}

// TestReadZabbixServer reads a zabbix.json as start.sh writes it, and refuses one that lacks
// what the environment needs, naming the fields.
func TestReadZabbixServer(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	const written = `{
    "url": "http://127.0.0.1:18334",
    "apiUrl": "http://127.0.0.1:18334/api_jsonrpc.php",
    "version": "6.0.14",
    "adminUser": {"id": "1", "name": "Admin", "password": "zabbix"},
    "adminToken": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "adminTokenId": "1",
    "hostGroup": {"id": "20", "name": "apitoken-operator"},
    "readOnlyUser": {"id": "3", "name": "dev-readonly", "password": "Zbx-1", "roleId": "5", "userGroupId": "13"},
    "fullAccessUser": {"id": "4", "name": "dev-fullaccess", "password": "Zbx-2", "roleId": "6", "userGroupId": "14"}
}
`
	g.Expect(os.WriteFile(filepath.Join(dir, "zabbix.json"), []byte(written), 0o600)).To(Succeed())
	z, err := readZabbixServer(dir)
	g.Expect(err).NotTo(HaveOccurred())
	want := testZabbix()
	want.Dir = dir
	g.Expect(z).To(Equal(want))

	// The template start.sh copies into a new directory has no URL until bootstrap.php --reuse ran.
	g.Expect(os.WriteFile(filepath.Join(dir, "zabbix.json"), []byte(`{"version": "6.0.14", "readOnlyUser": {"name": "ro"}}`), 0o600)).To(Succeed())
	_, err = readZabbixServer(dir)
	g.Expect(err).To(MatchError(And(ContainSubstring("url"), ContainSubstring("apiUrl"), ContainSubstring("adminToken"), ContainSubstring("fullAccessUser.name"), ContainSubstring("remove "+dir))))
}

// TestZabbixBackendSurvivesTheSamples applies, on a real API server, what make dev
// BACKEND=zabbix applies: the Zabbix backend, then config/samples. The samples' own
// ClusterStatusBackend "default" (the reference backend's) is left out, or, applied by the same
// field manager, it would take spec.provider away and leave a native backend with Zabbix's URL.
// A later make dev without BACKEND turns the same "default" back into a native backend.
func TestZabbixBackendSurvivesTheSamples(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	env := testenv.Start(t)
	c, err := client.New(env.Config, client.Options{Scheme: Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	z := testZabbix()
	e := &Env{Client: c, Zabbix: z, BackendURL: z.URL, AdminToken: z.AdminToken, opts: Options{RepoRoot: testenv.RepoRoot(), Backend: tokensv1alpha1.DriverZabbix}}

	g.Expect(e.configureZabbixBackend(ctx)).To(Succeed())
	g.Expect(e.applySamples(ctx)).To(Succeed())
	g.Expect(e.Samples).To(HaveLen(2))

	var backend tokensv1alpha1.ClusterStatusBackend
	g.Expect(c.Get(ctx, client.ObjectKey{Name: DefaultBackendName}, &backend)).To(Succeed())
	g.Expect(backend.Spec.URL).To(Equal(z.URL))
	g.Expect(backend.Spec.CredentialsSecretRef.Name).To(Equal(ZabbixAdminSecretName))
	g.Expect(backend.Spec.Provider).NotTo(BeNil(), "applying the samples dropped spec.provider")
	g.Expect(backend.Spec.Provider.Zabbix).To(Equal(&tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "dev-readonly", FullAccessUser: "dev-fullaccess"}))
	var secret corev1.Secret
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: AdminNamespace, Name: ZabbixAdminSecretName}, &secret)).To(Succeed())
	g.Expect(string(secret.Data[AdminSecretKey])).To(Equal(z.AdminToken))

	// What make dev prints once the tokens are Ready: the ReadOnly token in the body's "auth"
	// (Zabbix 6.0 ignores a Bearer header), its refused dashboard.create, the FullAccess token's.
	var out strings.Builder
	g.Expect(e.printNextSteps(ctx, &out, 9*time.Second)).To(Succeed())
	g.Expect(out.String()).To(And(
		ContainSubstring("API=http://127.0.0.1:18334/api_jsonrpc.php"),
		ContainSubstring("kubectl get secret grafana-status-panel -o jsonpath='{.data.token}'"),
		ContainSubstring(`"method":"host.get"`),
		ContainSubstring(`"auth":"'"$TOKEN"'"`),
		ContainSubstring(`No permissions to call "dashboard.create"`),
		ContainSubstring("kubectl get secret incident-bot-token -o jsonpath='{.data.token}'"),
		ContainSubstring(`"auth":"'"$FULL"'"`),
		ContainSubstring("kubectl -n apitoken-system get secret zabbix-admin"),
		ContainSubstring("/tmp/zabbix-x"),
	))
	g.Expect(out.String()).NotTo(ContainSubstring("Authorization"), "Zabbix 6.0 ignores the header")
	g.Expect(out.String()).NotTo(ContainSubstring("<no value>"))

	native := &Env{Client: c, BackendURL: "http://127.0.0.1:8080/api/v3", AdminToken: "admin", opts: Options{RepoRoot: testenv.RepoRoot()}}
	g.Expect(native.configureBackend(ctx)).To(Succeed())
	g.Expect(native.applySamples(ctx)).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Name: DefaultBackendName}, &backend)).To(Succeed())
	g.Expect(backend.Spec.Provider).To(BeNil(), "the native sample names no provider")
	g.Expect(backend.Spec.URL).To(Equal("http://127.0.0.1:8080/api/v3"))
	g.Expect(backend.Spec.CredentialsSecretRef.Name).To(Equal(AdminSecretName))
}
