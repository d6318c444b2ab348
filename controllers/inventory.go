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
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// labelledForOtherCluster: the token carries another cluster's identity. Such a token is
// never deactivated as an orphan, adopted, or counted as this cluster's.
func labelledForOtherCluster(tokenCluster, cluster string) bool {
	return tokenCluster != "" && tokenCluster != cluster
}

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
	// active holds every active token of the backend (the operator's and any other, but
	// not the admin tokens, which no APIToken can hold), by id, as an inventoryEntry.
	active map[string]inventoryEntry
	// byExternalID lists the active token ids per external_id (APIToken UID), leaving out
	// tokens labelled with another cluster's identity: this index finds the tokens an
	// APIToken may deactivate as orphans, and those are never another cluster's.
	byExternalID map[string][]string
	// cluster is the identity of this cluster the snapshot was built with.
	cluster string
	// tokens counts the active tokens for the backend's status.tokens (Refresh sets it
	// before publishing); nil when the APITokens could not be listed.
	tokens *tokensv1alpha1.BackendTokenCounts
}

// newInventorySnapshot indexes a backend's list of active tokens; cluster is this cluster's
// identity.
func newInventorySnapshot(takenAt time.Time, list []backend.Token, cluster string) *inventorySnapshot {
	snap := &inventorySnapshot{takenAt: takenAt, active: make(map[string]inventoryEntry, len(list)), byExternalID: map[string][]string{}, cluster: cluster}
	kept := clustersKept{}
	for _, t := range list {
		if (t.Status != "" && t.Status != backend.StatusActive) || t.IsAdmin() {
			continue
		}
		if _, dup := snap.active[t.ID]; dup {
			continue
		}
		snap.active[t.ID] = kept.entry(t)
		if t.Owner.UID != "" && !labelledForOtherCluster(t.Owner.Cluster, cluster) {
			snap.byExternalID[t.Owner.UID] = append(snap.byExternalID[t.Owner.UID], t.ID)
		}
	}
	return snap
}

// inventoryEntry is what the inventory keeps of an active token: its owner, its cluster
// label, its permission and its times, as Unix nanoseconds (0: none). A backend.Token is
// some 200 bytes plus a separate allocation per time and string; this is 96, and a
// backend's snapshot holds one per token (at 20,000 tokens, 12 MB became about 4).
type inventoryEntry struct {
	externalID string
	// cluster is the LabelCluster label, one shared copy per value (clustersKept).
	cluster                                                                string
	permission                                                             backend.Permission
	createdAt, expiresAt, lastUsedAt, lastWriteAt, lastDeniedAt, updatedAt int64
}

// clustersKept interns the cluster labels of one walk: the tokens of one cluster share one
// string, and the permissions are the protocol's constants.
type clustersKept map[string]string

// entry is what the inventory keeps of a listed token.
func (k clustersKept) entry(t backend.Token) inventoryEntry {
	c := t.Owner.Cluster
	if c != "" {
		if v, ok := k[c]; ok {
			c = v
		} else {
			k[c] = c
		}
	}
	p := t.Permission
	switch p {
	case backend.PermissionReadOnly:
		p = backend.PermissionReadOnly
	case backend.PermissionFullAccess:
		p = backend.PermissionFullAccess
	}
	return inventoryEntry{externalID: t.Owner.UID, cluster: c, permission: p, createdAt: unixNano(&t.CreatedAt),
		expiresAt: unixNano(t.ExpiresAt), lastUsedAt: unixNano(t.LastUsedAt), lastWriteAt: unixNano(t.LastWriteAt),
		lastDeniedAt: unixNano(t.LastDeniedAt), updatedAt: unixNano(t.UpdatedAt)}
}

// keptOfListed returns the ListOptions.Keep of one walk: each token is cut down to what its
// entry holds as its page is decoded, so a full walk never holds every description and name;
// the tokens of one cluster share one copy of its identity.
func keptOfListed() func(backend.Token) backend.Token {
	shared := map[string]string{}
	return func(t backend.Token) backend.Token {
		c := t.Owner.Cluster
		t.Description, t.Last4, t.Name = "", "", ""
		if c != "" {
			if v, ok := shared[c]; ok {
				c = v
			} else {
				shared[c] = c
			}
			t.Owner.Cluster = c
		}
		return t
	}
}

