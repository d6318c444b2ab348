package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/statusops/apitoken-operator/internal/devenv"
	"github.com/statusops/apitoken-operator/internal/installtest"
)

// leaderElectionID is the manager's default --leader-election-id: the name of its Lease.
const leaderElectionID = "apitoken-operator.statusops.dev"

// TestManagerNeedsOnlyTheShippedRBAC is least privilege, proven: in an environment of its
// own, the manager runs as the ServiceAccount of dist/install.yaml (impersonated, so only
// the shipped ClusterRole, leader-election Role and their bindings apply) with leader
// election on in apitoken-system, and the core scenarios pass without the API server
// refusing the manager anything.
func TestManagerNeedsOnlyTheShippedRBAC(t *testing.T) {
	requirePrerequisites(t)
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	opts := envOptions(filepath.Join(t.TempDir(), "env"))
	opts.ManagerImpersonation = true
	// --metrics-secure=true (the default, which make dev turns off): the metrics endpoint's
	// TokenReviews and SubjectAccessReviews run under the shipped RBAC too.
	opts.ManagerArgs = append(opts.ManagerArgs, "--leader-elect", "--leader-election-namespace="+installtest.Namespace, "--metrics-secure=true")
	managerLog := filepath.Join(opts.Dir, "logs", "manager.log")
	// Runs last (cleanups are last in, first out), after every scenario and the manager's
	// shutdown: whatever else failed, say what the API server refused.
	t.Cleanup(func() { reportForbidden(t, managerLog) })

	e, err := devenv.Start(ctx, opts)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping the environment: %v", err)
		}
	})
	dumpLogOnFailure(t, e)

	// The manager really is the ServiceAccount, and is held to its RBAC.
	g.Expect(e.ManagerKubeconfig).NotTo(Equal(e.Kubeconfig))
	cfg, err := clientcmd.BuildConfigFromFlags("", e.ManagerKubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	asManager, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	review, err := asManager.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(review.Status.UserInfo.Username).To(Equal(installtest.ServiceAccountUser))
	access, err := asManager.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: "tokens.statusops.dev", Resource: "apitokens", Verb: "create", Namespace: "default",
		}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(access.Status.Allowed).To(BeFalse(), "the manager's kubeconfig should not have admin rights")

	// The manager, elected leader through its Lease, reconciles the default backend.
	kubectl(t, e, "wait", "--for=condition=Ready", "--timeout=60s", "clusterstatusbackend/"+devenv.DefaultBackendName)
	holder := kubectl(t, e, "get", "lease", leaderElectionID, "-n", installtest.Namespace, "-o", "jsonpath={.spec.holderIdentity}")
	g.Expect(holder).NotTo(BeEmpty(), "the manager should hold the leader-election Lease")

	t.Run("scenarios", func(t *testing.T) {
		for _, s := range []struct {
			name string
			run  func(*testing.T, *devenv.Env, string)
		}{
			{"WorkloadUsesTokensFromSecrets", workloadUsesTokensFromSecrets},
			{"TokenExpiresOnTime", tokenExpiresOnTime},
			{"DeletingATokenRevokesItAndRemovesItsSecret", deletingATokenRevokesItAndRemovesItsSecret},
			{"DeletingANamespaceRevokesEveryToken", deletingANamespaceRevokesEveryToken},
		} {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				s.run(t, e, "rbac-"+strings.ToLower(s.name))
			})
		}
	})

	t.Run("MetricsForAuthorizedScrapersOnly", func(t *testing.T) { metricsForAuthorizedScrapersOnly(t, e) })

	// Still the leader at the end: renewing the Lease was allowed throughout.
	g.Expect(kubectl(t, e, "get", "lease", leaderElectionID, "-n", installtest.Namespace, "-o", "jsonpath={.spec.holderIdentity}")).
		To(Equal(holder))
}

// reportForbidden fails the test when the manager's log says the API server refused it
// something ("... is forbidden: ..."), naming each refused verb and resource. The one
// refusal that is not about RBAC and is expected is NamespaceLifecycle's: Events about
// APITokens revoked while their namespace is being deleted cannot be created there.
func reportForbidden(t *testing.T, managerLog string) {
	data, err := os.ReadFile(managerLog)
	if os.IsNotExist(err) {
		return // the manager never started; Start's error says why
	}
	if err != nil {
		t.Errorf("reading the manager's log: %v", err)
		return
	}
	refused, terminating := forbiddenRequests(string(data))
	if terminating > 0 {
		t.Logf("%d Event(s) refused because their namespace was being deleted (expected, not RBAC)", terminating)
	}
	if len(refused) > 0 {
		t.Errorf("the API server refused the manager, running as %s with only the RBAC of dist/install.yaml, "+
			"%d kind(s) of request:\n  %s\nsee %s",
			installtest.ServiceAccountUser, len(refused), strings.Join(refused, "\n  "), managerLog)
	}
}

var (
	// forbiddenByRBAC is the API server's RBAC refusal, as the manager logs it.
	forbiddenByRBAC = regexp.MustCompile(`User "([^"]*)" cannot ([a-z]+) resource "([^"]+)" in API group "([^"]*)"(?: in the namespace "([^"]+)"| at the cluster scope)?`)
	// forbiddenTerminating is NamespaceLifecycle admission refusing to create an object in a
	// namespace that is being deleted.
	forbiddenTerminating = regexp.MustCompile(`is forbidden: unable to create new content in namespace \S+ because it is being terminated`)
)

