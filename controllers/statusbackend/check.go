package statusbackend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// BackendCheckInterval is how often a Ready backend's credential is checked again.
const BackendCheckInterval = 5 * time.Minute

// BackendCheckTimeout bounds one check (GET /api_tokens/self). It is short so that a
// backend that never answers holds a backend worker for seconds, not the client's 10 s.
const BackendCheckTimeout = 3 * time.Second

// Checker resolves a backend's credential and checks it against the backend. The
// StatusBackend and ClusterStatusBackend reconcilers share it, and with it the registry,
// the per-namespace check slots and the list of who reads which credentials Secret.
type Checker struct {
	// APIReader reads credentials Secrets uncached: the operator caches only the Secrets it
	// manages, so unrelated Secrets cost no memory.
	APIReader client.Reader
	Registry  *registry.Registry
	NewClient backend.Factory
	// Clock is the time of checks (time.Now when nil).
	Clock func() time.Time

	slots checkSlots
	users credentialUsers
}

// NewChecker returns a checker that registers Ready backends in reg.
func NewChecker(apiReader client.Reader, reg *registry.Registry, newClient backend.Factory) *Checker {
	return &Checker{APIReader: apiReader, Registry: reg, NewClient: newClient}
}

// backendInputs is everything one check gathered; classifyBackend decides on it alone.
type backendInputs struct {
	key backendkey.Key
	// secretRef and dataKey locate the credential.
	secretRef types.NamespacedName
	dataKey   string
	// secret is the credentials Secret's metadata; nil when it does not exist.
	secret *metav1.ObjectMeta
	// readErr: reading the Secret failed for another reason than NotFound.
	readErr error
	// noValue: the Secret exists but the key is missing or empty.
	noValue bool
	// clientErr: no client can be built from spec.url and spec.caBundle.
	clientErr error
	// selectorErr: allowedNamespaces or fullAccessNamespaces is not a valid selector.
	selectorErr error
	// self is the credential's token object, or selfErr why it could not be read.
	self    *backend.Token
	selfErr error

	// features are the protocol extensions the backend lists in GET /ping.
	features backend.Capabilities
	// checkedAt is when the backend was asked; zero when a recent check was reused.
	checkedAt time.Time
	// driver is the driver spec.provider names (status.driver).
	driver string
	// client, url and fingerprint are what gets registered when the check succeeds.
	client      backend.Driver
	url         string
	fingerprint string
}

// registryAction is what a check does to the backend's registry entry.
type registryAction int

const (
	registryRemove registryAction = iota
	registrySet
	// registryKeep: the check could not tell (the Secret could not be read); the last
	// verdict stands.
	registryKeep
)

// checkResult is the outcome of a backend check: the Ready condition, the registry update
// and when to check again.
type checkResult struct {
	status   metav1.ConditionStatus
	reason   string
	message  string
	retry    time.Duration
	registry registryAction
}

// gather reads the credential, builds (or reuses) the client and asks the backend who the
// credential is, within BackendCheckTimeout.
func (c *Checker) gather(ctx context.Context, key backendkey.Key, spec tokensv1alpha1.StatusBackendSpec, secretRef types.NamespacedName, selectors ...*metav1.LabelSelector) backendInputs {
	in := backendInputs{key: key, secretRef: secretRef, dataKey: spec.CredentialsSecretRef.Key, url: spec.URL}
	if in.dataKey == "" {
		in.dataKey = tokensv1alpha1.SecretKeyToken
	}
	for _, sel := range selectors {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil && in.selectorErr == nil {
			in.selectorErr = err
		}
	}
	value, ok := c.readCredential(ctx, &in)
	if !ok {
		return in
	}
	cfg := driverConfig(spec)
	cfg.Credential = backend.SecretValue(strings.TrimRight(string(value), "\r\n "))
	in.driver = cfg.Driver
	in.fingerprint = fingerprintOf(cfg)
	// Reuse the registered client (and its connections) while nothing about it changed.
	cl, fingerprint, registered := c.Registry.CheckedClient(key)
	if !registered || fingerprint != in.fingerprint {
		cl, in.clientErr = c.NewClient(cfg)
		if in.clientErr != nil {
			return in
		}
	}
	in.client = cl
	if e, ok := cl.(backend.Endpointer); ok && e.Endpoint() != "" {
		// The URL workloads call (the Secret's url key), e.g. Zabbix's JSON-RPC endpoint.
		in.url = e.Endpoint()
	}
	now := c.now()
	if registered && fingerprint == in.fingerprint {
		// Checked a moment ago with the same URL, CA and credential: an APIToken created or
		// deleted (which wakes this check for the credentials finalizer) costs the backend
		// nothing. A call that failed as if the backend were down (ReportOutage) clears this.
		if self, features, ok := c.Registry.RecentCheck(key, in.fingerprint, now, backendRecheckAfter); ok {
			in.self, in.features = self, features
			return in
		}
	}
	in.checkedAt = now
	checkCtx, cancel := context.WithTimeout(ctx, BackendCheckTimeout)
	defer cancel()
	in.self, in.selfErr = cl.Self(checkCtx)
	if in.selfErr == nil {
		// What the backend offers beyond the core; none when it cannot tell.
		in.features, _ = cl.Capabilities(checkCtx)
	}
	return in
}

