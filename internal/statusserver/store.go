package statusserver

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketTokens = []byte("tokens")
	bucketBoards = []byte("boards")
	bucketMeta   = []byte("meta")
	keyAdminID   = []byte("admin_token_id")
	keySeq       = []byte("seq")
)

// lastUsedFlushInterval bounds how stale last_used_at may be on disk. Writing
// it per request would cost an fsync per GET.
const lastUsedFlushInterval = time.Second

// ErrNotFound is returned by Store lookups of unknown ids.
var ErrNotFound = errors.New("not found")

// tokenRecord is a token as persisted. It holds the SHA-256 of the value,
// never the value.
type tokenRecord struct {
	ID            string            `json:"id"`
	Hash          string            `json:"hash"`
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	Permission    string            `json:"permission"`
	ExpiresAt     *time.Time        `json:"expires_at,omitempty"`
	LastUsedAt    *time.Time        `json:"last_used_at,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	DeactivatedAt *time.Time        `json:"deactivated_at,omitempty"`
	Last4         string            `json:"last4"`
	ExternalID    string            `json:"external_id,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	// Role is roleAdmin for the bootstrap or imported admin credential, empty
	// otherwise. The API can never set it: only the admin manages tokens.
	Role string `json:"role,omitempty"`
	// LastWriteAt and LastDeniedAt are the usage extension's stamps, kept
	// like LastUsedAt (in memory, flushed in batches).
	LastWriteAt  *time.Time `json:"last_write_at,omitempty"`
	LastDeniedAt *time.Time `json:"last_denied_at,omitempty"`
	// UpdatedAt is the last stored change (create, deactivate, claim); zero in
	// records written before it existed. updatedAt adds the stamps and expiry.
	UpdatedAt time.Time `json:"updated_at,omitempty"`
	Seq       uint64    `json:"seq"`
}

// isAdmin reports whether the token may manage tokens.
func (r *tokenRecord) isAdmin() bool { return r.Role == roleAdmin }

// active reports whether the token authenticates at now.
func (r *tokenRecord) active(now time.Time) bool {
	return r.DeactivatedAt == nil && (r.ExpiresAt == nil || now.Before(*r.ExpiresAt))
}

// storedToken is the in-memory form. The stamps are atomic so authentication
// only needs the read lock.
type storedToken struct {
	rec        tokenRecord // guarded by Store.mu
	lastUsed   atomic.Int64
	lastWrite  atomic.Int64
	lastDenied atomic.Int64
	dirty      atomic.Bool
}

func (t *storedToken) snapshot() tokenRecord {
	r := t.rec
	r.LastUsedAt = stampTime(&t.lastUsed)
	r.LastWriteAt = stampTime(&t.lastWrite)
	r.LastDeniedAt = stampTime(&t.lastDenied)
	r.Labels = make(map[string]string, len(t.rec.Labels))
	for k, v := range t.rec.Labels {
		r.Labels[k] = v
	}
	return r
}

// boardRecord is the small demo resource.
type boardRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Seq       uint64    `json:"seq"`
}

