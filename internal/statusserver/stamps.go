package statusserver

import (
	"sync/atomic"
	"time"
)

// stamp moves a usage stamp (last_used_at, last_write_at, last_denied_at) of t
// forward to now and queues t for the next flush. It never moves a stamp
// back, so a token's updated_at only grows even if the wall clock steps back:
// that is what keeps an updated_since walk from skipping a token.
func (s *Store) stamp(t *storedToken, field *atomic.Int64, now time.Time) {
	n := now.UnixNano()
	for {
		old := field.Load()
		if old >= n || field.CompareAndSwap(old, n) {
			break
		}
	}
	if t.dirty.CompareAndSwap(false, true) {
		s.dirtyMu.Lock()
		s.dirty[t.rec.ID] = t
		s.dirtyMu.Unlock()
	}
}

// stampUsage records the usage extension's stamps for the caller's request:
// a successful write (last_write_at) or a refusal because the token is
// read-only (last_denied_at). Unknown ids are ignored: the token was only read.
func (s *Store) stampUsage(id string, denied bool, now time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byID[id]
	if !ok {
		return
	}
	if denied {
		s.stamp(t, &t.lastDenied, now)
	} else {
		s.stamp(t, &t.lastWrite, now)
	}
}

func stampTime(field *atomic.Int64) *time.Time {
	n := field.Load()
	if n == 0 {
		return nil
	}
	t := time.Unix(0, n).UTC()
	return &t
}

func loadStamp(field *atomic.Int64, t *time.Time) {
	if t != nil {
		field.Store(t.UnixNano())
	}
}

// updatedAt is the updated_since extension's updated_at: the latest of the
// stored changes, the usage stamps and, once it has passed, expires_at (the
// moment the status turned inactive). Each part only grows, so it only grows.
func (r *tokenRecord) updatedAt(now time.Time) time.Time {
	u := r.UpdatedAt
	if u.IsZero() {
		u = r.CreatedAt
	}
	for _, t := range []*time.Time{r.LastUsedAt, r.LastWriteAt, r.LastDeniedAt, r.DeactivatedAt} {
		if t != nil && t.After(u) {
			u = *t
		}
	}
	if e := r.ExpiresAt; e != nil && !now.Before(*e) && e.After(u) {
		u = *e
	}
	return u.UTC()
}