// driverConfig is the driver a backend spec names, with its settings: the native protocol
// when spec.provider is unset, so manifests written before drivers existed keep their meaning.
func driverConfig(spec tokensv1alpha1.StatusBackendSpec) backend.Config {
	cfg := backend.Config{Driver: tokensv1alpha1.DriverNative, URL: spec.URL, CABundle: spec.CABundle}
	if p := spec.Provider; p != nil && p.Zabbix != nil {
		cfg.Driver = tokensv1alpha1.DriverZabbix
		cfg.Settings = map[string]string{zabbixReadOnlyUser: p.Zabbix.ReadOnlyUser, zabbixFullAccessUser: p.Zabbix.FullAccessUser}
	}
	return cfg
}

// The Zabbix driver's settings (internal/backend/zabbix names them the same; a conformance
// test of the drivers package holds them together).
const (
	zabbixReadOnlyUser   = "readOnlyUser"
	zabbixFullAccessUser = "fullAccessUser"
)

// fingerprintOf changes when anything the driver is built from changes: driver, settings, URL,
// CA bundle or credential.
func fingerprintOf(cfg backend.Config) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00", cfg.Driver)
	for _, k := range slices.Sorted(maps.Keys(cfg.Settings)) {
		fmt.Fprintf(sum, "%s=%s\x00", k, cfg.Settings[k])
	}
	sum.Write([]byte(cfg.URL))
	sum.Write(cfg.CABundle)
	sum.Write([]byte(cfg.Credential.Reveal()))
	return hex.EncodeToString(sum.Sum(nil))
}

// backendRecheckAfter is how old a successful check may be and still be reused.
const backendRecheckAfter = 30 * time.Second

func (c *Checker) now() time.Time {
	if c.Clock == nil {
		return time.Now()
	}
	return c.Clock()
}

// readCredential reads the credential value; ok is false when there is none to use.
func (c *Checker) readCredential(ctx context.Context, in *backendInputs) ([]byte, bool) {
	var secret corev1.Secret
	if err := c.APIReader.Get(ctx, in.secretRef, &secret); err != nil {
		if !apierrors.IsNotFound(err) {
			in.readErr = err
		}
		return nil, false
	}
	in.secret = secret.ObjectMeta.DeepCopy()
	value := secret.Data[in.dataKey]
	if len(value) == 0 {
		in.noValue = true
		return nil, false
	}
	return value, true
}