// unixNano is t in Unix nanoseconds, 0 for nil or the zero time.
func unixNano(t *time.Time) int64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeOf is the inverse of unixNano; nil for 0.
func timeOf(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// token is the entry as a backend.Token (id, owner, cluster label, permission, status
// active and times), for the readers that take one.
func (e inventoryEntry) token(id string) backend.Token {
	t := backend.Token{ID: id, Owner: backend.Owner{UID: e.externalID, Cluster: e.cluster}, Permission: e.permission, Status: backend.StatusActive,
		ExpiresAt: timeOf(e.expiresAt), LastUsedAt: timeOf(e.lastUsedAt), LastWriteAt: timeOf(e.lastWriteAt),
		LastDeniedAt: timeOf(e.lastDeniedAt), UpdatedAt: timeOf(e.updatedAt)}
	if c := timeOf(e.createdAt); c != nil {
		t.CreatedAt = *c
	}
	return t
}

// merge returns the snapshot at takenAt after the changes listed since the last walk: a
// token listed active is added or updated, a token listed otherwise leaves active and
// byExternalID. The receiver is not modified.
func (s *inventorySnapshot) merge(takenAt time.Time, changed []backend.Token) *inventorySnapshot {
	next := &inventorySnapshot{takenAt: takenAt, active: s.active, byExternalID: s.byExternalID, cluster: s.cluster}
	news := changed[:0:0]
	for _, t := range changed {
		if !t.IsAdmin() && !s.holds(t) {
			news = append(news, t)
		}
	}
	if len(news) == 0 {
		// The overlap re-lists the last changes; nothing new: share the maps.
		return next
	}
	next.active = maps.Clone(s.active)
	next.byExternalID = maps.Clone(s.byExternalID)
	kept := clustersKept{}
	for _, t := range news {
		if old, had := next.active[t.ID]; had {
			delete(next.active, t.ID)
			if old.externalID != "" {
				// A new slice: the old one belongs to the published snapshot.
				ids := slices.DeleteFunc(slices.Clone(next.byExternalID[old.externalID]), func(id string) bool { return id == t.ID })
				if len(ids) == 0 {
					delete(next.byExternalID, old.externalID)
				} else {
					next.byExternalID[old.externalID] = ids
				}
			}
		}
		if t.Status != backend.StatusActive {
			continue
		}
		next.active[t.ID] = kept.entry(t)
		if t.Owner.UID != "" && !labelledForOtherCluster(t.Owner.Cluster, s.cluster) {
			next.byExternalID[t.Owner.UID] = append(slices.Clip(next.byExternalID[t.Owner.UID]), t.ID)
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
	return had && old.externalID == t.Owner.UID && old.updatedAt == unixNano(t.UpdatedAt) &&
		old.lastUsedAt == unixNano(t.LastUsedAt) && old.expiresAt == unixNano(t.ExpiresAt)
}

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
	Registry *BackendRegistry
	// Reader lists APITokens; the manager's cached client.
	Reader client.Reader
	// TokensOf, when set, gives the APITokens that refer to a backend without a List
	// (IndexedTokens); ok false falls back to Reader.
	TokensOf func(BackendKey) ([]*tokensv1alpha1.APIToken, bool)
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
	walks     map[BackendKey]*inventoryWalk
	// announced is what the log last said about a backend's updated_since feature, so a
	// fallback to full lists is said once, not every interval.
	announced map[BackendKey]bool

	mu     sync.RWMutex
	snaps  map[BackendKey]*inventorySnapshot
	events chan event.GenericEvent
	// countsChanged carries, per backend kind, the backends whose status.tokens changed.
	countsChanged map[tokensv1alpha1.BackendKind]chan event.GenericEvent
}

// NewInventory returns an inventory that refreshes every interval.
func NewInventory(reg *BackendRegistry, reader client.Reader, interval time.Duration, clock func() time.Time) *Inventory {
	return &Inventory{Registry: reg, Reader: reader, Interval: interval, Clock: clock,
		Overlap: DefaultInventoryOverlap, FullListInterval: DefaultInventoryFullListInterval,
		walks: map[BackendKey]*inventoryWalk{}, announced: map[BackendKey]bool{},
		snaps: map[BackendKey]*inventorySnapshot{}, events: make(chan event.GenericEvent, 4096),
		countsChanged: map[tokensv1alpha1.BackendKind]chan event.GenericEvent{
			tokensv1alpha1.BackendKindStatusBackend:        make(chan event.GenericEvent, 256),
			tokensv1alpha1.BackendKindClusterStatusBackend: make(chan event.GenericEvent, 256),
		}}
}

// tokensOf returns the APITokens that refer to a backend: the cache's own objects, only read
// here and handed on as events (whose handler reads the name). From the informer's index
// when TokensOf can, else by a List without deep copies, which still copies every APIToken
// into the list's slice.
func (i *Inventory) tokensOf(ctx context.Context, key BackendKey) ([]*tokensv1alpha1.APIToken, error) {
	if i.TokensOf != nil {
		if tokens, ok := i.TokensOf(key); ok {
			return tokens, nil
		}
	}
	var list tokensv1alpha1.APITokenList
	if err := i.Reader.List(ctx, &list, client.MatchingFields{backendRefIndex: key.String()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	tokens := make([]*tokensv1alpha1.APIToken, len(list.Items))
	for idx := range list.Items {
		tokens[idx] = &list.Items[idx]
	}
	return tokens, nil
}

// IndexedTokens is an Inventory.TokensOf that reads backendRefIndex from the informer's own
// index. A List from the cache, even without deep copies, copies every APIToken (704 bytes)
// into the list's slice: at 20,000 tokens that was 14 MB per backend and sync interval, the
// largest share of an idle manager's garbage, which the heap's goal follows. A cache of
// several namespaces has no single informer or index: there a map fed by the informer's
// events (tokensByBackend) answers instead. ok is false when neither can answer yet (the
// informer's initial list not delivered); then a List is made.
func IndexedTokens(c cache.Informers) func(BackendKey) ([]*tokensv1alpha1.APIToken, bool) {
	var (
		indexer toolscache.Indexer
		byEvent *tokensByBackend
	)
	// Looked up now, before the manager starts, so that the handler sees the initial list.
	if inf, err := c.GetInformer(context.Background(), &tokensv1alpha1.APIToken{}, cache.BlockUntilSynced(false)); err == nil {
		if s, ok := inf.(interface{ GetIndexer() toolscache.Indexer }); ok {
			indexer = s.GetIndexer()
		} else {
			b := &tokensByBackend{}
			if reg, err := inf.AddEventHandler(b); err == nil {
				b.synced = reg.HasSynced
				byEvent = b
			}
		}
	}
	return func(key BackendKey) ([]*tokensv1alpha1.APIToken, bool) {
		if byEvent != nil {
			return byEvent.tokensOf(key)
		}
		if indexer == nil {
			return nil, false
		}
		// controller-runtime's names for a field index and its cluster-wide values
		// (FieldIndexName and KeyToNamespacedKey in its cache); TestIndexedTokens fails if
		// they change.
		objs, err := indexer.ByIndex("field:"+backendRefIndex, "__all_namespaces/"+key.String())
		if err != nil {
			return nil, false
		}
		tokens := make([]*tokensv1alpha1.APIToken, 0, len(objs))
		for _, o := range objs {
			tok, ok := o.(*tokensv1alpha1.APIToken)
			if !ok {
				return nil, false
			}
			tokens = append(tokens, tok)
		}
		return tokens, true
	}
}

// Snapshot returns the last inventory of a backend, or nil.
func (i *Inventory) Snapshot(key BackendKey) *inventorySnapshot {
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
		raw, _, rawOK := i.Registry.checkedClient(key)
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
func countTokens(snap *inventorySnapshot, tokens []*tokensv1alpha1.APIToken) *tokensv1alpha1.BackendTokenCounts {
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
func (i *Inventory) announceCounts(ctx context.Context, key BackendKey) {
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
func (i *Inventory) TokenCounts(key BackendKey) *tokensv1alpha1.BackendTokenCounts {
	snap := i.Snapshot(key)
	if snap == nil || snap.tokens == nil {
		return nil
	}
	n := *snap.tokens
	return &n
}

// walk lists one backend through cl and returns its new snapshot; raw identifies the
// registration and answers the features.
func (i *Inventory) walk(ctx context.Context, log logr.Logger, key BackendKey, cl, raw backend.Driver) (*inventorySnapshot, error) {
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
	var snap *inventorySnapshot
	if full {
		snap = newInventorySnapshot(takenAt, list, i.ClusterIdentity)
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

func (i *Inventory) wakeChanged(ctx context.Context, key BackendKey, snap *inventorySnapshot, tokens []*tokensv1alpha1.APIToken) {
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
		if currentBackendKey(tok) != key {
			continue
		}
		in := tokenInputs{token: tok, inventory: snap}
		extra := len(extraActiveTokens(tok, snap)) > 0
		if !extra && (tok.Status.Phase != tokensv1alpha1.PhaseActive || tok.Status.TokenID == "") {
			continue
		}
		t, found := snap.active[tok.Status.TokenID]
		if extra || revokedOnBackend(in) || (found && !sameTimePtr(timeOf(t.lastUsedAt), tok.Status.LastUsedAt)) || predecessorUseChanged(tok, snap) {
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
	return timeOf(t.lastUsedAt), true
}

// sameTimePtr compares the backend's last-used time with status, to the second.
func sameTimePtr(a *time.Time, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Unix() == b.Unix()
}

// predecessorGoneOn: a draining predecessor held by the backend of key is no longer listed
// active there.
func predecessorGoneOn(tok *tokensv1alpha1.APIToken, key BackendKey, snap *inventorySnapshot) bool {
	for _, p := range tok.Status.PreviousTokens {
		if keyOfRef(p.Backend) == key && predecessorGone(p, snap) {
			return true
		}
	}
	return false
}

// predecessorUseChanged: a draining predecessor was used since status recorded it, which
// may decide its retirement (retireWhenUnused) or its Warning.
func predecessorUseChanged(tok *tokensv1alpha1.APIToken, snap *inventorySnapshot) bool {
	for _, p := range tok.Status.PreviousTokens {
		if t, ok := snap.active[p.TokenID]; ok && !sameTimePtr(timeOf(t.lastUsedAt), p.LastUsedAt) {
			return true
		}
	}
	return false
}
