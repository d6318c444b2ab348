package controllers_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// backendReady waits for a ClusterStatusBackend's Ready condition to have the reason.
func (h *harness) backendReady(name, reason string) *metav1.Condition {
	h.t.Helper()
	var cond *metav1.Condition
	NewWithT(h.t).Eventually(func(g Gomega) {
		var b tokensv1alpha1.ClusterStatusBackend
		g.Expect(h.c.Get(h.ctx, types.NamespacedName{Name: name}, &b)).To(Succeed())
		cond = meta.FindStatusCondition(b.Status.Conditions, tokensv1alpha1.ConditionReady)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Reason).To(Equal(reason))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	return cond
}

func TestClusterStatusBackendReadiness(t *testing.T) {
	h := newHarness(t)
	readOnly := h.backend.IssueToken(t, native.CreateRequest{Name: "ro-admin", Permission: backend.PermissionReadOnly})
	h.createAdminSecret(h.ns, "ro-admin", readOnly.Value.Reveal())
	// A full_access token is not an admin: token management needs the admin role.
	fullAccess := h.backend.IssueToken(t, native.CreateRequest{Name: "fa-not-admin", Permission: backend.PermissionFullAccess})
	h.createAdminSecret(h.ns, "fa-not-admin", fullAccess.Value.Reveal())
	h.createAdminSecret(h.ns, "revoked-admin", "sgt_thisTokenDoesNotExistOnTheBackend0000000")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "wrong-key"}, StringData: map[string]string{"password": h.backend.AdminToken}}
	NewWithT(t).Expect(h.c.Create(h.ctx, s)).To(Succeed())
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>Welcome to nginx</body></html>"))
	}))
	t.Cleanup(html.Close)

	cases := []struct {
		name    string
		mutate  func(*tokensv1alpha1.ClusterStatusBackend)
		reason  string
		message string
	}{
		{"missing-secret", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = "absent" }, tokensv1alpha1.ReasonCredentialsNotFound, "does not exist"},
		{"wrong-key", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = "wrong-key" }, tokensv1alpha1.ReasonCredentialsNotFound, "has no key \"token\""},
		{"read-only", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = "ro-admin" }, tokensv1alpha1.ReasonCredentialsInvalid, "needs the admin role"},
		{"full-access-not-admin", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = "fa-not-admin" }, tokensv1alpha1.ReasonCredentialsInvalid, "needs the admin role of the backend"},
		{"unknown-token", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CredentialsSecretRef.Name = "revoked-admin" }, tokensv1alpha1.ReasonCredentialsInvalid, "rejected the token"},
		{"unreachable", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.URL = "http://127.0.0.1:1/api/v3" }, tokensv1alpha1.ReasonBackendUnreachable, "could not be reached"},
		{"not-a-backend", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.URL = html.URL + "/api/v3" }, tokensv1alpha1.ReasonBackendUnreachable, "does not answer as a status backend"},
		{"bad-ca", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CABundle = []byte("not a pem") }, tokensv1alpha1.ReasonInvalidConfiguration, "spec.caBundle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			name := tc.name + "-" + h.ns
			h.createClusterBackend(name, h.backend.URL, tc.mutate)
			cond := h.backendReady(name, tc.reason)
			g.Expect(cond.Status).NotTo(Equal(metav1.ConditionTrue))
			g.Expect(cond.Message).To(ContainSubstring(tc.message))
			g.Expect(cond.Message).NotTo(ContainSubstring(h.backend.AdminToken))
			g.Expect(cond.Message).NotTo(ContainSubstring(readOnly.Value.Reveal()))
			g.Expect(cond.Message).NotTo(ContainSubstring(fullAccess.Value.Reveal()))
		})
	}

	// A fixed credential is picked up at once (watch on the Secret, not the 5 minute re-check).
	t.Run("fixed-credential", func(t *testing.T) {
		g := NewWithT(t)
		name := "missing-secret-" + h.ns
		h.createAdminSecret(h.ns, "absent", h.backend.AdminToken)
		cond := h.backendReady(name, tokensv1alpha1.ReasonPingSucceeded)
		g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
	})
}