// classifyBackend turns what a check gathered into its outcome. It is pure: every case is
// a row of TestClassifyBackend.
func classifyBackend(in backendInputs) checkResult {
	secret := in.secretRef.String()
	switch {
	case in.selectorErr != nil:
		return notReady(tokensv1alpha1.ReasonInvalidConfiguration,
			fmt.Sprintf("spec.allowedNamespaces or spec.fullAccessNamespaces is not a valid label selector: %v", in.selectorErr), 0)
	case in.readErr != nil:
		return checkResult{metav1.ConditionUnknown, tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Reading Secret %s failed: %v", secret, in.readErr), 10 * time.Second, registryKeep}
	case in.secret == nil:
		return notReady(tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Secret %s does not exist: create it with the backend's admin token under the key %q.", secret, in.dataKey), 0)
	case in.noValue:
		return notReady(tokensv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("Secret %s has no key %q: put the backend's admin token under that key or set spec.credentialsSecretRef.key.", secret, in.dataKey), 0)
	case in.clientErr != nil:
		return notReady(tokensv1alpha1.ReasonInvalidConfiguration,
			fmt.Sprintf("The backend cannot be used as configured: %v. Fix spec.url or spec.caBundle.", in.clientErr), 0)
	case in.selfErr != nil && isRateLimited(in.selfErr):
		// The backend answered, asking to slow down: that is no outage. The last verdict
		// stands (a registered backend stays usable) and the check waits for Retry-After.
		retry := max(backend.RetryAfter(in.selfErr), time.Second)
		return checkResult{metav1.ConditionUnknown, tokensv1alpha1.ReasonBackendUnreachable,
			fmt.Sprintf("The backend asked to slow down (HTTP 429); the credential is checked again in %s.", retry.Round(time.Second)), retry, registryKeep}
	case in.selfErr != nil && backend.IsMisconfigured(in.selfErr):
		// The backend answers, but is set up wrongly for the operator: the driver says what.
		return notReady(tokensv1alpha1.ReasonInvalidConfiguration,
			fmt.Sprintf("The backend is not set up as the operator needs: %s", registry.DescribeBackendError(in.key, in.selfErr)), 0)
	case in.selfErr != nil:
		return pingFailure(in.key, in.driver, in.selfErr, secret)
	case !in.self.IsAdmin() && in.driver == tokensv1alpha1.DriverZabbix:
		return notReady(tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The token in Secret %s is not a Super admin's API token: only a Super admin may manage other users' tokens on Zabbix. Put a Super admin's API token there.", secret), 0)
	case !in.self.IsAdmin():
		return notReady(tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The token in Secret %s is a %s token without the admin role: token management (issuing and deactivating tokens) needs the admin role of the backend. Put the backend's admin credential there (its bootstrap token, or one an administrator gave the admin role).", secret, in.self.Permission), 0)
	}
	return checkResult{metav1.ConditionTrue, tokensv1alpha1.ReasonPingSucceeded,
		"The backend answered with the credential; tokens can be issued.", BackendCheckInterval, registrySet}
}

// isRateLimited: the backend answered 429.
func isRateLimited(err error) bool {
	var be *backend.Error
	return errors.As(err, &be) && be.StatusCode == http.StatusTooManyRequests
}

func notReady(reason, message string, retry time.Duration) checkResult {
	return checkResult{metav1.ConditionFalse, reason, message, retry, registryRemove}
}

// backendNoun names what the URL should answer as.
func backendNoun(driver string) string {
	if driver == tokensv1alpha1.DriverZabbix {
		return "a Zabbix API"
	}
	return "a status backend"
}

// urlHint says what spec.url must be for a driver.
func urlHint(driver string) string {
	if driver == tokensv1alpha1.DriverZabbix {
		return "the Zabbix frontend's base URL, e.g. https://zabbix.example.com; the API is <url>/api_jsonrpc.php"
	}
	return "it must end in the API root, e.g. /api/v3"
}

// pingFailure classifies a failed GET /api_tokens/self.
func pingFailure(key backendkey.Key, driver string, err error, secret string) checkResult {
	var be *backend.Error
	switch {
	case backend.IsUnauthorized(err):
		return notReady(tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The backend rejected the token in Secret %s (401): it is unknown, deactivated or expired. Put the backend's admin token there.", secret), 0)
	case backend.IsForbidden(err):
		return notReady(tokensv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("The backend refused the token in Secret %s (403). Put the backend's admin token there.", secret), 0)
	case errors.As(err, &be) && be.Kind == backend.KindProtocol:
		return notReady(tokensv1alpha1.ReasonBackendUnreachable,
			fmt.Sprintf("The URL does not answer as %s: %s. Check spec.url (%s).", backendNoun(driver), registry.DescribeBackendError(key, err), urlHint(driver)), 30*time.Second)
	}
	retry := backend.RetryAfter(err)
	if retry == 0 {
		// One cheap call per backend; a recovered backend wakes its tokens at once.
		retry = 5 * time.Second
	}
	return notReady(tokensv1alpha1.ReasonBackendUnreachable,
		fmt.Sprintf("The backend could not be reached: %s. It is checked again in %s.", registry.DescribeBackendError(key, err), retry.Round(time.Second)), retry)
}

// maxChecksPerNamespace bounds the backend checks running at once for the StatusBackends of
// one namespace, so a tenant's hanging backends hold at most this many backend workers.
// ClusterStatusBackends, written by cluster admins, are not bounded.
const maxChecksPerNamespace = 2

// tenantBusyRequeue is how soon a check refused by the per-namespace bound is tried again.
const tenantBusyRequeue = time.Second

// checkSlots counts the backend checks in flight per namespace.
type checkSlots struct {
	mu      sync.Mutex
	running map[string]int
}

// acquire takes a slot for a check of key; ok is false when its namespace has none free.
func (s *checkSlots) acquire(key backendkey.Key) (release func(), ok bool) {
	if key.Namespace == "" {
		return func() {}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]int{}
	}
	if s.running[key.Namespace] >= maxChecksPerNamespace {
		return nil, false
	}
	s.running[key.Namespace]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.running[key.Namespace]--
	}, true
}
