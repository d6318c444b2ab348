package metricsauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The delegating authenticator's and authorizer's settings, as controller-runtime's filter
// sets them.
const (
	tokenTTL      = time.Minute
	allowTTL      = 5 * time.Minute
	denyTTL       = 30 * time.Second
	reviewTimeout = 10 * time.Second
	// authCacheSize bounds each cache: a flood of random tokens (each one a TokenReview
	// anyway) evicts entries instead of growing memory.
	authCacheSize = 1024
)

// reviewBackoff is the API server's default webhook backoff, which controller-runtime's
// filter gives the reviews: about 4 s of retries of a transient error.
var reviewBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// authKey is a SHA-256: the caches are keyed by hashes, so that they never hold a token.
type authKey = [sha256.Size]byte

// metricsAuth checks each metrics request: its bearer token with a TokenReview, then whether
// the token's user may get the path with a SubjectAccessReview, both answers cached. That is
// what controller-runtime's filters.WithAuthenticationAndAuthorization does (through the API
// server's delegating authenticator and authorizer), with client-go's typed clients only: that
// filter imports k8s.io/apiserver, and with it cel-go and antlr, 29 of the manager's 78 MB,
// most of them resident from the start.
type metricsAuth struct {
	tokens authnv1client.TokenReviewInterface
	access authzv1client.SubjectAccessReviewInterface
	// users are the TokenReviews' answers by the hash of their token; nil is unauthenticated.
	users *ttlCache[*authnv1.UserInfo]
	// decisions are the SubjectAccessReviews' answers by the hash of their spec.
	decisions *ttlCache[decision]
}

type decision struct {
	allowed bool
	reason  string
}

// Filter is the secure metrics server's FilterProvider.
func Filter(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	a, err := newMetricsAuth(cfg, hc, time.Now)
	if err != nil {
		return nil, err
	}
	return a.filter, nil
}

// newMetricsAuth reviews through the API server of cfg; now is the caches' clock.
func newMetricsAuth(cfg *rest.Config, hc *http.Client, now func() time.Time) (*metricsAuth, error) {
	authn, err := authnv1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	authz, err := authzv1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	return &metricsAuth{
		tokens:    authn.TokenReviews(),
		access:    authz.SubjectAccessReviews(),
		users:     newTTLCache[*authnv1.UserInfo](authCacheSize, now),
		decisions: newTTLCache[decision](authCacheSize, now),
	}, nil
}

// filter is a metricsserver.Filter: it answers 401 unless a TokenReview authenticates the
// request's bearer token, 403 unless a SubjectAccessReview allows its user to get the path,
// 500 when a review fails, and passes the rest to next.
func (a *metricsAuth) filter(log logr.Logger, next http.Handler) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u := a.authenticateRequest(log, w, req); u != nil && a.authorizeRequest(log, w, req, u) {
			next.ServeHTTP(w, req)
		}
	}), nil
}

// authenticateRequest is the request's user, or nil after answering 401 or 500. Neither the
// log nor the answer says anything of the token.
func (a *metricsAuth) authenticateRequest(log logr.Logger, w http.ResponseWriter, req *http.Request) *authnv1.UserInfo {
	u, err := a.authenticate(req.Context(), bearerToken(req))
	if err != nil {
		log.Error(err, "Authentication failed")
		http.Error(w, "Authentication failed", http.StatusInternalServerError)
		return nil
	}
	if u == nil {
		log.V(4).Info("Authentication failed")
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return nil
	}
	// As the API server does: the handler has no use for the token.
	req.Header.Del("Authorization")
	return u
}

// authorizeRequest reports whether u may have the request, after answering 403 or 500 if not.
func (a *metricsAuth) authorizeRequest(log logr.Logger, w http.ResponseWriter, req *http.Request, u *authnv1.UserInfo) bool {
	d, err := a.authorize(req.Context(), u, strings.ToLower(req.Method), req.URL.Path)
	if err != nil {
		msg := fmt.Sprintf("Authorization for user %s failed", u.Username)
		log.Error(err, msg)
		http.Error(w, msg, http.StatusInternalServerError)
		return false
	}
	if !d.allowed {
		msg := fmt.Sprintf("Authorization denied for user %s", u.Username)
		log.V(4).Info(msg, "reason", d.reason)
		http.Error(w, msg, http.StatusForbidden)
		return false
	}
	return true
}

// bearerToken is the token of the request's "Authorization: Bearer <token>" header, parsed
// as the API server's bearertoken authenticator does; "" when there is none. (The delegating
// authenticator also takes a token in a WebSocket protocol header, which scrapers never send.)
func bearerToken(req *http.Request) string {
	parts := strings.SplitN(strings.TrimSpace(req.Header.Get("Authorization")), " ", 3)
	if len(parts) < 2 || strings.ToLower(parts[0]) != "bearer" {
		return ""
	}
	return parts[1]
}

