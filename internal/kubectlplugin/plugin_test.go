package kubectlplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/installtest"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// One API server for the package, started by the first test that needs it; every test uses
// its own namespace. The plugin reaches it through a kubeconfig file, as it would a cluster.
var (
	env        *testenv.Env
	kubeconfig string
	envOnce    sync.Once
	envErr     error
	nsCounter  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		_ = env.Stop()
		_ = os.RemoveAll(filepath.Dir(kubeconfig))
	}
	os.Exit(code)
}

func ensureEnv(t *testing.T) {
	t.Helper()
	envOnce.Do(func() {
		if env, envErr = testenv.StartEnv(); envErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "kubectl-apitoken-")
		if err != nil {
			envErr = err
			return
		}
		kubeconfig = filepath.Join(dir, "kubeconfig")
		envErr = installtest.WriteKubeconfig(env.Config, kubeconfig)
	})
	if envErr != nil {
		t.Fatalf("starting envtest: %v", envErr)
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ensureEnv(t)
	ns := fmt.Sprintf("plugin-%d", nsCounter.Add(1))
	NewWithT(t).Expect(env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	return ns
}

// result is one run of the plugin.
type result struct {
	code           int
	stdout, stderr string
}

// kubectlApitoken runs the command line as `kubectl apitoken ARGS --kubeconfig=...` would,
// with the clock fixed at now when it is not zero.
func kubectlApitoken(t *testing.T, now time.Time, args ...string) result {
	t.Helper()
	return kubectlApitokenWith(t, kubeconfig, now, args...)
}

// kubectlApitokenWith is kubectlApitoken with another kubeconfig (another user).
func kubectlApitokenWith(t *testing.T, kubeconfig string, now time.Time, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &options{
		flags:        genericclioptions.NewConfigFlags(true),
		streams:      genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		pollInterval: 100 * time.Millisecond,
	}
	if !now.IsZero() {
		o.now = func() time.Time { return now }
	}
	code := run(o, append(args, "--kubeconfig="+kubeconfig))
	t.Logf("kubectl apitoken %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func createAPIToken(t *testing.T, ns, name string, perm tokensv1alpha1.Permission) *tokensv1alpha1.APIToken {
	t.Helper()
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	tok.Spec.Permission = perm
	NewWithT(t).Expect(env.Client.Create(context.Background(), tok)).To(Succeed())
	return tok
}

// startOperator runs the operator in-process for ns, against a reference backend over real
// HTTP, with a ClusterStatusBackend named after the namespace.
func startOperator(t *testing.T, ns string) *servertest.Instance {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	srv := servertest.Start(t)
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin"},
		StringData: map[string]string{"token": srv.AdminToken},
	})).To(Succeed())
	b := &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	b.Spec.URL = srv.URL
	b.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "admin", Namespace: ns, Key: "token"}
	g.Expect(env.Client.Create(ctx, b)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), b) })

	mgr, err := controllers.NewManager(env.Config, controllers.Options{
		MetricsAddr: "0", HealthAddr: "0", SyncInterval: time.Second,
		SkipNameValidation: true, WatchNamespaces: []string{ns},
	})
	g.Expect(err).NotTo(HaveOccurred())
	testenv.RunManager(t, env.Client, mgr, ns)
	return srv
}

func backendRef(ns string) *tokensv1alpha1.BackendReference {
	return &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKind("ClusterStatusBackend"), Name: ns}
}

func waitActive(t *testing.T, ns, name string) *tokensv1alpha1.APIToken {
	t.Helper()
	var tok tokensv1alpha1.APIToken
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &tok)).To(Succeed())
		g.Expect(string(tok.Status.Phase)).To(Equal("Active"))
		g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, "Ready")).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return &tok
}

func secretOf(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	NewWithT(t).Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s)).To(Succeed())
	return &s
}

