package statusserver

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The protocol extensions a server lists in GET /ping's data.features.
const (
	// FeatureUsage adds last_write_at and last_denied_at to the token object.
	FeatureUsage = "usage"
	// FeatureClaim adds POST /api_tokens/{id}/claim.
	FeatureClaim = "claim"
	// FeatureUpdatedSince adds updated_at and GET /api_tokens?updated_since=.
	FeatureUpdatedSince = "updated_since"
)

// AllFeatures are the extensions the reference server implements, in the
// order GET /ping lists them.
var AllFeatures = []string{FeatureUsage, FeatureClaim, FeatureUpdatedSince}

// ParseFeatures reads a comma-separated list of feature names (for a flag),
// refusing names the server does not know.
func ParseFeatures(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !slices.Contains(AllFeatures, f) {
			return nil, fmt.Errorf("unknown feature %q (known: %s)", f, strings.Join(AllFeatures, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// featureSet is what a Server has switched on.
type featureSet map[string]bool

// enabledFeatures switches on every feature except the disabled ones, so the
// conformance suite can check a server with and without each of them.
func enabledFeatures(disabled []string) featureSet {
	fs := featureSet{}
	for _, f := range AllFeatures {
		fs[f] = !slices.Contains(disabled, f)
	}
	return fs
}

func (fs featureSet) list() []string {
	out := []string{}
	for _, f := range AllFeatures {
		if fs[f] {
			out = append(out, f)
		}
	}
	return out
}

// errClaimed is a claim for a token whose external_id holds another value.
var errClaimed = errors.New("token is claimed by another external_id")

// claimToken sets external_id when it is empty or already ext (compare and
// set, under writeMu), so two operators can never both adopt one token.
func (s *Store) claimToken(id, ext string, now time.Time) (tokenRecord, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	t, ok := s.byID[id]
	var r tokenRecord
	if ok {
		r = t.snapshot()
	}
	s.mu.RUnlock()
	switch {
	case !ok:
		return tokenRecord{}, ErrNotFound
	case r.ExternalID == ext:
		return r, nil
	case r.ExternalID != "":
		return tokenRecord{}, errClaimed
	}
	r.ExternalID = ext
	r.UpdatedAt = now.UTC()
	if err := s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketTokens, id, &r) }); err != nil {
		return tokenRecord{}, fmt.Errorf("storing token: %w", err)
	}
	s.mu.Lock()
	t.rec.ExternalID = ext
	t.rec.UpdatedAt = r.UpdatedAt
	s.addExternal(t) // it had none: claims only set an empty external_id
	s.mu.Unlock()
	return r, nil
}

// updatedCursor selects tokens by updated_at: at or after Since, and when
// AfterID is set, strictly after the key (Since, AfterID). Keys are
// (updated_at, id); a token's key only grows, so a walk that resumes after
// the last key it saw never skips a token, even one that changes mid-walk
// (it moves behind the cursor's front and comes again).
type updatedCursor struct {
	Since   time.Time
	AfterID string
}

func (c *updatedCursor) admits(updated time.Time, id string) bool {
	if updated.Before(c.Since) {
		return false
	}
	return c.AfterID == "" || updated.After(c.Since) || id > c.AfterID
}

// listUpdated returns one page of the matching tokens in ascending
// (updated_at, id) order, with the total and each token's updated_at.
func (s *Store) listUpdated(f tokenFilter, c updatedCursor, now time.Time, page, perPage int) ([]tokenRecord, int) {
	type keyed struct {
		rec     tokenRecord
		updated time.Time
	}
	s.mu.RLock()
	var all []keyed
	for _, t := range s.order {
		if !f.matches(&t.rec, now) {
			continue
		}
		r := t.snapshot()
		if u := r.updatedAt(now); c.admits(u, r.ID) {
			all = append(all, keyed{r, u})
		}
	}
	s.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool {
		if !all[i].updated.Equal(all[j].updated) {
			return all[i].updated.Before(all[j].updated)
		}
		return strings.Compare(all[i].rec.ID, all[j].rec.ID) < 0
	})
	start := min((page-1)*perPage, len(all))
	end := min(start+perPage, len(all))
	out := make([]tokenRecord, 0, end-start)
	for _, k := range all[start:end] {
		out = append(out, k.rec)
	}
	return out, len(all)
}
