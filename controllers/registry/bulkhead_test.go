package registry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestRegistryInFlightCap: beyond the cap a call fails at once with a busy error that looks
// like a 429 with a short Retry-After (no outage), and a freed slot is usable again.
func TestRegistryInFlightCap(t *testing.T) {
	g := NewWithT(t)
	reg := New(WithMaxInFlightPerBackend(2))
	key := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "slow"}
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
	raw, _, _ := reg.CheckedClient(key)
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
	reg := New(WithMaxInFlightPerBackend(1))
	key := backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "one-slot"}
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