// TestRotateEndToEnd: `rotate` against the running operator ends with a new token in the
// Secret and the old one deactivated on the backend; `status` then shows the new token and the
// Replaced event. No output ever contains a token value.
func TestRotateEndToEnd(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	srv := startOperator(t, ns)
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grafana"}}
	tok.Spec.Permission = "ReadOnly"
	tok.Spec.BackendRef = backendRef(ns)
	g.Expect(env.Client.Create(context.Background(), tok)).To(Succeed())
	before := waitActive(t, ns, "grafana")
	oldValue := string(secretOf(t, ns, "grafana").Data["token"])
	g.Expect(oldValue).NotTo(BeEmpty())

	rot := kubectlApitoken(t, time.Time{}, "rotate", "grafana", "-n", ns, "--timeout=60s")
	g.Expect(rot.code).To(Equal(0), rot.stderr)
	after := waitActive(t, ns, "grafana")
	g.Expect(after.Status.TokenID).NotTo(Equal(before.Status.TokenID))
	sec := secretOf(t, ns, "grafana")
	g.Expect(string(sec.Data["tokenID"])).To(Equal(after.Status.TokenID))
	g.Expect(rot.stdout).To(ContainSubstring("Waiting for the new token in Secret grafana"))
	g.Expect(rot.stdout).To(ContainSubstring(fmt.Sprintf("Rotated: %s (%s) -> %s (%s), now in Secret grafana",
		before.Status.TokenID, before.Status.TokenHint, after.Status.TokenID, after.Status.TokenHint)))
	g.Expect(after.Annotations).To(HaveKey(annotationRotate))
	g.Expect(after.Status.RotationHandled).To(Equal(after.Annotations[annotationRotate]))
	old, err := srv.Client(t).GetToken(context.Background(), before.Status.TokenID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(old.Status).To(Equal(backend.StatusInactive), "the replaced token is deactivated (no grace period)")

	st := kubectlApitoken(t, time.Time{}, "status", "grafana", "-n", ns)
	g.Expect(st.code).To(Equal(0), st.stderr)
	g.Expect(st.stdout).To(MatchRegexp(`Token:\s+%s \(%s\)`, after.Status.TokenID, regexpQuote(after.Status.TokenHint)))
	g.Expect(st.stdout).To(MatchRegexp(`Phase:\s+Active\nReady:\s+True \(Issued\): An active ReadOnly token is in Secret grafana\.`))
	g.Expect(st.stdout).To(MatchRegexp(`Permission:\s+ReadOnly`))
	g.Expect(st.stdout).To(MatchRegexp(`Expires:\s+never`))
	g.Expect(st.stdout).To(MatchRegexp(`Backend:\s+ClusterStatusBackend/` + ns))
	g.Expect(st.stdout).To(MatchRegexp(`Predecessors:\s+none draining`))
	g.Expect(st.stdout).To(MatchRegexp(`Normal\s+Replaced`))
	g.Expect(st.stdout).To(MatchRegexp(`Normal\s+Issued`))

	js := kubectlApitoken(t, time.Time{}, "status", "grafana", "-n", ns, "-o", "json")
	g.Expect(js.code).To(Equal(0), js.stderr)
	var parsed tokenStatus
	g.Expect(json.Unmarshal([]byte(js.stdout), &parsed)).To(Succeed())
	g.Expect(parsed.TokenID).To(Equal(after.Status.TokenID))
	g.Expect(parsed.Events).NotTo(BeEmpty())

	newValue := string(sec.Data["token"])
	for _, r := range []result{rot, st, js} {
		for _, v := range []string{oldValue, newValue} {
			g.Expect(r.stdout+r.stderr).NotTo(ContainSubstring(v), "a token value in the output")
		}
	}
}

func regexpQuote(s string) string {
	return strings.NewReplacer(".", `\.`, "(", `\(`, ")", `\)`).Replace(s)
}

// TestRevokeSetsAnnotation: revoke writes the revoke annotation with a fresh value (the time);
// waiting on an APIToken no operator handles fails with exit code 1 after --timeout.
func TestRevokeSetsAnnotation(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAPIToken(t, ns, "leaked", "FullAccess")
	now := time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)

	r := kubectlApitoken(t, now, "revoke", "leaked", "--namespace", ns, "--wait=false")
	g.Expect(r.code).To(Equal(0), r.stderr)
	var tok tokensv1alpha1.APIToken
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "leaked"}, &tok)).To(Succeed())
	g.Expect(tok.Annotations).To(HaveKeyWithValue(annotationRevoke, "2026-12-01T10:00:00.000000123Z"))
	g.Expect(tok.Annotations).NotTo(HaveKey(annotationRotate))
	g.Expect(r.stdout).To(ContainSubstring("annotated tokens.statusops.dev/revoke-requested-at=2026-12-01T10:00:00.000000123Z"))

	// A second revoke is a new request: a new value.
	r = kubectlApitoken(t, now.Add(time.Minute), "revoke", "leaked", "-n", ns, "--wait=false", "-o", "yaml")
	g.Expect(r.code).To(Equal(0), r.stderr)
	var res rotateResult
	g.Expect(yaml.Unmarshal([]byte(r.stdout), &res)).To(Succeed())
	g.Expect(res.Value).To(Equal("2026-12-01T10:01:00.000000123Z"))
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "leaked"}, &tok)).To(Succeed())
	g.Expect(tok.Annotations).To(HaveKeyWithValue(annotationRevoke, res.Value))

	r = kubectlApitoken(t, time.Time{}, "revoke", "leaked", "-n", ns, "--timeout=1s")
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.stderr).To(ContainSubstring("timed out after 1s waiting for the operator to revoke " + ns + "/leaked"))
}

