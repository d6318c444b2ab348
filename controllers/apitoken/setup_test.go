package apitoken

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

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