func TestBackendWithCABundle(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	// A TLS front for the reference backend, with a certificate of its own CA.
	target := strings.TrimSuffix(h.backend.URL, "/api/v3")

	proxy := httptest.NewTLSServer(forwardTo(target, nil))
	t.Cleanup(proxy.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw})

	h.createClusterBackend("no-ca-"+h.ns, proxy.URL+"/api/v3", nil)
	cond := h.backendReady("no-ca-"+h.ns, tokensv1alpha1.ReasonBackendUnreachable)
	g.Expect(cond.Message).To(ContainSubstring("certificate"))

	h.createClusterBackend("ca-"+h.ns, proxy.URL+"/api/v3", func(b *tokensv1alpha1.ClusterStatusBackend) { b.Spec.CABundle = caPEM })
	h.backendReady("ca-"+h.ns, tokensv1alpha1.ReasonPingSucceeded)
	tok := h.create(h.newToken("over-tls", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) { t.Spec.BackendRef.Name = "ca-" + h.ns }))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(string(h.secret("over-tls").Data["url"])).To(HavePrefix("https://"))
	g.Expect(h.backendToken(got.Status.TokenID).Status).To(Equal(backend.StatusActive))
}

func TestNamespacedStatusBackend(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	sb := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "local"}}
	sb.Spec.URL = h.backend.URL
	sb.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: "admin", Key: "token"}
	g.Expect(h.c.Create(h.ctx, sb)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(sb), sb)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(sb.Status.Conditions, tokensv1alpha1.ConditionReady)).To(BeTrue())
	}).WithTimeout(15 * time.Second).Should(Succeed())
	tok := h.create(h.newToken("local-token", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "local"}
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	g.Expect(h.backendToken(got.Status.TokenID).ExternalID).To(Equal(string(got.UID)))
}