// Store keeps tokens and boards in a bbolt file with an in-memory index
// (hash → token) loaded at open, so authentication never touches the disk.
type Store struct {
	db   *bolt.DB
	path string

	// writeMu serialises disk writes; mu guards the maps below. Disk writes
	// happen outside mu so an fsync never blocks authentication.
	writeMu sync.Mutex
	mu      sync.RWMutex
	byID    map[string]*storedToken
	byHash  map[string]*storedToken
	order   []*storedToken // ascending Seq
	// byExternal is order per external_id: a list by external_id (the operator's, one per
	// issuance) reads only that owner's tokens instead of every token in the store.
	byExternal map[string][]*storedToken
	boards     map[string]*boardRecord
	adminID    string
	seq        uint64

	dirtyMu sync.Mutex
	dirty   map[string]*storedToken

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// OpenStore opens (or creates) the bbolt file at path, loads the index and
// starts the periodic last_used_at flusher. Close it to flush and release the file.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		path:   path,
		byID:   map[string]*storedToken{},
		byHash: map[string]*storedToken{}, byExternal: map[string][]*storedToken{},
		boards: map[string]*boardRecord{},
		dirty:  map[string]*storedToken{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	go s.flushLoop()
	return s, nil
}

// Path is the data file.
func (s *Store) Path() string { return s.path }

func (s *Store) load() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketBoards, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySeq); len(v) == 8 {
			s.seq = binary.BigEndian.Uint64(v)
		}
		s.adminID = string(meta.Get(keyAdminID))
		var migrated []tokenRecord
		err := tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var r tokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding token %s: %w", k, err)
			}
			if r.ID == s.adminID && r.Role == "" {
				// Stores written before roles existed only recorded the admin's id.
				r.Role = roleAdmin
				migrated = append(migrated, r)
			}
			t := &storedToken{rec: r}
			loadStamp(&t.lastUsed, r.LastUsedAt)
			loadStamp(&t.lastWrite, r.LastWriteAt)
			loadStamp(&t.lastDenied, r.LastDeniedAt)
			s.byID[r.ID] = t
			s.byHash[r.Hash] = t
			s.order = append(s.order, t)
			return nil
		})
		if err != nil {
			return err
		}
		for i := range migrated {
			// Written after the walk: bbolt forbids changing a bucket inside ForEach.
			if err := putJSON(tx, bucketTokens, migrated[i].ID, &migrated[i]); err != nil {
				return err
			}
		}
		sort.Slice(s.order, func(i, j int) bool { return s.order[i].rec.Seq < s.order[j].rec.Seq })
		for _, t := range s.order {
			s.addExternal(t)
		}
		return tx.Bucket(bucketBoards).ForEach(func(k, v []byte) error {
			var b boardRecord
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("decoding board %s: %w", k, err)
			}
			s.boards[b.ID] = &b
			return nil
		})
	})
}

// nextSeq must be called with writeMu held, inside the write transaction.
func (s *Store) nextSeq(tx *bolt.Tx) (uint64, error) {
	s.seq++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], s.seq)
	return s.seq, tx.Bucket(bucketMeta).Put(keySeq, b[:])
}

func putJSON(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), data)
}

// tokenParams are the caller-chosen fields of a new token.
type tokenParams struct {
	Name        string
	Description string
	Permission  string
	ExpiresAt   *time.Time
	ExternalID  string
	Labels      map[string]string
}

// insertToken persists a token for value (hashed) and indexes it.
func (s *Store) insertToken(value string, p tokenParams, now time.Time, admin bool) (tokenRecord, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	hash := hashValue(value)
	s.mu.RLock()
	_, dup := s.byHash[hash]
	s.mu.RUnlock()
	if dup {
		return tokenRecord{}, errors.New("token value already registered")
	}
	r := tokenRecord{
		ID:          newTokenID(),
		Hash:        hash,
		Name:        p.Name,
		Description: p.Description,
		Permission:  p.Permission,
		ExpiresAt:   utcPtr(p.ExpiresAt),
		CreatedAt:   now.UTC(),
		Last4:       value[len(value)-4:],
		ExternalID:  p.ExternalID,
		Labels:      p.Labels,
		UpdatedAt:   now.UTC(),
	}
	if admin {
		r.Role = roleAdmin
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r.Seq, err = s.nextSeq(tx); err != nil {
			return err
		}
		if admin {
			if err := tx.Bucket(bucketMeta).Put(keyAdminID, []byte(r.ID)); err != nil {
				return err
			}
		}
		return putJSON(tx, bucketTokens, r.ID, &r)
	})
	if err != nil {
		return tokenRecord{}, fmt.Errorf("storing token: %w", err)
	}
	t := &storedToken{rec: r}
	s.mu.Lock()
	s.byID[r.ID] = t
	s.byHash[hash] = t
	s.order = append(s.order, t)
	s.addExternal(t)
	if admin {
		s.adminID = r.ID
	}
	s.mu.Unlock()
	return t.snapshot(), nil
}

