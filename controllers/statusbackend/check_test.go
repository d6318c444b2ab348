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