// forbiddenRequests returns one line per distinct refused request in log (verb, resource,
// API group and scope for an RBAC refusal; how often; the first log line saying so), sorted,
// and how many refusals were for a namespace being deleted (not returned).
func forbiddenRequests(log string) (refused []string, terminating int) {
	type refusal struct {
		count int
		first string
	}
	byKind := map[string]*refusal{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "is forbidden") {
			continue
		}
		unquoted := strings.ReplaceAll(line, `\"`, `"`)
		if forbiddenTerminating.MatchString(unquoted) {
			terminating++
			continue
		}
		line = strings.TrimSpace(line)
		if len(line) > 400 {
			line = line[:400] + "..."
		}
		key := "(not an RBAC refusal) " + line
		if m := forbiddenByRBAC.FindStringSubmatch(unquoted); m != nil {
			group := m[4]
			if group == "" {
				group = "core"
			}
			scope := "cluster-wide"
			if m[5] != "" {
				scope = "in namespace " + m[5]
			}
			key = fmt.Sprintf("%s %s (API group %s) %s", m[2], m[3], group, scope)
		}
		if r := byKind[key]; r != nil {
			r.count++
		} else {
			byKind[key] = &refusal{count: 1, first: line}
		}
	}
	for key, r := range byKind {
		refused = append(refused, fmt.Sprintf("%s: refused %d time(s), first: %s", key, r.count, r.first))
	}
	sort.Strings(refused)
	return refused, terminating
}

// TestForbiddenRequestsNamesTheMissingRule checks the log parsing reportForbidden relies on,
// on lines as the manager writes them (controller-runtime's console encoder and klog).
func TestForbiddenRequestsNamesTheMissingRule(t *testing.T) {
	g := NewWithT(t)
	log := strings.Join([]string{
		`2026-01-02T03:04:05Z	INFO	reconciled	{"controller": "apitoken"}`,
		`2026-01-02T03:04:05Z	ERROR	Reconciler error	{"error": "leases.coordination.k8s.io \"apitoken-operator.statusops.dev\" is forbidden: User \"system:serviceaccount:apitoken-system:apitoken-operator-controller-manager\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"apitoken-system\""}`,
		`E0102 03:04:05.000000       1 reflector.go:200] "Failed to watch" err="failed to list *v1.Secret: secrets is forbidden: User \"system:serviceaccount:apitoken-system:apitoken-operator-controller-manager\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"`,
		`E0102 03:04:06.000000       1 reflector.go:200] "Failed to watch" err="failed to list *v1.Secret: secrets is forbidden: User \"system:serviceaccount:apitoken-system:apitoken-operator-controller-manager\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"`,
		`2026-01-02T03:04:07Z	ERROR	events	Server rejected event (will not retry!)	{"error": "events.events.k8s.io \"a.18ebc82e3d8aed76\" is forbidden: unable to create new content in namespace e2e because it is being terminated"}`,
		`2026-01-02T03:04:08Z	ERROR	webhook	{"error": "pods \"x\" is forbidden: exceeded quota"}`,
	}, "\n")
	got, terminating := forbiddenRequests(log)
	g.Expect(terminating).To(Equal(1))
	g.Expect(got).To(HaveLen(3))
	g.Expect(got[0]).To(HavePrefix("(not an RBAC refusal) 2026-01-02T03:04:08Z"))
	g.Expect(got[1]).To(HavePrefix("get leases (API group coordination.k8s.io) in namespace apitoken-system: refused 1 time(s)"))
	g.Expect(got[2]).To(HavePrefix("list secrets (API group core) cluster-wide: refused 2 time(s)"))
	got, terminating = forbiddenRequests("all good\n")
	g.Expect(got).To(BeEmpty())
	g.Expect(terminating).To(BeZero())
}

// metricsForAuthorizedScrapersOnly: the manager, with only the shipped RBAC, checks scrapers
// itself (issue 11, finding 3): no token is 401, a ServiceAccount bound to the shipped
// metrics-reader ClusterRole reads the metrics, one without it is 403. A manager lacking
// create on tokenreviews or subjectaccessreviews would answer 500 and log the refusal.
func metricsForAuthorizedScrapersOnly(t *testing.T, e *devenv.Env) {
	g := NewWithT(t)
	ctx := t.Context()
	kubectl(t, e, "create", "serviceaccount", "scraper", "-n", "default")
	kubectl(t, e, "create", "serviceaccount", "stranger", "-n", "default")
	kubectl(t, e, "create", "clusterrolebinding", "scraper-metrics", "--clusterrole=apitoken-operator-metrics-reader", "--serviceaccount=default:scraper")
	token := func(sa string) string {
		return strings.TrimSpace(kubectl(t, e, "create", "token", sa, "-n", "default"))
	}
	scraper, stranger := token("scraper"), token("stranger")
	// The certificate is self-signed (no --metrics-cert-path); who may read is the point here.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed by design
	}}
	url := fmt.Sprintf("https://127.0.0.1:%d/metrics", e.Ports.ManagerMetrics)
	status := func(bearer string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	// RBAC bindings reach the authorizer after a moment.
	g.Eventually(func() (int, error) { return status(scraper) }).WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))
	g.Expect(status("")).To(Equal(http.StatusUnauthorized))
	g.Expect(status(stranger)).To(Equal(http.StatusForbidden))
}