// forwardTo is a small reverse proxy to the reference backend; intercept, when it returns
// true, has answered the request itself.
func forwardTo(target string, intercept func(w http.ResponseWriter, r *http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if intercept != nil && intercept(w, r) {
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

// TestBackendRejectionNeedsAPerson: a 4xx answer to the create is not retried blindly; the
// token is Failed with the backend's message (kstatus Failed), and a spec change retries.
func TestBackendRejectionNeedsAPerson(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	var rejected atomic.Int64
	front := httptest.NewServer(forwardTo(strings.TrimSuffix(h.backend.URL, "/api/v3"), func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/api_tokens") && rejected.Load() >= 0 {
			rejected.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"success":false,"message":"description contains a forbidden word","errors":["description"]}`))
			return true
		}
		return false
	}))
	t.Cleanup(front.Close)
	h.createClusterBackend("rejecting-"+h.ns, front.URL+"/api/v3", nil)
	h.backendReady("rejecting-"+h.ns, tokensv1alpha1.ReasonPingSucceeded)
	tok := h.create(h.newToken("rejected", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef.Name = "rejecting-" + h.ns
		t.Spec.Description = "forbidden word"
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonBackendRejected)
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring("description contains a forbidden word"))
	g.Expect(kstatusOf(t, got)).To(Equal(status.FailedStatus))
	h.expectEvent(tok.Name, "Failed")
	// One create, refused: a 4xx is not retried (neither by the client nor by a later pass).
	g.Expect(rejected.Load()).To(BeEquivalentTo(1), "creates sent to the refusing backend")
	g.Consistently(rejected.Load).WithTimeout(3*time.Second).Should(BeEquivalentTo(1), "not retried blindly")
	h.expectEventCount(tok.Name, "Failed", 1)

	// The person fixes the spec; the next generation is tried again and succeeds.
	rejected.Store(-1 << 40)
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Description = "fine"
	g.Expect(h.c.Patch(h.ctx, got, patch)).To(Succeed())
	h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
}

// TestBackendDeletionWaitsForItsTokens: a backend with APITokens is kept (finalizer) until
// they are gone, so their tokens are still deactivated.
func TestBackendDeletionWaitsForItsTokens(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	tok := h.waitFor(h.create(h.newToken("user", tokensv1alpha1.PermissionReadOnly)).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	b := &tokensv1alpha1.ClusterStatusBackend{}
	g.Expect(h.c.Get(h.ctx, types.NamespacedName{Name: h.backendName}, b)).To(Succeed())
	g.Expect(b.Finalizers).To(ContainElement("tokens.statusops.dev/backend-in-use"))
	g.Expect(h.c.Delete(h.ctx, b)).To(Succeed())
	cond := h.backendReady(h.backendName, tokensv1alpha1.ReasonInUse)
	g.Expect(cond.Message).To(ContainSubstring(h.ns + "/user"))

	g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	g.Eventually(func() bool {
		return h.c.Get(h.ctx, types.NamespacedName{Name: h.backendName}, &tokensv1alpha1.ClusterStatusBackend{}) != nil
	}).WithTimeout(15*time.Second).Should(BeTrue(), "the backend goes once its last token is gone")
	g.Expect(h.backendToken(tok.Status.TokenID).Status).To(Equal(backend.StatusInactive))
}

// TestUnreadableCreateReplyLeavesNoActiveToken: the backend creates the token but its reply
// is garbled; the token it created must not stay active while the APIToken reports Failed.
func TestUnreadableCreateReplyLeavesNoActiveToken(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	target := strings.TrimSuffix(h.backend.URL, "/api/v3")
	front := httptest.NewServer(forwardTo(target, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/api_tokens") {
			return false
		}
		// Let the backend really create the token, then answer with an HTML page.
		forwardTo(target, nil).ServeHTTP(httptest.NewRecorder(), r)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("<html>oops</html>"))
		return true
	}))
	t.Cleanup(front.Close)
	h.createClusterBackend("garbled-"+h.ns, front.URL+"/api/v3", nil)
	h.backendReady("garbled-"+h.ns, tokensv1alpha1.ReasonPingSucceeded)
	tok := h.create(h.newToken("garbled", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef.Name = "garbled-" + h.ns
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonBackendRejected)
	g.Expect(h.readyCondition(got).Message).NotTo(ContainSubstring("sgt_"))
	all, err := h.admin.ListTokens(h.ctx, native.ListOptions{ExternalID: string(got.UID)})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).NotTo(BeEmpty(), "the backend did create a token")
	g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty(), "and it was deactivated")
}

// createStatusBackend creates a namespaced backend reading the Secret secretName of ns.
func (h *harness) createStatusBackend(ns, name, url, secretName string) *tokensv1alpha1.StatusBackend {
	h.t.Helper()
	sb := &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	sb.Spec.URL = url
	sb.Spec.CredentialsSecretRef = tokensv1alpha1.CredentialsSecretReference{Name: secretName, Key: "token"}
	NewWithT(h.t).Expect(h.c.Create(h.ctx, sb)).To(Succeed())
	return sb
}

// statusBackendReady waits for a StatusBackend's Ready condition to have the reason.
func (h *harness) statusBackendReady(ns, name, reason string, timeout time.Duration) *metav1.Condition {
	h.t.Helper()
	var cond *metav1.Condition
	NewWithT(h.t).Eventually(func(g Gomega) {
		var b tokensv1alpha1.StatusBackend
		g.Expect(h.c.Get(h.ctx, types.NamespacedName{Namespace: ns, Name: name}, &b)).To(Succeed())
		cond = meta.FindStatusCondition(b.Status.Conditions, tokensv1alpha1.ConditionReady)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Reason).To(Equal(reason))
	}).WithTimeout(timeout).WithPolling(50 * time.Millisecond).Should(Succeed())
	return cond
}

// TestNamespacedBackendErrorsAreCategories: a tenant's StatusBackend URL is called from the
// operator's network, so its status names only the category of a failure: no address, no
// server message, no echoed body (finding 9).
func TestNamespacedBackendErrorsAreCategories(t *testing.T) {
	h := newHarness(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	refused := closed.Addr().String()
	_ = closed.Close()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"success":false,"message":"upstream redis-0.internal:6379 refused AUTH"}`))
	}))
	t.Cleanup(echo.Close)
	cases := []struct{ name, url, category, secret string }{
		{"refused", "http://" + refused + "/api/v3", "connection refused", strings.Split(refused, ":")[1]},
		{"echo", echo.URL + "/api/v3", "server error (HTTP 502)", "redis-0.internal"},
		{"tls-to-plain", strings.Replace(echo.URL, "http://", "https://", 1) + "/api/v3", "TLS handshake failed", strings.TrimPrefix(echo.URL, "http://")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h.createStatusBackend(h.ns, tc.name, tc.url, "admin")
			cond := h.statusBackendReady(h.ns, tc.name, tokensv1alpha1.ReasonBackendUnreachable, 20*time.Second)
			g.Expect(cond.Message).To(ContainSubstring(tc.category))
			g.Expect(cond.Message).NotTo(ContainSubstring(tc.secret))
			g.Expect(cond.Message).NotTo(ContainSubstring("127.0.0.1"))
		})
	}
}