// createToken generates a value and stores its hash. The value is returned
// once and kept nowhere.
func (s *Store) createToken(p tokenParams, now time.Time) (tokenRecord, string, error) {
	value := newTokenValue()
	r, err := s.insertToken(value, p, now, false)
	return r, value, err
}

// CreateAdminToken issues a full_access token with the admin role and records
// it as the bootstrap admin. The value is returned once; only its hash is stored.
func (s *Store) CreateAdminToken(name string, now time.Time) (id, value string, err error) {
	value = newTokenValue()
	r, err := s.insertToken(value, tokenParams{Name: name, Permission: permFullAccess}, now, true)
	return r.ID, value, err
}

// ImportAdminToken registers a caller-chosen value as a full_access token with
// the admin role unless a token with that value already exists. It reports whether it
// created one.
func (s *Store) ImportAdminToken(name, value string, now time.Time) (created bool, err error) {
	if err := validateImportedValue(value); err != nil {
		return false, err
	}
	s.mu.RLock()
	_, exists := s.byHash[hashValue(value)]
	s.mu.RUnlock()
	if exists {
		return false, nil
	}
	if _, err := s.insertToken(value, tokenParams{Name: name, Permission: permFullAccess}, now, true); err != nil {
		return false, err
	}
	return true, nil
}

// HasAdmin reports whether a bootstrap admin token was ever created.
func (s *Store) HasAdmin() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.adminID != ""
}

// IsAdmin reports whether id is the bootstrap admin token.
func (s *Store) IsAdmin(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return id != "" && s.adminID == id
}

func validateImportedValue(v string) error {
	if len(v) < 16 || len(v) > 256 {
		return errors.New("admin token must be 16 to 256 characters")
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return errors.New("admin token must be printable ASCII without spaces")
		}
	}
	return nil
}

// authenticate finds the active token for value and stamps last_used_at.
func (s *Store) authenticate(value string, now time.Time) (tokenRecord, bool) {
	hash := hashValue(value)
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byHash[hash]
	if !ok || !t.rec.active(now) {
		return tokenRecord{}, false
	}
	s.stamp(t, &t.lastUsed, now)
	return t.snapshot(), true
}

func (s *Store) getToken(id string) (tokenRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byID[id]
	if !ok {
		return tokenRecord{}, false
	}
	return t.snapshot(), true
}

// tokenFilter selects tokens for listing.
type tokenFilter struct {
	ExternalID string
	Labels     map[string]string
	Status     string
}

// listTokens returns the matching tokens newest first, one page of them, and the total.
func (s *Store) listTokens(f tokenFilter, now time.Time, page, perPage int) ([]tokenRecord, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	skip := (page - 1) * perPage
	var out []tokenRecord
	total := 0
	tokens := s.order
	if f.ExternalID != "" {
		tokens = s.byExternal[f.ExternalID]
	}
	for i := len(tokens) - 1; i >= 0; i-- {
		t := tokens[i]
		if !f.matches(&t.rec, now) {
			continue
		}
		total++
		if total > skip && len(out) < perPage {
			out = append(out, t.snapshot())
		}
	}
	return out, total
}

func (f tokenFilter) matches(r *tokenRecord, now time.Time) bool {
	if f.ExternalID != "" && r.ExternalID != f.ExternalID {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := r.Labels[k]; !ok || got != v {
			return false
		}
	}
	switch f.Status {
	case statusActive:
		return r.active(now)
	case statusInactive:
		return !r.active(now)
	}
	return true
}