// TestKubectlConventions: the namespace flag selects where to look, a missing object and a
// bad -o are errors with exit code 1, and a missing argument is a usage error.
func TestKubectlConventions(t *testing.T) {
	ns := newNamespace(t)
	other := newNamespace(t)
	createAPIToken(t, ns, "grafana", "ReadOnly")
	for name, tc := range map[string]struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		"found in its namespace":       {args: []string{"status", "grafana", "-n", ns}, code: 0, stdout: "APIToken:      " + ns + "/grafana\n"},
		"not found in another":         {args: []string{"status", "grafana", "-n", other}, code: 1, stderr: `"grafana" not found`},
		"rotate of a missing APIToken": {args: []string{"rotate", "nope", "-n", ns}, code: 1, stderr: `"nope" not found`},
		"unknown output format":        {args: []string{"status", "grafana", "-n", ns, "-o", "wide"}, code: 1, stderr: `output format "wide"`},
		"missing NAME":                 {args: []string{"status", "-n", ns}, code: 1, stderr: "accepts 1 arg(s), received 0"},
		"unknown subcommand":           {args: []string{"renew", "grafana"}, code: 1, stderr: `unknown command "renew"`},
		"yaml output":                  {args: []string{"status", "grafana", "-n", ns, "-o", "yaml"}, code: 0, stdout: "name: grafana\nnamespace: " + ns},
		"fresh token, never issued":    {args: []string{"status", "grafana", "-n", ns}, code: 0, stdout: "Phase:         -\nReady:         -\nPermission:    ReadOnly\nToken:         -\n"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r := kubectlApitoken(t, time.Time{}, tc.args...)
			g.Expect(r.code).To(Equal(tc.code))
			g.Expect(r.stdout).To(ContainSubstring(tc.stdout))
			g.Expect(r.stderr).To(ContainSubstring(tc.stderr))
		})
	}
}

// TestReview: findings of the namespace (or of all with -A) in a table, "-" where the
// operator wrote no finding and where the backend's status has no token counts.
func TestReview(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, other := newNamespace(t), newNamespace(t)
	createAPIToken(t, ns, "quiet", "ReadOnly")
	bot := createAPIToken(t, ns, "incident-bot", "FullAccess")
	createAPIToken(t, other, "elsewhere", "ReadOnly")
	meta.SetStatusCondition(&bot.Status.Conditions, metav1.Condition{
		Type: "LeastPrivilege", Status: metav1.ConditionFalse, Reason: "UnusedWritePermission",
		Message: "No write in 720h: set spec.permission: ReadOnly.",
	})
	g.Expect(env.Client.Status().Update(ctx, bot)).To(Succeed())
	b := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"}}
	b.Spec.URL = "http://127.0.0.1:1/api/v3"
	b.Spec.CredentialsSecretRef.Name, b.Spec.CredentialsSecretRef.Key = "admin", "token"
	g.Expect(env.Client.Create(ctx, b)).To(Succeed())

	r := kubectlApitoken(t, time.Time{}, "review", "-n", ns)
	g.Expect(r.code).To(Equal(0), r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^APITOKEN\s+PERMISSION\s+LEAST PRIVILEGE\s+REASON\s+LAST WRITE\s+LAST DENIED$`))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^incident-bot\s+FullAccess\s+False\s+UnusedWritePermission\s+-\s+-$`))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^quiet\s+ReadOnly\s+-\s+-\s+-\s+-$`))
	g.Expect(r.stdout).NotTo(ContainSubstring("elsewhere"))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^statusbackend/team\s+-\s+-\s+-\s+-\s+-$`))
	g.Expect(r.stdout).To(ContainSubstring(ns + "/incident-bot: No write in 720h: set spec.permission: ReadOnly."))

	r = kubectlApitoken(t, time.Time{}, "review", "-A")
	g.Expect(r.code).To(Equal(0), r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^NAMESPACE\s+APITOKEN`))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^%s\s+elsewhere\s+ReadOnly`, other))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^%s\s+incident-bot\s+FullAccess\s+False`, ns))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^%s/statusbackend/team\s`, ns))

	r = kubectlApitoken(t, time.Time{}, "review", "-n", ns, "-o", "json")
	g.Expect(r.code).To(Equal(0), r.stderr)
	var rv review
	g.Expect(json.Unmarshal([]byte(r.stdout), &rv)).To(Succeed())
	g.Expect(rv.Tokens).To(HaveLen(2))
	g.Expect(rv.Tokens[0].Name).To(Equal("incident-bot"))
	g.Expect(rv.Tokens[0].Reason).To(Equal("UnusedWritePermission"))
}

