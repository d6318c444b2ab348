package statusbackend

import (
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/drivers"
	"github.com/statusops/apitoken-operator/internal/backend/zabbix"
)

// TestClassifyBackend covers every outcome of a backend check without a cluster.
func TestClassifyBackend(t *testing.T) {
	key := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "b"}
	secret := &metav1.ObjectMeta{Namespace: "ns", Name: "admin"}
	base := func() backendInputs {
		return backendInputs{key: key, secretRef: types.NamespacedName{Namespace: "ns", Name: "admin"}, dataKey: "token", secret: secret,
			self: &backend.Token{Permission: backend.PermissionFullAccess, Admin: true}}
	}
	cases := []struct {
		name     string
		mutate   func(*backendInputs)
		status   metav1.ConditionStatus
		reason   string
		message  string
		registry registryAction
	}{
		{"admin credential", func(*backendInputs) {}, metav1.ConditionTrue, tokensv1alpha1.ReasonPingSucceeded, "tokens can be issued", registrySet},
		{"full_access without admin role", func(in *backendInputs) { in.self.Admin = false }, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid, "needs the admin role of the backend", registryRemove},
		{"read_only", func(in *backendInputs) { in.self = &backend.Token{Permission: backend.PermissionReadOnly} }, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid, "a read_only token without the admin role", registryRemove},
		{"misconfigured backend", func(in *backendInputs) {
			in.selfErr = backend.NewError("self", backend.KindMisconfigured, 200, "user \"ro\" may call host.create")
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonInvalidConfiguration, "may call host.create", registryRemove},
		{"a Zabbix credential that is not a Super admin's", func(in *backendInputs) {
			in.driver, in.self = tokensv1alpha1.DriverZabbix, &backend.Token{}
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid, "Super admin", registryRemove},
		{"no Secret", func(in *backendInputs) { in.secret = nil }, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsNotFound, "ns/admin does not exist", registryRemove},
		{"no key", func(in *backendInputs) { in.noValue = true }, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsNotFound, `has no key "token"`, registryRemove},
		{"Secret unreadable", func(in *backendInputs) { in.secret, in.readErr = nil, errors.New("etcd is slow") }, metav1.ConditionUnknown, tokensv1alpha1.ReasonCredentialsNotFound, "etcd is slow", registryKeep},
		{"bad selector", func(in *backendInputs) { in.selectorErr = errors.New("bad operator") }, metav1.ConditionFalse, tokensv1alpha1.ReasonInvalidConfiguration, "not a valid label selector", registryRemove},
		{"bad CA", func(in *backendInputs) { in.clientErr = errors.New("backend: CA bundle holds no PEM certificate") }, metav1.ConditionFalse, tokensv1alpha1.ReasonInvalidConfiguration, "spec.caBundle", registryRemove},
		{"401", func(in *backendInputs) {
			in.selfErr = &backend.Error{Op: "self", Kind: backend.KindUnauthorized, StatusCode: 401}
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid, "rejected the token", registryRemove},
		{"403", func(in *backendInputs) {
			in.selfErr = &backend.Error{Op: "self", Kind: backend.KindForbidden, StatusCode: 403}
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonCredentialsInvalid, "refused the token", registryRemove},
		{"HTML page", func(in *backendInputs) {
			in.selfErr = &backend.Error{Op: "self", Kind: backend.KindProtocol, StatusCode: 200}
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonBackendUnreachable, "does not answer as a status backend", registryRemove},
		{"rate limited", func(in *backendInputs) {
			in.selfErr = &backend.Error{Op: "self", Kind: backend.KindTransient, StatusCode: 429, RetryAfter: 2 * time.Second}
		}, metav1.ConditionUnknown, tokensv1alpha1.ReasonBackendUnreachable, "slow down", registryKeep},
		{"down", func(in *backendInputs) {
			in.selfErr = &backend.Error{Op: "self", Kind: backend.KindTransient, StatusCode: 503}
		}, metav1.ConditionFalse, tokensv1alpha1.ReasonBackendUnreachable, "could not be reached", registryRemove},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := base()
			tc.mutate(&in)
			res := classifyBackend(in)
			g.Expect(res.status).To(Equal(tc.status))
			g.Expect(res.reason).To(Equal(tc.reason))
			g.Expect(res.message).To(ContainSubstring(tc.message))
			g.Expect(res.registry).To(Equal(tc.registry))
		})
	}
}

// TestCheckSlotsPerNamespace: a namespace's StatusBackends hold at most
// maxChecksPerNamespace backend workers; other namespaces and ClusterStatusBackends are not
// held up by them.
func TestCheckSlotsPerNamespace(t *testing.T) {
	g := NewWithT(t)
	var slots checkSlots
	noisy := func(i int) backendkey.Key {
		return backendkey.Key{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "noisy", Name: fmt.Sprint("never-", i)}
	}
	var releases []func()
	for i := range maxChecksPerNamespace {
		release, ok := slots.acquire(noisy(i))
		g.Expect(ok).To(BeTrue())
		releases = append(releases, release)
	}
	_, ok := slots.acquire(noisy(99))
	g.Expect(ok).To(BeFalse(), "the namespace's slots are taken")
	release, ok := slots.acquire(backendkey.Key{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "victim", Name: "b"})
	g.Expect(ok).To(BeTrue(), "another namespace is not held up")
	release()
	for range 10 {
		_, ok := slots.acquire(backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "shared"})
		g.Expect(ok).To(BeTrue(), "cluster backends are not bounded")
	}
	releases[0]()
	_, ok = slots.acquire(noisy(99))
	g.Expect(ok).To(BeTrue(), "a freed slot is usable again")
}

// TestDriverConfig: a spec without provider means the native protocol, as before drivers
// existed; provider.zabbix builds a Zabbix driver with its two users under the driver's own
// setting names; and the fingerprint changes with anything the driver is built from.
func TestDriverConfig(t *testing.T) {
	g := NewWithT(t)
	spec := tokensv1alpha1.StatusBackendSpec{URL: "https://status.example.com/api/v3"}
	g.Expect(driverConfig(spec).Driver).To(Equal(drivers.Native))
	spec.Provider = &tokensv1alpha1.BackendProvider{Native: &tokensv1alpha1.NativeProvider{}}
	g.Expect(driverConfig(spec).Driver).To(Equal(drivers.Native))

	spec = tokensv1alpha1.StatusBackendSpec{URL: "https://zabbix.example.com", Provider: &tokensv1alpha1.BackendProvider{
		Zabbix: &tokensv1alpha1.ZabbixProvider{ReadOnlyUser: "ro", FullAccessUser: "rw"}}}
	cfg := driverConfig(spec)
	g.Expect(cfg.Driver).To(Equal(drivers.Zabbix))
	g.Expect(cfg.Settings).To(Equal(map[string]string{zabbix.SettingReadOnlyUser: "ro", zabbix.SettingFullAccessUser: "rw"}))
	cfg.Credential = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	d, err := drivers.New(cfg)
	g.Expect(err).NotTo(HaveOccurred(), "the Zabbix driver takes the settings as named")
	e, ok := d.(backend.Endpointer)
	g.Expect(ok).To(BeTrue())
	g.Expect(e.Endpoint()).To(Equal("https://zabbix.example.com/api_jsonrpc.php"), "the Secret's url is the API a workload calls")

	base := fingerprintOf(cfg)
	for name, change := range map[string]func(*backend.Config){
		"driver": func(c *backend.Config) { c.Driver = drivers.Native },
		"user": func(c *backend.Config) {
			c.Settings = map[string]string{zabbix.SettingReadOnlyUser: "ro2", zabbix.SettingFullAccessUser: "rw"}
		},
		"another driver's setting": func(c *backend.Config) {
			c.Settings = map[string]string{zabbix.SettingReadOnlyUser: "ro", zabbix.SettingFullAccessUser: "rw", "region": "eu"}
		},
		"url":        func(c *backend.Config) { c.URL += "/x" },
		"credential": func(c *backend.Config) { c.Credential += "0" },
	} {
		c := cfg
		change(&c)
		g.Expect(fingerprintOf(c)).NotTo(Equal(base), name)
	}
}

// TestCapabilityStatus: every capability the operator knows is listed, with what a missing
// one degrades.
func TestCapabilityStatus(t *testing.T) {
	g := NewWithT(t)
	got := capabilityStatus(backend.Capabilities{backend.CapabilityClaim})
	g.Expect(got).To(HaveLen(len(backend.AllCapabilities)))
	for _, c := range got {
		g.Expect(c.Supported).To(Equal(c.Name == string(backend.CapabilityClaim)), c.Name)
		g.Expect(c.Effect == "").To(Equal(c.Supported), c.Name)
	}
}