// deactivateToken marks a token inactive; a second call keeps the first time.
func (s *Store) deactivateToken(id string, now time.Time) (tokenRecord, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	t, ok := s.byID[id]
	var r tokenRecord
	if ok {
		r = t.snapshot()
	}
	s.mu.RUnlock()
	if !ok {
		return tokenRecord{}, ErrNotFound
	}
	if r.DeactivatedAt != nil {
		return r, nil
	}
	at := now.UTC()
	r.DeactivatedAt = &at
	r.UpdatedAt = at
	if err := s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx, bucketTokens, id, &r) }); err != nil {
		return tokenRecord{}, fmt.Errorf("storing token: %w", err)
	}
	s.mu.Lock()
	t.rec.DeactivatedAt = &at
	t.rec.UpdatedAt = at
	s.mu.Unlock()
	return r, nil
}

func (s *Store) createBoard(name string, now time.Time) (boardRecord, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	b := boardRecord{ID: newBoardID(), Name: name, CreatedAt: now.UTC()}
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if b.Seq, err = s.nextSeq(tx); err != nil {
			return err
		}
		return putJSON(tx, bucketBoards, b.ID, &b)
	})
	if err != nil {
		return boardRecord{}, fmt.Errorf("storing board: %w", err)
	}
	s.mu.Lock()
	s.boards[b.ID] = &b
	s.mu.Unlock()
	return b, nil
}

func (s *Store) getBoard(id string) (boardRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.boards[id]
	if !ok {
		return boardRecord{}, false
	}
	return *b, true
}

// listBoards returns one page of boards, newest first, and the total.
func (s *Store) listBoards(page, perPage int) ([]boardRecord, int) {
	s.mu.RLock()
	all := make([]boardRecord, 0, len(s.boards))
	for _, b := range s.boards {
		all = append(all, *b)
	}
	s.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Seq > all[j].Seq })
	start := min((page-1)*perPage, len(all))
	end := min(start+perPage, len(all))
	return all[start:end], len(all)
}

func (s *Store) deleteBoard(id string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, ok := s.getBoard(id); !ok {
		return ErrNotFound
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBoards).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("deleting board: %w", err)
	}
	s.mu.Lock()
	delete(s.boards, id)
	s.mu.Unlock()
	return nil
}

// Flush writes pending last_used_at stamps in one transaction.
func (s *Store) Flush() error {
	s.dirtyMu.Lock()
	batch := s.dirty
	s.dirty = map[string]*storedToken{}
	s.dirtyMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	recs := make([]tokenRecord, 0, len(batch))
	s.mu.RLock()
	for _, t := range batch {
		// Clear before reading, so a stamp racing with this flush marks it again.
		t.dirty.Store(false)
		recs = append(recs, t.snapshot())
	}
	s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i := range recs {
			if err := putJSON(tx, bucketTokens, recs[i].ID, &recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Keep the stamps pending so the next flush retries them.
		s.dirtyMu.Lock()
		for id, t := range batch {
			if t.dirty.CompareAndSwap(false, true) {
				s.dirty[id] = t
			}
		}
		s.dirtyMu.Unlock()
		return fmt.Errorf("flushing last_used_at: %w", err)
	}
	return nil
}

func (s *Store) flushLoop() {
	defer close(s.done)
	tick := time.NewTicker(lastUsedFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			// A failed flush keeps memory authoritative; the next change retries.
			_ = s.Flush()
		}
	}
}

// Close stops the flusher, writes pending last_used_at stamps and closes the file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		err := s.Flush()
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// addExternal puts t into byExternal, in Seq order; the caller holds mu.
func (s *Store) addExternal(t *storedToken) {
	ext := t.rec.ExternalID
	if ext == "" {
		return
	}
	l := s.byExternal[ext]
	i := sort.Search(len(l), func(i int) bool { return l[i].rec.Seq > t.rec.Seq })
	s.byExternal[ext] = slices.Insert(l, i, t)
}