// authenticate is the user a TokenReview finds for token, nil when it authenticates none
// (controller-runtime's filter answers such a token 500, as if the review had failed; it is
// 401 here). Answers are cached for tokenTTL, failed reviews not at all.
func (a *metricsAuth) authenticate(ctx context.Context, token string) (*authnv1.UserInfo, error) {
	if token == "" {
		return nil, nil
	}
	key := sha256.Sum256([]byte(token))
	if u, ok := a.users.get(key); ok {
		return u, nil
	}
	var tr *authnv1.TokenReview
	err := review(ctx, func(ctx context.Context) (err error) {
		tr, err = a.tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	var u *authnv1.UserInfo
	if tr.Status.Authenticated {
		u = withAuthenticatedGroup(tr.Status.User)
	}
	a.users.add(key, u, tokenTTL)
	return u, nil
}

// withAuthenticatedGroup adds system:authenticated to the user's groups, as the API server's
// authenticator does to every user it authenticates: RBAC bindings to the group apply.
func withAuthenticatedGroup(u authnv1.UserInfo) *authnv1.UserInfo {
	if u.Username != "system:anonymous" && !slices.ContainsFunc(u.Groups, func(g string) bool {
		return g == "system:authenticated" || g == "system:unauthenticated"
	}) {
		u.Groups = append(u.Groups, "system:authenticated")
	}
	return &u
}

// authorize asks a SubjectAccessReview whether u may verb the non-resource path. Answers are
// cached, an allow for allowTTL and a deny for denyTTL; failed reviews not at all.
func (a *metricsAuth) authorize(ctx context.Context, u *authnv1.UserInfo, verb, path string) (decision, error) {
	spec := authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: sarExtra(u.Extra),
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
	}
	// The spec holds only strings, slices and maps of them: Marshal cannot fail, and sorts
	// the map keys, so that equal specs have equal keys.
	b, _ := json.Marshal(spec)
	key := sha256.Sum256(b)
	if d, ok := a.decisions.get(key); ok {
		return d, nil
	}
	var sar *authzv1.SubjectAccessReview
	err := review(ctx, func(ctx context.Context) (err error) {
		sar, err = a.access.Create(ctx, &authzv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return decision{}, err
	}
	d := decision{allowed: sar.Status.Allowed && !sar.Status.Denied, reason: sar.Status.Reason}
	ttl := denyTTL
	if d.allowed {
		ttl = allowTTL
	}
	a.decisions.add(key, d, ttl)
	return d, nil
}

func sarExtra(extra map[string]authnv1.ExtraValue) map[string]authzv1.ExtraValue {
	if extra == nil {
		return nil
	}
	out := make(map[string]authzv1.ExtraValue, len(extra))
	for k, v := range extra {
		out[k] = authzv1.ExtraValue(v)
	}
	return out
}

// review calls create within reviewTimeout, retrying transient errors with reviewBackoff, and
// returns its last error.
func review(ctx context.Context, create func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, reviewBackoff, func(ctx context.Context) (bool, error) {
		last = create(ctx)
		return last == nil || !transient(last), nil
	})
	if last != nil {
		return last
	}
	return err
}

// transient is the API server's webhook.DefaultShouldRetry: errors worth another try.
func transient(err error) bool {
	_, retryAfter := apierrors.SuggestsClientDelay(err)
	return retryAfter || utilnet.IsConnectionReset(err) || utilnet.IsHTTP2ConnectionLost(err) ||
		apierrors.IsInternalError(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err)
}

// ttlCache maps keys to values that expire, at most size of them.
type ttlCache[V any] struct {
	mu      sync.Mutex
	size    int
	now     func() time.Time
	entries map[authKey]ttlEntry[V]
}

type ttlEntry[V any] struct {
	value   V
	expires time.Time
}

func newTTLCache[V any](size int, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{size: size, now: now, entries: make(map[authKey]ttlEntry[V], size)}
}

func (c *ttlCache[V]) get(k authKey) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func (c *ttlCache[V]) add(k authKey, v V, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		c.evict(now)
	}
	c.entries[k] = ttlEntry[V]{value: v, expires: now.Add(ttl)}
}

// evict makes room for an entry: it drops the expired entries or, when none has expired, the
// one closest to expiring (the oldest among equal lifetimes). A flood of denied requests then
// evicts denies (30 s) before the allowed scraper's entry (5 min).
func (c *ttlCache[V]) evict(now time.Time) {
	var next authKey
	var nextExpires time.Time
	for k, e := range c.entries {
		switch {
		case !now.Before(e.expires):
			delete(c.entries, k)
		case nextExpires.IsZero() || e.expires.Before(nextExpires):
			next, nextExpires = k, e.expires
		}
	}
	if len(c.entries) >= c.size {
		delete(c.entries, next)
	}
}
