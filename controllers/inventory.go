package controllers

import (
	"context"
	"errors"
	"maps"
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
	"github.com/statusops/apitoken-operator/internal/backend"
)

// backendTokenLabels are put on every backend token the operator issues, so that one
// list call per backend finds them all.
var backendTokenLabels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}

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

// inventorySnapshot is one backend's active tokens, as listed at takenAt. A published
// snapshot is never modified (reconciles read it concurrently); a refresh publishes a new
// one, sharing the maps when nothing changed.
type inventorySnapshot struct {
	takenAt time.Time
	// active holds the tokens without Labels, Description and Last4, which the operator
	// never reads from the inventory (every listed token carries our label anyway).
	active map[string]backend.Token
	// byExternalID lists the active token ids per external_id (APIToken UID).
	byExternalID map[string][]string
}

// newInventorySnapshot indexes a backend's list of active tokens.
func newInventorySnapshot(takenAt time.Time, list []backend.Token) *inventorySnapshot {
	snap := &inventorySnapshot{takenAt: takenAt, active: make(map[string]backend.Token, len(list)), byExternalID: map[string][]string{}}
	for _, t := range list {
		if t.Status != "" && t.Status != backend.StatusActive {
			continue
		}
		if _, dup := snap.active[t.ID]; dup {
			continue
		}
		snap.active[t.ID] = inventoryEntry(t)
		if t.ExternalID != "" {
			snap.byExternalID[t.ExternalID] = append(snap.byExternalID[t.ExternalID], t.ID)
		}
	}
	return snap
}

// inventoryEntry is what the inventory keeps of a listed token.
func inventoryEntry(t backend.Token) backend.Token {
	t.Labels, t.Description, t.Last4 = nil, "", ""
	return t
}

// merge returns the snapshot at takenAt after the changes listed since the last walk: a
// token listed active is added or updated, a token listed otherwise leaves active and
// byExternalID. The receiver is not modified.
func (s *inventorySnapshot) merge(takenAt time.Time, changed []backend.Token) *inventorySnapshot {
	next := &inventorySnapshot{takenAt: takenAt, active: s.active, byExternalID: s.byExternalID}
	news := changed[:0:0]
	for _, t := range changed {
		if !s.holds(t) {
			news = append(news, t)
		}
	}
	if len(news) == 0 {
		// The overlap re-lists the last changes; nothing new: share the maps.
		return next
	}
	next.active = maps.Clone(s.active)
	next.byExternalID = maps.Clone(s.byExternalID)
	for _, t := range news {
		if old, had := next.active[t.ID]; had {
			delete(next.active, t.ID)
			if old.ExternalID != "" {
				// A new slice: the old one belongs to the published snapshot.
				ids := slices.DeleteFunc(slices.Clone(next.byExternalID[old.ExternalID]), func(id string) bool { return id == t.ID })
				if len(ids) == 0 {
					delete(next.byExternalID, old.ExternalID)
				} else {
					next.byExternalID[old.ExternalID] = ids
				}
			}
		}
		if t.Status != backend.StatusActive {
			continue
		}
		next.active[t.ID] = inventoryEntry(t)
		if t.ExternalID != "" {
			next.byExternalID[t.ExternalID] = append(slices.Clip(next.byExternalID[t.ExternalID]), t.ID)
		}
	}
	return next
}

// holds reports whether the snapshot already says what t says.
func (s *inventorySnapshot) holds(t backend.Token) bool {
	old, had := s.active[t.ID]
	if t.Status != backend.StatusActive {
		return !had
	}
	return had && old.ExternalID == t.ExternalID && equalTimePtr(old.UpdatedAt, t.UpdatedAt) &&
		equalTimePtr(old.LastUsedAt, t.LastUsedAt) && equalTimePtr(old.ExpiresAt, t.ExpiresAt)
}

func equalTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// inventoryWalk is how one registration of a backend is listed.
type inventoryWalk struct {
	// client is the registered (unwrapped) client this walk belongs to: a new registration
	// (after an outage or a change of URL or credential) starts over with a full list, a
	// periodic re-check of the same one does not.
	client backend.Client
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
	Registry *BackendRegistry
	// Reader lists APITokens; the manager's cached client.
	Reader   client.Reader
	Interval time.Duration
	Clock    func() time.Time
	// Overlap and FullListInterval: see DefaultInventoryOverlap and
	// DefaultInventoryFullListInterval. FullListInterval <= 0 never lists in full again.
	Overlap          time.Duration
	FullListInterval time.Duration

	// refreshMu serialises Refresh; it guards walks and announced.
	refreshMu sync.Mutex
	walks     map[BackendKey]*inventoryWalk
	// announced is what the log last said about a backend's updated_since feature, so a
	// fallback to full lists is said once, not every interval.
	announced map[BackendKey]bool

	mu     sync.RWMutex
	snaps  map[BackendKey]*inventorySnapshot
	events chan event.GenericEvent
}

// NewInventory returns an inventory that refreshes every interval.
func NewInventory(reg *BackendRegistry, reader client.Reader, interval time.Duration, clock func() time.Time) *Inventory {
	return &Inventory{Registry: reg, Reader: reader, Interval: interval, Clock: clock,
		Overlap: DefaultInventoryOverlap, FullListInterval: DefaultInventoryFullListInterval,
		walks: map[BackendKey]*inventoryWalk{}, announced: map[BackendKey]bool{},
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
		raw, _, rawOK := i.Registry.checkedClient(key)
		if !ok || !rawOK {
			continue
		}
		snap, err := i.walk(ctx, log, key, cl, raw)
		if err != nil {
			log.Info("Listing backend tokens failed; keeping the previous inventory", "backend", key.String(), "error", err.Error())
			continue
		}
		i.mu.Lock()
		i.snaps[key] = snap
		i.mu.Unlock()
		i.wakeChanged(ctx, key, snap)
	}
}

// walk lists one backend through cl and returns its new snapshot; raw identifies the
// registration and answers the features.
func (i *Inventory) walk(ctx context.Context, log logr.Logger, key BackendKey, cl, raw backend.Client) (*inventorySnapshot, error) {
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
	opts := backend.ListOptions{Labels: backendTokenLabels}
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
	list, err := cl.ListTokens(ctx, opts)
	if err != nil {
		var be *backend.Error
		if w.incremental && errors.As(err, &be) && be.Kind == backend.KindInvalid {
			// The server refuses updated_since now (replaced by one without the feature):
			// read its features again and list in full next time.
			delete(i.walks, key)
		}
		return nil, err
	}
	var snap *inventorySnapshot
	if full {
		snap = newInventorySnapshot(takenAt, list)
		w.lastFull = takenAt
	} else {
		snap = prev.merge(takenAt, list)
	}
	w.lastWalk = takenAt
	return snap, nil
}

// readFeatures asks the backend once per registration whether it lists updated_since, and
// logs a fallback to full lists once (again only if it changes).
func (i *Inventory) readFeatures(ctx context.Context, log logr.Logger, key BackendKey, w *inventoryWalk) {
	ext, ok := w.client.(backend.ExtendedClient)
	if ok {
		fs, err := ext.Features(ctx)
		if err != nil {
			// Unknown this time: list in full and ask again at the next refresh.
			log.Info("Reading backend features failed; listing every token this time", "backend", key.String(), "error", err.Error())
			return
		}
		w.incremental = fs.Has(backend.FeatureUpdatedSince)
	}
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
func sameClient(a, b backend.Client) bool {
	if a == nil || b == nil {
		return false
	}
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || !ta.Comparable() {
		return false
	}
	return a == b
}

func (i *Inventory) wakeChanged(ctx context.Context, key BackendKey, snap *inventorySnapshot) {
	var tokens tokensv1alpha1.APITokenList
	// The cache's own objects, not 20,000 deep copies per interval: they are only read here
	// and handed on as events, whose handler reads the name.
	if err := i.Reader.List(ctx, &tokens, client.MatchingFields{backendRefIndex: key.String()}, client.UnsafeDisableDeepCopy); err != nil {
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
