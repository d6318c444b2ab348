package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// TestClassifyBackend covers every outcome of a backend check without a cluster.
func TestClassifyBackend(t *testing.T) {
	key := BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "b"}
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

// TestDescribeBackendError: a StatusBackend's errors (its URL is a tenant's) reach status only
// as a category, never an address, a server message or a body; a ClusterStatusBackend's keep
// their detail.
func TestDescribeBackendError(t *testing.T) {
	namespaced := BackendKey{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "tenant", Name: "probe"}
	cluster := BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "shared"}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String() + "/api/v3"
	_ = closed.Close()
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"success":false,"message":"internal host db-7.corp.example:5432 said no"}`))
	}))
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>SSH-2.0-OpenSSH_9.6</html>"))
	}))
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(func() { close(stop); hang.Close(); echo.Close(); html.Close(); tlsSrv.Close() })

	cases := []struct {
		name, url, category string
		timeout             time.Duration
	}{
		{"refused", refusedURL, "connection refused", 0},
		{"hanging", hang.URL + "/api/v3", "timed out", 300 * time.Millisecond},
		{"plain HTTP port spoken to with TLS", strings.Replace(html.URL, "http://", "https://", 1) + "/api/v3", "TLS handshake failed", 0},
		{"unknown CA", tlsSrv.URL + "/api/v3", "TLS handshake failed", 0},
		{"echoing server error", echo.URL + "/api/v3", "server error (HTTP 500)", 0},
		{"not a status backend", html.URL + "/api/v3", "not a status backend (HTTP 200)", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cl, err := native.New(native.Options{BaseURL: tc.url, Token: "sgt_probe0000", Timeout: tc.timeout})
			g.Expect(err).NotTo(HaveOccurred())
			_, callErr := cl.Self(context.Background())
			g.Expect(callErr).To(HaveOccurred())
			got := DescribeBackendError(namespaced, callErr)
			g.Expect(got).To(Equal(tc.category), "from %v", callErr)
			g.Expect(DescribeBackendError(cluster, callErr)).To(Equal(callErr.Error()), "cluster backends keep the detail")
		})
	}
	t.Run("DNS", func(t *testing.T) {
		err := &backend.Error{Op: "self", Kind: backend.KindTransient, Message: "lookup probe.internal: no such host"}
		wrapped := errors.Join(err, &net.DNSError{Err: "no such host", Name: "probe.internal"})
		NewWithT(t).Expect(DescribeBackendError(namespaced, wrapped)).To(Equal("DNS lookup failed"))
	})
	t.Run("busy", func(t *testing.T) {
		NewWithT(t).Expect(DescribeBackendError(namespaced, newBusyError("create"))).To(HavePrefix("busy"))
	})
}

// TestRegistryInFlightCap: beyond the cap a call fails at once with a busy error that looks
// like a 429 with a short Retry-After (no outage), and a freed slot is usable again.
func TestRegistryInFlightCap(t *testing.T) {
	g := NewWithT(t)
	reg := NewBackendRegistry(WithMaxInFlightPerBackend(2))
	key := BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "slow"}
	release := make(chan struct{})
	inner := &blockingClient{release: release, started: make(chan struct{}, 16)}
	reg.Set(context.Background(), key, &tokensv1alpha1.ClusterStatusBackend{}, inner, "http://x", "fp")
	cl, _, ok := reg.Get(key)
	g.Expect(ok).To(BeTrue())
	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := cl.Get(context.Background(), "tok_1"); done <- err }()
		<-inner.started
	}
	start := time.Now()
	_, err := cl.Get(context.Background(), "tok_2")
	g.Expect(time.Since(start)).To(BeNumerically("<", 100*time.Millisecond), "refused at once, not queued")
	g.Expect(IsBackendBusy(err)).To(BeTrue())
	g.Expect(backend.IsTransient(err)).To(BeTrue())
	g.Expect(backend.RetryAfter(err)).To(And(BeNumerically(">=", 200*time.Millisecond), BeNumerically("<=", time.Second)))
	var be *backend.Error
	g.Expect(errors.As(err, &be)).To(BeTrue())
	g.Expect(be.StatusCode).To(Equal(http.StatusTooManyRequests), "not reported as an outage")
	// The check's client is not capped.
	raw, _, _ := reg.checkedClient(key)
	g.Expect(raw).To(BeIdenticalTo(inner))
	close(release)
	g.Expect(<-done).To(Succeed())
	g.Expect(<-done).To(Succeed())
	_, err = cl.Get(context.Background(), "tok_3")
	g.Expect(err).NotTo(HaveOccurred())

	// Within a pass, the first call takes one slot and keeps it until the pass ends: later
	// calls of that pass are never refused, and the cap counts passes (workers).
	passCtx, endPass := WithBackendPass(context.Background())
	_, err = cl.Get(passCtx, "tok_4")
	g.Expect(err).NotTo(HaveOccurred())
	other, endOther := WithBackendPass(context.Background())
	_, err = cl.Get(other, "tok_5")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = cl.Get(context.Background(), "tok_6")
	g.Expect(IsBackendBusy(err)).To(BeTrue(), "two passes hold both slots")
	_, err = cl.Get(passCtx, "tok_7")
	g.Expect(err).NotTo(HaveOccurred(), "a pass that holds a slot goes on")
	endPass()
	_, err = cl.Get(context.Background(), "tok_8")
	g.Expect(err).NotTo(HaveOccurred(), "the slot is free once the pass ended")
	endOther()
}

// TestRefusedPassWaitsForASlot: a pass refused by the cap is woken when a slot frees, once
// however often it was refused, and at once when a slot is already free; a wake that finds
// the controller's channel full is retried, not lost.
func TestRefusedPassWaitsForASlot(t *testing.T) {
	g := NewWithT(t)
	reg := NewBackendRegistry(WithMaxInFlightPerBackend(1))
	key := BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "one-slot"}
	reg.Set(context.Background(), key, &tokensv1alpha1.ClusterStatusBackend{}, &okClient{}, "http://x", "fp")
	cl, _, _ := reg.Get(key)
	woken := func() []string {
		var names []string
		for {
			select {
			case ev := <-reg.SlotFreed():
				names = append(names, ev.Object.GetNamespace()+"/"+ev.Object.GetName())
			case <-time.After(300 * time.Millisecond):
				return names
			}
		}
	}

	holder, endHolder := WithBackendPass(context.Background())
	_, err := cl.Get(holder, "tok_1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(WaitForSlot(holder, types.NamespacedName{Namespace: "a", Name: "holder"}, false)).To(BeFalse(), "a pass that was not refused waits for nothing")
	for _, name := range []string{"first", "second", "first"} {
		refused, endRefused := WithBackendPass(context.Background())
		_, err = cl.Get(refused, "tok_2")
		g.Expect(IsBackendBusy(err)).To(BeTrue())
		g.Expect(WaitForSlot(refused, types.NamespacedName{Namespace: "a", Name: name}, false)).To(BeTrue())
		endRefused()
	}
	g.Expect(woken()).To(BeEmpty(), "no slot freed yet")
	endHolder()
	g.Expect(woken()).To(Equal([]string{"a/first"}), "one slot, one wake, the first refused first")
	// No pass runs now: the next freed slot wakes the next waiter.
	again, endAgain := WithBackendPass(context.Background())
	_, err = cl.Get(again, "tok_3")
	g.Expect(err).NotTo(HaveOccurred())
	endAgain()
	g.Expect(woken()).To(Equal([]string{"a/second"}), "refused twice, woken once")

	// Refused, then the slot freed before it said so: woken at once.
	s := newBackendSlots(1, make(chan event.GenericEvent, 1))
	s.wait(types.NamespacedName{Namespace: "a", Name: "late"}, false)
	g.Expect(s.waiters()).To(BeZero())

	// The channel is full: the waiter stays first in line and is woken once there is room.
	full := make(chan event.GenericEvent, 1)
	full <- event.GenericEvent{}
	s = newBackendSlots(1, full)
	g.Expect(s.tryAcquire()).To(BeTrue())
	s.wait(types.NamespacedName{Namespace: "a", Name: "patient"}, false)
	s.release()
	g.Expect(s.waiters()).To(Equal(1))
	<-full
	g.Eventually(func() string {
		select {
		case ev := <-full:
			return ev.Object.GetName()
		default:
			return ""
		}
	}).WithTimeout(2 * time.Second).Should(Equal("patient"))
	g.Expect(s.waiters()).To(BeZero())
}

type okClient struct{ backend.Driver }

func (okClient) Get(context.Context, string) (*backend.Token, error) {
	return &backend.Token{ID: "tok"}, nil
}

type blockingClient struct {
	backend.Driver
	release chan struct{}
	started chan struct{}
}

func (c *blockingClient) Get(ctx context.Context, id string) (*backend.Token, error) {
	c.started <- struct{}{}
	<-c.release
	return &backend.Token{ID: id}, nil
}

// TestCheckSlotsPerNamespace: a namespace's StatusBackends hold at most
// maxChecksPerNamespace backend workers; other namespaces and ClusterStatusBackends are not
// held up by them.
func TestCheckSlotsPerNamespace(t *testing.T) {
	g := NewWithT(t)
	var slots checkSlots
	noisy := func(i int) BackendKey {
		return BackendKey{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "noisy", Name: fmt.Sprint("never-", i)}
	}
	var releases []func()
	for i := range maxChecksPerNamespace {
		release, ok := slots.acquire(noisy(i))
		g.Expect(ok).To(BeTrue())
		releases = append(releases, release)
	}
	_, ok := slots.acquire(noisy(99))
	g.Expect(ok).To(BeFalse(), "the namespace's slots are taken")
	release, ok := slots.acquire(BackendKey{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "victim", Name: "b"})
	g.Expect(ok).To(BeTrue(), "another namespace is not held up")
	release()
	for range 10 {
		_, ok := slots.acquire(BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "shared"})
		g.Expect(ok).To(BeTrue(), "cluster backends are not bounded")
	}
	releases[0]()
	_, ok = slots.acquire(noisy(99))
	g.Expect(ok).To(BeTrue(), "a freed slot is usable again")
}

// TestFirstInLineForASlot: a waiter put first goes ahead of the plain waiters, after the
// first ones before it, and a plain waiter asking again as first moves up once.
func TestFirstInLineForASlot(t *testing.T) {
	g := NewWithT(t)
	wake := make(chan event.GenericEvent, 16)
	s := newBackendSlots(1, wake)
	g.Expect(s.tryAcquire()).To(BeTrue())
	name := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "a", Name: n} }
	s.wait(name("new-1"), false)
	s.wait(name("new-2"), false)
	s.wait(name("uncertain-1"), true)
	s.wait(name("new-3"), false)
	s.wait(name("uncertain-2"), true)
	s.wait(name("new-3"), true)       // moves up behind the first ones
	s.wait(name("uncertain-1"), true) // already first: stays where it is
	s.wait(name("new-1"), false)      // already waiting: no second entry
	var order []string
	for range 5 {
		s.release()
		ev := <-wake
		order = append(order, ev.Object.GetName())
		g.Expect(s.tryAcquire()).To(BeTrue())
	}
	g.Expect(order).To(Equal([]string{"uncertain-1", "uncertain-2", "new-3", "new-1", "new-2"}))
	g.Expect(s.waiters()).To(BeZero())
	g.Expect(s.firsts).To(BeZero())
	// After the line emptied, first counts from zero again.
	s.wait(name("new-4"), false)
	s.wait(name("uncertain-3"), true)
	s.release()
	g.Expect((<-wake).Object.GetName()).To(Equal("uncertain-3"))
}

// TestSlotWakeGoesAheadOfTheQueue: an APIToken woken by a freed slot is queued ahead of the
// events already waiting in the work queue, or the slot meant for it goes to whatever the
// queue holds first.
func TestSlotWakeGoesAheadOfTheQueue(t *testing.T) {
	g := NewWithT(t)
	q := priorityqueue.New[reconcile.Request]("slot-wake-test")
	defer q.ShutDown()
	for _, name := range []string{"event-1", "event-2"} {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "a", Name: name}})
	}
	slotWakeHandler().Generic(context.Background(), event.GenericEvent{Object: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "woken"}}}, q)
	var order []string
	for range 3 {
		req, _ := q.Get()
		order = append(order, req.Name)
		q.Done(req)
	}
	g.Expect(order).To(Equal([]string{"woken", "event-1", "event-2"}))
}
