package controllers

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// backendTokenLabels are put on every backend token the operator issues, so that one
// list call per backend finds them all.
var backendTokenLabels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}

// inventorySnapshot is one backend's active tokens, as listed at takenAt.
type inventorySnapshot struct {
	takenAt time.Time
	active  map[string]backend.Token
	// byExternalID lists the active token ids per external_id (APIToken UID).
	byExternalID map[string][]string
}

// newInventorySnapshot indexes a backend's list of active tokens.
func newInventorySnapshot(takenAt time.Time, list []backend.Token) *inventorySnapshot {
	snap := &inventorySnapshot{takenAt: takenAt, active: make(map[string]backend.Token, len(list)), byExternalID: map[string][]string{}}
	for _, t := range list {
		snap.active[t.ID] = t
		if t.ExternalID != "" {
			snap.byExternalID[t.ExternalID] = append(snap.byExternalID[t.ExternalID], t.ID)
		}
	}
	return snap
}

// Inventory lists each Ready backend's active tokens once per sync interval (one list call
// per backend, not one call per token). It feeds status.lastUsedAt and notices tokens that
// were revoked on the backend, and wakes exactly the APITokens whose view changed.
type Inventory struct {
	Registry *BackendRegistry
	// Reader lists APITokens; the manager's cached client.
	Reader   client.Reader
	Interval time.Duration
	Clock    func() time.Time

	mu     sync.RWMutex
	snaps  map[BackendKey]*inventorySnapshot
	events chan event.GenericEvent
}

// NewInventory returns an inventory that refreshes every interval.
func NewInventory(reg *BackendRegistry, reader client.Reader, interval time.Duration, clock func() time.Time) *Inventory {
	return &Inventory{Registry: reg, Reader: reader, Interval: interval, Clock: clock,
		snaps: map[BackendKey]*inventorySnapshot{}, events: make(chan event.GenericEvent, 4096)}
}

// Snapshot returns the last inventory of a backend, or nil.
func (i *Inventory) Snapshot(key BackendKey) *inventorySnapshot {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.snaps[key]
}

// Events carries the APITokens whose backend view changed.
func (i *Inventory) Events() <-chan event.GenericEvent { return i.events }

// NeedLeaderElection: only the leader reconciles, so only the leader needs the inventory.
func (i *Inventory) NeedLeaderElection() bool { return true }

// Start refreshes every Interval until ctx ends; it is a manager Runnable.
func (i *Inventory) Start(ctx context.Context) error {
	t := time.NewTicker(i.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			i.Refresh(ctx)
		}
	}
}

// Refresh lists every registered backend once and wakes the APITokens whose last use or
// liveness on the backend differs from their status.
func (i *Inventory) Refresh(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("inventory")
	for _, key := range i.Registry.Keys() {
		cl, _, ok := i.Registry.Get(key)
		if !ok {
			continue
		}
		takenAt := i.Clock()
		list, err := cl.ListTokens(ctx, backend.ListOptions{Labels: backendTokenLabels, Status: backend.StatusActive})
		if err != nil {
			log.Info("Listing backend tokens failed; keeping the previous inventory", "backend", key.String(), "error", err.Error())
			continue
		}
		snap := newInventorySnapshot(takenAt, list)
		i.mu.Lock()
		i.snaps[key] = snap
		i.mu.Unlock()
		i.wakeChanged(ctx, key, snap)
	}
}

func (i *Inventory) wakeChanged(ctx context.Context, key BackendKey, snap *inventorySnapshot) {
	var tokens tokensv1alpha1.APITokenList
	if err := i.Reader.List(ctx, &tokens, client.MatchingFields{backendRefIndex: key.String()}); err != nil {
		return
	}
	for idx := range tokens.Items {
		tok := &tokens.Items[idx]
		if currentBackendKey(tok) != key {
			continue
		}
		in := tokenInputs{token: tok, inventory: snap}
		extra := len(extraActiveTokens(tok, snap)) > 0
		if !extra && (tok.Status.Phase != tokensv1alpha1.PhaseActive || tok.Status.TokenID == "") {
			continue
		}
		t, found := snap.active[tok.Status.TokenID]
		if extra || revokedOnBackend(in) || (found && !sameTimePtr(t.LastUsedAt, tok.Status.LastUsedAt)) || predecessorUseChanged(tok, snap) {
			select {
			case i.events <- event.GenericEvent{Object: tok}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// lastUsedFromInventory is the backend's last-used time of the current token, if known.
func lastUsedFromInventory(snap *inventorySnapshot, tokenID string) (*time.Time, bool) {
	if snap == nil {
		return nil, false
	}
	t, ok := snap.active[tokenID]
	if !ok {
		return nil, false
	}
	return t.LastUsedAt, true
}

// sameTimePtr compares the backend's last-used time with status, to the second.
func sameTimePtr(a *time.Time, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Unix() == b.Unix()
}

// predecessorUseChanged: a draining predecessor was used since status recorded it, which
// may decide its retirement (retireWhenUnused) or its Warning.
func predecessorUseChanged(tok *tokensv1alpha1.APIToken, snap *inventorySnapshot) bool {
	for _, p := range tok.Status.PreviousTokens {
		if t, ok := snap.active[p.TokenID]; ok && !sameTimePtr(t.LastUsedAt, p.LastUsedAt) {
			return true
		}
	}
	return false
}
