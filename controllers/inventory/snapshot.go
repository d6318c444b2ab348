package inventory

import (
	"maps"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Snapshot is one backend's active tokens, as listed at takenAt. A published
// snapshot is never modified (reconciles read it concurrently); a refresh publishes a new
// one, sharing the maps when nothing changed.
type Snapshot struct {
	takenAt time.Time
	// active holds every active token of the backend (the operator's and any other, but
	// not the admin tokens, which no APIToken can hold), by id, as an entry.
	active map[string]entry
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

// newSnapshot indexes a backend's list of active tokens; cluster is this cluster's
// identity.
func newSnapshot(takenAt time.Time, list []backend.Token, cluster string) *Snapshot {
	snap := &Snapshot{takenAt: takenAt, active: make(map[string]entry, len(list)), byExternalID: map[string][]string{}, cluster: cluster}
	kept := clustersKept{}
	for _, t := range list {
		if (t.Status != "" && t.Status != backend.StatusActive) || t.IsAdmin() {
			continue
		}
		if _, dup := snap.active[t.ID]; dup {
			continue
		}
		snap.active[t.ID] = kept.entry(t)
		if t.Owner.UID != "" && !LabelledForOtherCluster(t.Owner.Cluster, cluster) {
			snap.byExternalID[t.Owner.UID] = append(snap.byExternalID[t.Owner.UID], t.ID)
		}
	}
	return snap
}

// entry is what the inventory keeps of an active token: its owner, its cluster
// label, its permission and its times, as Unix nanoseconds (0: none). A backend.Token is
// some 200 bytes plus a separate allocation per time and string; this is 96, and a
// backend's snapshot holds one per token (at 20,000 tokens, 12 MB became about 4).
type entry struct {
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
func (k clustersKept) entry(t backend.Token) entry {
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
	return entry{externalID: t.Owner.UID, cluster: c, permission: p, createdAt: unixNano(&t.CreatedAt),
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
func (e entry) token(id string) backend.Token {
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
func (s *Snapshot) merge(takenAt time.Time, changed []backend.Token) *Snapshot {
	next := &Snapshot{takenAt: takenAt, active: s.active, byExternalID: s.byExternalID, cluster: s.cluster}
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
		if t.Owner.UID != "" && !LabelledForOtherCluster(t.Owner.Cluster, s.cluster) {
			next.byExternalID[t.Owner.UID] = append(slices.Clip(next.byExternalID[t.Owner.UID]), t.ID)
		}
	}
	return next
}

// holds reports whether the snapshot already says what t says.
func (s *Snapshot) holds(t backend.Token) bool {
	old, had := s.active[t.ID]
	if t.Status != backend.StatusActive {
		return !had
	}
	return had && old.externalID == t.Owner.UID && old.updatedAt == unixNano(t.UpdatedAt) &&
		old.lastUsedAt == unixNano(t.LastUsedAt) && old.expiresAt == unixNano(t.ExpiresAt)
}

// LastUsed is the backend's last-used time of the current token, if known.
func LastUsed(snap *Snapshot, tokenID string) (*time.Time, bool) {
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
func predecessorGoneOn(tok *tokensv1alpha1.APIToken, key backendkey.Key, snap *Snapshot) bool {
	for _, p := range tok.Status.PreviousTokens {
		if backendkey.OfRef(p.Backend) == key && PredecessorGone(p, snap) {
			return true
		}
	}
	return false
}

// predecessorUseChanged: a draining predecessor was used since status recorded it, which
// may decide its retirement (retireWhenUnused) or its Warning.
func predecessorUseChanged(tok *tokensv1alpha1.APIToken, snap *Snapshot) bool {
	for _, p := range tok.Status.PreviousTokens {
		if t, ok := snap.active[p.TokenID]; ok && !sameTimePtr(timeOf(t.lastUsedAt), p.LastUsedAt) {
			return true
		}
	}
	return false
}

// RevocationGrace: a token absent from a backend inventory counts as revoked only when it was
// issued at least this long before the inventory was taken (clock skew, list latency).
const RevocationGrace = 5 * time.Second

// RevokedOnBackend: the backend's last inventory, taken well after the current token was
// issued, does not list it as active.
func RevokedOnBackend(tok *tokensv1alpha1.APIToken, snap *Snapshot) bool {
	st := tok.Status
	if snap == nil || st.IssuedAt == nil {
		return false
	}
	if snap.takenAt.Sub(st.IssuedAt.Time) < RevocationGrace {
		return false
	}
	_, active := snap.active[st.TokenID]
	return !active
}

// ExtraActive are the inventory's active tokens of this APIToken that status names neither as
// current, nor as draining, nor as pending deactivation: a sweep must deactivate them.
func ExtraActive(tok *tokensv1alpha1.APIToken, snap *Snapshot) []string {
	if snap == nil {
		return nil
	}
	known := map[string]bool{tok.Status.TokenID: true}
	for _, p := range tok.Status.PreviousTokens {
		known[p.TokenID] = true
	}
	for _, p := range tok.Status.PendingDeactivation {
		known[p.TokenID] = true
	}
	var out []string
	for _, id := range snap.byExternalID[string(tok.UID)] {
		if !known[id] {
			out = append(out, id)
		}
	}
	return out
}

// PredecessorGone: the inventory of its backend, taken well after it was superseded, does not
// list it active (deactivated by hand, expired, or by another object on the same account).
func PredecessorGone(p tokensv1alpha1.PreviousToken, snap *Snapshot) bool {
	if snap == nil || snap.takenAt.Sub(p.SupersededAt.Time) < RevocationGrace {
		return false
	}
	_, active := snap.active[p.TokenID]
	return !active
}

// TakenAt is when the backend was listed.
func (s *Snapshot) TakenAt() time.Time { return s.takenAt }

// Token is a listed active token as a backend.Token (owner, permission, times), and whether
// it is listed active.
func (s *Snapshot) Token(id string) (backend.Token, bool) {
	if s == nil {
		return backend.Token{}, false
	}
	e, ok := s.active[id]
	if !ok {
		return backend.Token{}, false
	}
	return e.token(id), true
}
