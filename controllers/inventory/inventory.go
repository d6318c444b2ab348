// Package inventory lists each registered backend's tokens once per sync interval (Inventory,
// a manager Runnable) and says what a listing means for one APIToken (snapshot.go): its
// token's last use, a token revoked on the backend, active tokens of the APIToken that its
// status does not name, predecessors no longer listed. It also counts each backend's tokens
// by who manages them (status.tokens), and tells this cluster's tokens from other clusters'
// (ownership.go).
package inventory

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/registry"
	"github.com/statusops/apitoken-operator/internal/backend"
)

const (
	// DefaultInventoryOverlap is how far before the previous walk's start an incremental
	// walk begins. The backend stamps updated_at with its own clock: a backend clock behind
	// ours by less than this loses no change, and a change seen twice is merged twice
	// harmlessly.
	DefaultInventoryOverlap = 30 * time.Second
	// DefaultInventoryFullListInterval: even with updated_since, every token is listed
	// this often, so that a backend restored from a backup, or whose clock stepped back by
	// more than the overlap, is seen whole again. At 20,000 tokens and a one-minute sync
	// interval that is 200 list requests every 6 hours, 0.56 per interval on average.
	DefaultInventoryFullListInterval = 6 * time.Hour
)

// allTime is the updated_since of a full walk by cursor: no token of the protocol is older
// (the client refuses timestamps before 2000).
var allTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// inventoryWalk is how one registration of a backend is listed.
type inventoryWalk struct {
	// client is the registered (unwrapped) client this walk belongs to: a new registration
	// (after an outage or a change of URL or credential) starts over with a full list, a
	// periodic re-check of the same one does not.
	client backend.Driver
	// featuresRead: GET /ping's features were read (once per registration).
	featuresRead bool
	// incremental: the backend lists updated_since, so a walk asks only for changes.
	incremental bool
	// lastWalk is our clock at the start of the last successful walk; lastFull, of the
	// last full one. Zero: none yet.
	lastWalk, lastFull time.Time
}

// Inventory lists each Ready backend's tokens once per sync interval. It feeds
// status.lastUsedAt, notices tokens that were revoked on the backend, and wakes exactly the
// APITokens whose view changed. Against a backend with the updated_since feature it lists
// every active token once per registration, then only the tokens changed since the last
// walk, so an idle interval costs one request whatever the number of tokens; without the
// feature, every interval lists every active token (one request per 100 tokens).
type Inventory struct {
	Registry *registry.Registry
	// Reader lists APITokens; the manager's cached client.
	Reader client.Reader
	// TokensOf, when set, gives the APITokens that refer to a backend without a List
	// (IndexedTokens); ok false falls back to Reader.
	TokensOf func(backendkey.Key) ([]*tokensv1alpha1.APIToken, bool)
	Interval time.Duration
	Clock    func() time.Time
	// Overlap and FullListInterval: see DefaultInventoryOverlap and
	// DefaultInventoryFullListInterval. FullListInterval <= 0 never lists in full again.
	Overlap          time.Duration
	FullListInterval time.Duration
	// ClusterIdentity is this cluster's LabelCluster value: tokens labelled with another
	// value are other clusters'.
	ClusterIdentity string

	// refreshMu serialises Refresh; it guards walks and announced.
	refreshMu sync.Mutex
	walks     map[backendkey.Key]*inventoryWalk
	// announced is what the log last said about a backend's updated_since feature, so a
	// fallback to full lists is said once, not every interval.
	announced map[backendkey.Key]bool

	mu     sync.RWMutex
	snaps  map[backendkey.Key]*Snapshot
	events chan event.GenericEvent
	// countsChanged carries, per backend kind, the backends whose status.tokens changed.
	countsChanged map[tokensv1alpha1.BackendKind]chan event.GenericEvent
}

// New returns an inventory that refreshes every interval.
func New(reg *registry.Registry, reader client.Reader, interval time.Duration, clock func() time.Time) *Inventory {
	return &Inventory{Registry: reg, Reader: reader, Interval: interval, Clock: clock,
		Overlap: DefaultInventoryOverlap, FullListInterval: DefaultInventoryFullListInterval,
		walks: map[backendkey.Key]*inventoryWalk{}, announced: map[backendkey.Key]bool{},
		snaps: map[backendkey.Key]*Snapshot{}, events: make(chan event.GenericEvent, 4096),
		countsChanged: map[tokensv1alpha1.BackendKind]chan event.GenericEvent{
			tokensv1alpha1.BackendKindStatusBackend:        make(chan event.GenericEvent, 256),
			tokensv1alpha1.BackendKindClusterStatusBackend: make(chan event.GenericEvent, 256),
		}}
}