// kubeconfigAs writes a kubeconfig acting as user, authenticated and in no other group, so
// only the RBAC bound to that user applies.
func kubeconfigAs(t *testing.T, user string) string {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	NewWithT(t).Expect(installtest.WriteKubeconfig(cfg, path)).To(Succeed())
	return path
}

// grantRead lets user get, list and watch the resources of the operator's API group in ns.
func grantRead(t *testing.T, ns, user string, resources ...string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{group}, Resources: resources, Verbs: []string{"get", "list", "watch"},
	}}}
	g.Expect(env.Client.Create(ctx, role)).To(Succeed())
	g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
}

// TestReviewAsNamespaceUser: `review -n NS` by a user who may read only NS's objects shows
// NS's findings; a list it may not make (ClusterStatusBackends, or StatusBackends) is skipped
// with a note, on stderr and in -o json's notes, and the exit code is 0. Without the right to
// list APITokens there is nothing to review: exit code 1.
func TestReviewAsNamespaceUser(t *testing.T) {
	ns := newNamespace(t)
	createAPIToken(t, ns, "quiet", "ReadOnly")
	b := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"}}
	b.Spec.URL = "http://127.0.0.1:1/api/v3"
	b.Spec.CredentialsSecretRef.Name, b.Spec.CredentialsSecretRef.Key = "admin", "token"
	NewWithT(t).Expect(env.Client.Create(context.Background(), b)).To(Succeed())
	grantRead(t, ns, ns+"-team", "apitokens", "statusbackends")
	grantRead(t, ns, ns+"-tokens", "apitokens")

	for name, tc := range map[string]struct {
		user     string
		backends []string // what the backend table shows
		skipped  []string // the kinds the notes name
	}{
		"tokens and backends of the namespace": {user: ns + "-team", backends: []string{"statusbackend/team"}, skipped: []string{"ClusterStatusBackends"}},
		"tokens of the namespace only":         {user: ns + "-tokens", skipped: []string{"ClusterStatusBackends", "StatusBackends"}},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			kc := kubeconfigAs(t, tc.user)
			r := kubectlApitokenWith(t, kc, time.Time{}, "review", "-n", ns)
			g.Expect(r.code).To(Equal(0), r.stderr)
			g.Expect(r.stdout).To(MatchRegexp(`(?m)^quiet\s+ReadOnly\s+-\s+-\s+-\s+-$`))
			for _, b := range tc.backends {
				g.Expect(r.stdout).To(MatchRegexp(`(?m)^%s\s`, b))
			}
			if len(tc.backends) == 0 {
				g.Expect(r.stdout).To(ContainSubstring("No backends found (some were not listed: see the notes).\n"))
			}
			g.Expect(r.stdout).NotTo(ContainSubstring("clusterstatusbackend/"))
			for _, kind := range tc.skipped {
				g.Expect(r.stderr).To(MatchRegexp(`(?m)^Note: %s are not shown: .*forbidden`, kind))
			}

			r = kubectlApitokenWith(t, kc, time.Time{}, "review", "-n", ns, "-o", "json")
			g.Expect(r.code).To(Equal(0), r.stderr)
			var rv struct {
				Tokens []struct{ Name string } `json:"tokens"`
				Notes  []string                `json:"notes"`
			}
			g.Expect(json.Unmarshal([]byte(r.stdout), &rv)).To(Succeed())
			g.Expect(rv.Tokens).To(HaveLen(1))
			g.Expect(rv.Notes).To(HaveLen(len(tc.skipped)))
			for i, kind := range tc.skipped {
				g.Expect(rv.Notes[i]).To(HavePrefix(kind + " are not shown: "))
			}
		})
	}

	r := kubectlApitokenWith(t, kubeconfigAs(t, ns+"-nobody"), time.Time{}, "review", "-n", ns)
	NewWithT(t).Expect(r.code).To(Equal(1))
	NewWithT(t).Expect(r.stderr).To(MatchRegexp(`listing APITokens: .*forbidden`))
}