// TestNamespacedBackendsCanBeTurnedOff: with --namespaced-backends=false a StatusBackend is
// never called or given a status, and an APIToken referring to one fails (Stalled: only a
// person can change it) with a message naming the switch and the way out.
func TestNamespacedBackendsCanBeTurnedOff(t *testing.T) {
	h := newHarness(t, func(o *controllers.Options) { o.DisableNamespacedBackends = true })
	g := NewWithT(t)
	var calls atomic.Int64
	front := httptest.NewServer(forwardTo(strings.TrimSuffix(h.backend.URL, "/api/v3"), func(http.ResponseWriter, *http.Request) bool {
		calls.Add(1)
		return false
	}))
	t.Cleanup(front.Close)
	sb := h.createStatusBackend(h.ns, "tenant-probe", front.URL+"/api/v3", "admin")
	tok := h.create(h.newToken("on-tenant-backend", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "tenant-probe"}
	}))
	got := h.waitFor(tok.Name, tokensv1alpha1.PhaseFailed, tokensv1alpha1.ReasonBackendNotFound)
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring("--namespaced-backends=false"))
	g.Expect(h.readyCondition(got).Message).To(ContainSubstring("ClusterStatusBackend"))
	g.Consistently(func(g Gomega) {
		g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(sb), sb)).To(Succeed())
		g.Expect(sb.Status.Conditions).To(BeEmpty())
		g.Expect(sb.Finalizers).To(BeEmpty())
	}).WithTimeout(2 * time.Second).Should(Succeed())
	g.Expect(calls.Load()).To(BeZero(), "the tenant's URL is never called")
	g.Expect(h.activeBackendTokens(got.UID)).To(BeEmpty())
}