// tokensOf returns the APITokens that refer to a backend: the cache's own objects, only read
// here and handed on as events (whose handler reads the name). From the informer's index
// when TokensOf can, else by a List without deep copies, which still copies every APIToken
// into the list's slice.
func (i *Inventory) tokensOf(ctx context.Context, key backendkey.Key) ([]*tokensv1alpha1.APIToken, error) {
	if i.TokensOf != nil {
		if tokens, ok := i.TokensOf(key); ok {
			return tokens, nil
		}
	}
	var list tokensv1alpha1.APITokenList
	if err := i.Reader.List(ctx, &list, client.MatchingFields{backendkey.Index: key.String()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	tokens := make([]*tokensv1alpha1.APIToken, len(list.Items))
	for idx := range list.Items {
		tokens[idx] = &list.Items[idx]
	}
	return tokens, nil
}

// Snapshot returns the last inventory of a backend, or nil.
func (i *Inventory) Snapshot(key backendkey.Key) *Snapshot {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.snaps[key]
}

// Events carries the APITokens whose backend view changed.
func (i *Inventory) Events() <-chan event.GenericEvent { return i.events }

// CountsChanged carries the backends of one kind whose token counts changed, a source for
// that kind's controller (which writes status.tokens).
func (i *Inventory) CountsChanged(kind tokensv1alpha1.BackendKind) <-chan event.GenericEvent {
	return i.countsChanged[kind]
}

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

// Refresh lists every registered backend once (in full or only its changes) and wakes the
// APITokens whose last use or liveness on the backend differs from their status.
func (i *Inventory) Refresh(ctx context.Context) {
	i.refreshMu.Lock()
	defer i.refreshMu.Unlock()
	log := logf.FromContext(ctx).WithName("inventory")
	keys := i.Registry.Keys()
	for key := range i.walks {
		if !slices.Contains(keys, key) {
			delete(i.walks, key) // unregistered: its next registration starts over
		}
	}
	for _, key := range keys {
		// cl is capped by the backend's in-flight limit, like every token call; raw is the
		// checked client itself, which stays the same object while the registration lasts.
		cl, _, ok := i.Registry.Get(key)
		raw, _, rawOK := i.Registry.CheckedClient(key)
		if !ok || !rawOK {
			continue
		}
		prev := i.Snapshot(key)
		snap, err := i.walk(ctx, log, key, cl, raw)
		if err != nil {
			log.Info("Listing backend tokens failed; keeping the previous inventory", "backend", key.String(), "error", err.Error())
			continue
		}
		tokens, listErr := i.tokensOf(ctx, key)
		if listErr == nil {
			snap.tokens = countTokens(snap, tokens)
		} else if prev != nil {
			snap.tokens = prev.tokens
		}
		i.mu.Lock()
		i.snaps[key] = snap
		i.mu.Unlock()
		if snap.tokens != nil && (prev == nil || prev.tokens == nil || *prev.tokens != *snap.tokens) {
			i.announceCounts(ctx, key)
		}
		if listErr == nil {
			i.wakeChanged(ctx, key, snap, tokens)
		}
	}
}

// countTokens sorts a backend's active tokens by who manages them. tokens are the APITokens
// that refer to the backend (by spec, status or a pending deactivation). The backend's admin
// tokens are left out: they can be neither managed nor adopted.
func countTokens(snap *Snapshot, tokens []*tokensv1alpha1.APIToken) *tokensv1alpha1.BackendTokenCounts {
	ours := make(map[string]bool, len(tokens))
	for _, tok := range tokens {
		ours[string(tok.UID)] = true
	}
	var n tokensv1alpha1.BackendTokenCounts
	for _, t := range snap.active {
		cluster := t.cluster
		switch {
		case cluster != "" && cluster != snap.cluster:
			n.OtherClusters++
		case t.externalID != "" && ours[t.externalID]:
			n.Managed++
		case t.externalID != "" && cluster == "":
			// Owned, but by no APIToken here and without this cluster's label: another
			// cluster's (an adopted token, or one made before clusters labelled theirs).
			n.OtherClusters++
		default:
			// Made by hand or another tool, or ours and left behind (deletionPolicy
			// Retain: this cluster's label, an external_id no APIToken has any more).
			n.UnmanagedActive++
			if t.permission == backend.PermissionFullAccess {
				n.UnmanagedFullAccess++
			}
		}
	}
	return &n
}

// announceCounts wakes the backend's controller to write its new counts; a wake already
// queued covers it.
func (i *Inventory) announceCounts(ctx context.Context, key backendkey.Key) {
	var obj client.Object = &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}
	if key.Kind == tokensv1alpha1.BackendKindStatusBackend {
		obj = &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	}
	select {
	case i.countsChanged[key.Kind] <- event.GenericEvent{Object: obj}:
	case <-ctx.Done():
	default:
	}
}

// TokenCounts is a backend's status.tokens from its last inventory, or nil.
func (i *Inventory) TokenCounts(key backendkey.Key) *tokensv1alpha1.BackendTokenCounts {
	snap := i.Snapshot(key)
	if snap == nil || snap.tokens == nil {
		return nil
	}
	n := *snap.tokens
	return &n
}

// walk lists one backend through cl and returns its new snapshot; raw identifies the
// registration and answers the features.
func (i *Inventory) walk(ctx context.Context, log logr.Logger, key backendkey.Key, cl, raw backend.Driver) (*Snapshot, error) {
	w := i.walks[key]
	if w == nil || !sameClient(w.client, raw) {
		w = &inventoryWalk{client: raw}
		i.walks[key] = w
	}
	if !w.featuresRead {
		i.readFeatures(ctx, log, key, w)
	}
	takenAt := i.Clock()
	prev := i.Snapshot(key)
	full := !w.incremental || w.lastWalk.IsZero() || prev == nil ||
		(i.FullListInterval > 0 && takenAt.Sub(w.lastFull) >= i.FullListInterval)
	// Every token, not only ours: the counts in status.tokens include the tokens nobody
	// manages and other clusters'. An idle interval still costs one request. Each token is cut
	// down to what the snapshot keeps as its page is decoded, so a full walk does not hold
	// every description and label set at once.
	opts := backend.ListOptions{Keep: keptOfListed()}
	switch {
	case full && w.incremental:
		// By cursor from the beginning: unlike page numbers, a cursor walk skips no token
		// when others are deactivated meanwhile, and the later walks rely on that.
		opts.Status, opts.UpdatedSince = backend.StatusActive, allTime
	case full:
		opts.Status = backend.StatusActive
	default:
		// Every status: a token that became inactive must leave the snapshot.
		opts.UpdatedSince = w.lastWalk.Add(-i.Overlap)
	}
	list, err := cl.List(ctx, opts)
	if err != nil {
		var be *backend.Error
		if w.incremental && errors.As(err, &be) && be.Kind == backend.KindInvalid {
			// The server refuses updated_since now (replaced by one without the feature):
			// read its features again and list in full next time.
			delete(i.walks, key)
		}
		return nil, err
	}
	var snap *Snapshot
	if full {
		snap = newSnapshot(takenAt, list, i.ClusterIdentity)
		w.lastFull = takenAt
	} else {
		snap = prev.merge(takenAt, list)
	}
	w.lastWalk = takenAt
	return snap, nil
}

// readFeatures asks the backend once per registration whether it lists updated_since, and
// logs a fallback to full lists once (again only if it changes).
func (i *Inventory) readFeatures(ctx context.Context, log logr.Logger, key backendkey.Key, w *inventoryWalk) {
	fs, err := w.client.Capabilities(ctx)
	if err != nil {
		// Unknown this time: list in full and ask again at the next refresh.
		log.Info("Reading backend capabilities failed; listing every token this time", "backend", key.String(), "error", err.Error())
		return
	}
	w.incremental = fs.Has(backend.CapabilityUpdatedSince)
	w.featuresRead = true
	if said, known := i.announced[key]; known && said == w.incremental {
		return
	}
	i.announced[key] = w.incremental
	if w.incremental {
		log.Info("Backend lists updated_since; listing only changed tokens after a first full list", "backend", key.String())
	} else {
		log.Info("Backend does not list the updated_since feature; listing every token each sync interval", "backend", key.String())
	}
}

// sameClient reports whether a and b are the same registered client. A client type that
// cannot be compared counts as a new registration, which costs a full list, never a miss.
func sameClient(a, b backend.Driver) bool {
	if a == nil || b == nil {
		return false
	}
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || !ta.Comparable() {
		return false
	}
	return a == b
}

func (i *Inventory) wakeChanged(ctx context.Context, key backendkey.Key, snap *Snapshot, tokens []*tokensv1alpha1.APIToken) {
	for _, tok := range tokens {
		if predecessorGoneOn(tok, key, snap) {
			// A draining predecessor deactivated elsewhere (by hand, on another object of its
			// account): it leaves status.
			select {
			case i.events <- event.GenericEvent{Object: tok}:
			case <-ctx.Done():
				return
			}
			continue
		}
		if backendkey.Current(tok) != key {
			continue
		}
		extra := len(ExtraActive(tok, snap)) > 0
		if !extra && (tok.Status.Phase != tokensv1alpha1.PhaseActive || tok.Status.TokenID == "") {
			continue
		}
		t, found := snap.active[tok.Status.TokenID]
		if extra || RevokedOnBackend(tok, snap) || (found && !sameTimePtr(timeOf(t.lastUsedAt), tok.Status.LastUsedAt)) || predecessorUseChanged(tok, snap) {
			select {
			case i.events <- event.GenericEvent{Object: tok}:
			case <-ctx.Done():
				return
			}
		}
	}
}
