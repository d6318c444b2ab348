package metricsauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// fakeReviewer is an API server answering TokenReviews and SubjectAccessReviews, counting
// them. It authenticates "<user>-token" as <user> and lets only alice get anything; carol's
// SubjectAccessReviews and the token "broken-s3cret" fail (403: not retried).
type fakeReviewer struct {
	tokenReviews, accessReviews atomic.Int32
	mu                          sync.Mutex
	lastSpec                    authzv1.SubjectAccessReviewSpec
}

func (f *fakeReviewer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/apis/authentication.k8s.io/v1/tokenreviews":
		f.tokenReviews.Add(1)
		var tr authnv1.TokenReview
		_ = json.NewDecoder(r.Body).Decode(&tr)
		if tr.Spec.Token == "broken-s3cret" {
			writeForbidden(w, "tokenreviews")
			return
		}
		if name, ok := strings.CutSuffix(tr.Spec.Token, "-token"); ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
				Username: name, UID: name + "-uid", Groups: []string{"scrapers"},
				Extra: map[string]authnv1.ExtraValue{"scope": {"metrics"}},
			}}
		}
		writeJSON(w, &tr, "authentication.k8s.io/v1", "TokenReview")
	case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		f.accessReviews.Add(1)
		var sar authzv1.SubjectAccessReview
		_ = json.NewDecoder(r.Body).Decode(&sar)
		f.mu.Lock()
		f.lastSpec = sar.Spec
		f.mu.Unlock()
		if sar.Spec.User == "carol" {
			writeForbidden(w, "subjectaccessreviews")
			return
		}
		sar.Status.Allowed = sar.Spec.User == "alice"
		writeJSON(w, &sar, "authorization.k8s.io/v1", "SubjectAccessReview")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeReviewer) lastAccessReview() authzv1.SubjectAccessReviewSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastSpec
}

func writeJSON(w http.ResponseWriter, obj interface{ GetObjectKind() schema.ObjectKind }, apiVersion, kind string) {
	obj.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(obj)
}

func writeForbidden(w http.ResponseWriter, resource string) {
	st := apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", fmt.Errorf("no RBAC")).ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(&st)
}

// TestMetricsAuthFilter: the filter without an API server. Tokens are reviewed once per
// TTL whatever the answer, a deny is asked again after 30 s and an allow not before 5 min,
// failed reviews are not cached, random tokens cannot grow the cache, and no token reaches
// the logs or the metrics handler.
func TestMetricsAuthFilter(t *testing.T) {
	g := NewWithT(t)
	fake := &fakeReviewer{}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	now := time.Unix(1_700_000_000, 0)
	// JSON: the typed clients would send protobuf, which the fake does not read. No client
	// rate limit: the flood below is 2048 reviews.
	cfg := &rest.Config{Host: srv.URL, QPS: -1, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}
	a, err := newMetricsAuth(cfg, srv.Client(), func() time.Time { return now })
	g.Expect(err).NotTo(HaveOccurred())
	var logs strings.Builder
	log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 10})
	h, err := a.filter(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.Expect(r.Header.Get("Authorization")).To(BeEmpty(), "the token stops at the filter")
		_, _ = w.Write([]byte("controller_runtime_ok"))
	}))
	g.Expect(err).NotTo(HaveOccurred())
	serve := func(authorization string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	expect := func(authorization string, code int, body string, tokenReviews, accessReviews int) {
		t.Helper()
		gotCode, gotBody := serve(authorization)
		g.Expect([]any{gotCode, gotBody}).To(Equal([]any{code, body}), authorization)
		g.Expect([]int32{fake.tokenReviews.Load(), fake.accessReviews.Load()}).To(Equal([]int32{int32(tokenReviews), int32(accessReviews)}), "reviews after %q", authorization)
	}

	// Not a bearer token: 401 without a review.
	for _, header := range []string{"", "Bearer", "Bearer ", "Bearer  alice-token", "Basic alice-token"} {
		expect(header, http.StatusUnauthorized, "Unauthorized", 0, 0)
	}

	expect("bearer alice-token", http.StatusOK, "controller_runtime_ok", 1, 1)
	g.Expect(fake.lastAccessReview()).To(Equal(authzv1.SubjectAccessReviewSpec{
		User: "alice", UID: "alice-uid", Groups: []string{"scrapers", "system:authenticated"},
		Extra:                 map[string]authzv1.ExtraValue{"scope": {"metrics"}},
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
	}))
	expect("Bearer alice-token", http.StatusOK, "controller_runtime_ok", 1, 1)

	expect("Bearer bob-token", http.StatusForbidden, "Authorization denied for user bob", 2, 2)
	expect("Bearer bob-token", http.StatusForbidden, "Authorization denied for user bob", 2, 2)
	expect("Bearer garbage", http.StatusUnauthorized, "Unauthorized", 3, 2)
	expect("Bearer garbage", http.StatusUnauthorized, "Unauthorized", 3, 2)

	now = now.Add(denyTTL + time.Second)
	expect("Bearer bob-token", http.StatusForbidden, "Authorization denied for user bob", 3, 3)
	expect("Bearer alice-token", http.StatusOK, "controller_runtime_ok", 3, 3)
	now = now.Add(tokenTTL - denyTTL)
	expect("Bearer alice-token", http.StatusOK, "controller_runtime_ok", 4, 3)
	now = now.Add(allowTTL)
	expect("Bearer alice-token", http.StatusOK, "controller_runtime_ok", 5, 4)

	expect("Bearer broken-s3cret", http.StatusInternalServerError, "Authentication failed", 6, 4)
	expect("Bearer broken-s3cret", http.StatusInternalServerError, "Authentication failed", 7, 4)
	expect("Bearer carol-token", http.StatusInternalServerError, "Authorization for user carol failed", 8, 5)
	expect("Bearer carol-token", http.StatusInternalServerError, "Authorization for user carol failed", 8, 6)
	g.Expect(logs.String()).To(ContainSubstring("Authentication failed"))
	g.Expect(logs.String()).To(ContainSubstring("Authorization for user carol failed"))
	g.Expect(logs.String()).NotTo(ContainSubstring("-token"))
	g.Expect(logs.String()).NotTo(ContainSubstring("s3cret"))

	for i := range 2 * authCacheSize {
		code, _ := serve(fmt.Sprintf("Bearer random-%d", i))
		g.Expect(code).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(len(a.users.entries)).To(Equal(authCacheSize))
	g.Expect(fake.tokenReviews.Load()).To(BeEquivalentTo(8 + 2*authCacheSize))
}

// TestAuthCacheEviction: a full cache drops the expired entries first, then the one closest
// to expiring, so that a flood of denies does not evict a long-lived allow.
func TestAuthCacheEviction(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(0, 0)
	c := newTTLCache[int](3, func() time.Time { return now })
	key := func(i int) authKey { return authKey{byte(i)} }
	c.add(key(1), 1, allowTTL)
	c.add(key(2), 2, denyTTL)
	c.add(key(3), 3, denyTTL)
	now = now.Add(denyTTL)
	c.add(key(4), 4, denyTTL)
	g.Expect(c.entries).To(HaveLen(2), "2 and 3 expired")
	now = now.Add(time.Second)
	c.add(key(5), 5, denyTTL)
	c.add(key(6), 6, denyTTL)
	g.Expect(c.entries).To(HaveLen(3))
	_, ok := c.get(key(4))
	g.Expect(ok).To(BeFalse(), "4 expired first of the live ones")
	v, ok := c.get(key(1))
	g.Expect(ok).To(BeTrue())
	g.Expect(v).To(Equal(1))
}