// TestNoisyNeighbourCannotStallAnotherTenant (finding 8): a tenant with 8 StatusBackends that
// never answer and 100 APITokens on a backend whose creates hang holds only its share of the
// workers; another tenant's new backend and token are Ready within 5 s.
func TestNoisyNeighbourCannotStallAnotherTenant(t *testing.T) {
	noisy := fmt.Sprintf("noisy-%d", time.Now().UnixNano()%1e9)
	NewWithT(t).Expect(env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: noisy}})).To(Succeed())
	h := newHarness(t, func(o *controllers.Options) { o.WatchNamespaces = append(o.WatchNamespaces, noisy) })
	g := NewWithT(t)

	stop := make(chan struct{})
	hold := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}
	var hangingCreates atomic.Int64
	never := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { hold(r) }))
	slowCreates := httptest.NewServer(forwardTo(strings.TrimSuffix(h.backend.URL, "/api/v3"), func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/api_tokens") {
			return false
		}
		hangingCreates.Add(1)
		hold(r)
		return true
	}))
	t.Cleanup(func() { close(stop); never.Close(); slowCreates.Close() })

	h.createAdminSecret(noisy, "admin", h.backend.AdminToken)
	h.createStatusBackend(noisy, "slow-creates", slowCreates.URL+"/api/v3", "admin")
	h.statusBackendReady(noisy, "slow-creates", tokensv1alpha1.ReasonPingSucceeded, 20*time.Second)
	for i := range 8 {
		h.createStatusBackend(noisy, fmt.Sprintf("never-%d", i), never.URL+"/api/v3", "admin")
	}
	for i := range 100 {
		tok := h.newToken(fmt.Sprintf("noise-%d", i), tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
			t.Namespace = noisy
			t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "slow-creates"}
		})
		g.Expect(h.c.Create(h.ctx, tok)).To(Succeed())
	}
	g.Eventually(hangingCreates.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 4))
	time.Sleep(time.Second) // the noise is in full swing: creates hang, the 8 backends are being checked

	start := time.Now()
	h.createStatusBackend(h.ns, "victim", h.backend.URL, "admin")
	tok := h.create(h.newToken("victim-token", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "victim"}
	}))
	// The noisy namespace holds at most 2 of the 4 backend workers, so the new backend is
	// checked at once, not after the 3 s timeouts of the hanging checks ahead of it.
	h.statusBackendReady(h.ns, "victim", tokensv1alpha1.ReasonPingSucceeded, 2*time.Second)
	g.Eventually(func(g Gomega) {
		got := h.get(tok.Name)
		g.Expect(got).NotTo(BeNil())
		g.Expect(got.Status.Phase).To(Equal(tokensv1alpha1.PhaseActive))
	}).WithTimeout(5*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "another tenant's token is Ready within 5 s")
	t.Logf("victim token Active %s after its backend was created; %d creates hung meanwhile", time.Since(start).Round(10*time.Millisecond), hangingCreates.Load())
	var noise tokensv1alpha1.APITokenList
	g.Expect(h.c.List(h.ctx, &noise, client.InNamespace(noisy))).To(Succeed())
	for _, n := range noise.Items {
		if c := meta.FindStatusCondition(n.Status.Conditions, tokensv1alpha1.ConditionReady); c != nil {
			g.Expect(c.Message).NotTo(ContainSubstring("too many requests in flight"), "a token refused by the cap changes no condition")
		}
	}
}

