// Package registry holds a checked driver for every Ready backend, as cluster-api's
// clustercache holds a client per workload cluster.
//
// The backend reconcilers (package statusbackend) check each backend's credential and put its
// driver here (Set, RecordCheck; Remove when a check fails, Forget when the backend is
// deleted). Everything else reads through Getter: the APIToken reconciler calls only a
// registered backend, and the inventory lists each registered backend once per interval.
//
// Do not requeue on an unregistered backend. Its next registration is an event (Events): the
// APIToken reconciler watches that channel and is woken for exactly the backend's APITokens.
// When a call fails as if the backend were down, ReportOutage asks for an immediate re-check
// (Rechecks): a backend that is down is unregistered, so its tokens wait quietly instead of
// each retrying, and the successful check after it wakes them all at once.
//
// The bulkhead (bulkhead.go). Every driver handed out by Get holds one of its backend's
// in-flight slots (--max-inflight-per-backend) per call, or per pass with WithBackendPass; a
// call beyond the cap fails at once with an error IsBackendBusy reports, without reaching the
// backend. Busy is not an outage: it changes no condition. WaitForSlot queues the refused
// APIToken, and a freed slot wakes it (SlotFreed), the replay of a create whose reply was lost
// first in line.
//
// DescribeBackendError words a backend's failure for a status message: in full for a
// ClusterStatusBackend (written by a cluster admin), as a category only for a StatusBackend
// (its URL is a tenant's, and the operator's errors must not make it a port scanner).
package registry

import (
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Getter is the read side of the registry (cert-manager's accounts.Getter): what the APIToken
// reconciler may do with it.
type Getter interface {
	// Get returns the bulkheaded driver of a Ready backend and its URL.
	Get(key backendkey.Key) (backend.Driver, string, bool)
	// Features returns what a registered backend offers beyond the core.
	Features(key backendkey.Key) backend.Capabilities
	// ReportOutage asks for a re-check of a backend a call found down.
	ReportOutage(key backendkey.Key)
	// Events delivers the backends that were (re)registered.
	Events() <-chan event.GenericEvent
	// SlotFreed delivers the APITokens a freed in-flight slot wakes.
	SlotFreed() <-chan event.GenericEvent
}

var _ Getter = (*Registry)(nil)