// TestCredentialsSecretOutlivesItsTokens (issue 12 finding 5): a namespace deleted in the
// bad order, its backend's credentials Secret first, still has every backend token of its
// APITokens deactivated: the Secret is held by a finalizer until no APIToken depends on it.
func TestCredentialsSecretOutlivesItsTokens(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	h.createAdminSecret(h.ns, "local-admin", h.backend.AdminToken)
	sb := h.createStatusBackend(h.ns, "local", h.backend.URL, "local-admin")
	h.statusBackendReady(h.ns, "local", tokensv1alpha1.ReasonPingSucceeded, 20*time.Second)
	var ids []string
	var toks []*tokensv1alpha1.APIToken
	for i := range 3 {
		tok := h.create(h.newToken(fmt.Sprintf("dep-%d", i), tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
			t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "local"}
		}))
		got := h.waitFor(tok.Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
		ids, toks = append(ids, got.Status.TokenID), append(toks, got)
	}
	secret := &corev1.Secret{}
	secretKey := types.NamespacedName{Namespace: h.ns, Name: "local-admin"}
	g.Eventually(func(g Gomega) {
		g.Expect(h.c.Get(h.ctx, secretKey, secret)).To(Succeed())
		g.Expect(secret.Finalizers).To(ContainElement(tokensv1alpha1.CredentialsFinalizer))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Namespace deletion in the worst order: the Secret, then the backend, then the tokens.
	base := readQueueStateOf(t, "statusbackend")
	g.Expect(h.c.Delete(h.ctx, secret)).To(Succeed())
	// Not a sleep: the backend's reconciler has handled the Secret's deletion (one more
	// pass, its queue empty) before the Secret is looked at.
	h.waitReconciledOf("statusbackend", base, 1)
	g.Expect(h.c.Get(h.ctx, secretKey, secret)).To(Succeed(), "held while tokens depend on it")
	g.Expect(h.c.Delete(h.ctx, sb)).To(Succeed())
	for _, tok := range toks {
		g.Expect(h.c.Delete(h.ctx, tok)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		for _, id := range ids {
			g.Expect(h.backendToken(id).Status).To(Equal(backend.StatusInactive))
		}
	}).WithTimeout(20*time.Second).Should(Succeed(), "every backend token is deactivated")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(h.c.Get(h.ctx, secretKey, &corev1.Secret{}))
	}).WithTimeout(20*time.Second).Should(BeTrue(), "the Secret goes once nothing depends on it")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(h.c.Get(h.ctx, client.ObjectKeyFromObject(sb), &tokensv1alpha1.StatusBackend{}))
	}).WithTimeout(10*time.Second).Should(BeTrue(), "and so does the backend")
	for _, tok := range toks {
		g.Expect(h.get(tok.Name)).To(BeNil())
	}
}

// TestChangedCredentialsReleaseTheOldSecret: a backend moved to another credentials Secret
// releases the old one (else it could never be deleted) and holds the new one.
func TestChangedCredentialsReleaseTheOldSecret(t *testing.T) {
	h := newHarness(t)
	g := NewWithT(t)
	h.createAdminSecret(h.ns, "old-admin", h.backend.AdminToken)
	h.createAdminSecret(h.ns, "new-admin", h.backend.AdminToken)
	sb := h.createStatusBackend(h.ns, "moving", h.backend.URL, "old-admin")
	h.statusBackendReady(h.ns, "moving", tokensv1alpha1.ReasonPingSucceeded, 20*time.Second)
	h.waitFor(h.create(h.newToken("user", tokensv1alpha1.PermissionReadOnly, func(t *tokensv1alpha1.APIToken) {
		t.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "moving"}
	})).Name, tokensv1alpha1.PhaseActive, tokensv1alpha1.ReasonIssued)
	finalizersOf := func(name string) func() []string {
		return func() []string {
			var s corev1.Secret
			if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &s); err != nil {
				return nil
			}
			return s.Finalizers
		}
	}
	g.Eventually(finalizersOf("old-admin")).WithTimeout(10 * time.Second).Should(ContainElement(tokensv1alpha1.CredentialsFinalizer))

	g.Expect(h.c.Get(h.ctx, client.ObjectKeyFromObject(sb), sb)).To(Succeed())
	patch := client.MergeFrom(sb.DeepCopy())
	sb.Spec.CredentialsSecretRef.Name = "new-admin"
	g.Expect(h.c.Patch(h.ctx, sb, patch)).To(Succeed())
	g.Eventually(finalizersOf("new-admin")).WithTimeout(10 * time.Second).Should(ContainElement(tokensv1alpha1.CredentialsFinalizer))
	g.Eventually(finalizersOf("old-admin")).WithTimeout(10*time.Second).ShouldNot(ContainElement(tokensv1alpha1.CredentialsFinalizer), "the old Secret is released")
	h.statusBackendReady(h.ns, "moving", tokensv1alpha1.ReasonPingSucceeded, 10*time.Second)
}
