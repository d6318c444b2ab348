package statusserver

import (
	"crypto/sha256"
	"sync"
	"time"
)

// idempotencyTTL is how long a key replays its first reply.
const idempotencyTTL = 24 * time.Hour

// idemEntry is the first reply for a key. It lives in memory only: the reply
// holds the token value, which must never reach the data file.
type idemEntry struct {
	bodyHash [32]byte
	inFlight bool
	status   int
	reply    []byte
	expires  time.Time
}

// idempotencyCache maps (caller token id, Idempotency-Key) to the first reply.
type idempotencyCache struct {
	mu        sync.Mutex
	entries   map[string]*idemEntry
	lastPrune time.Time
}

type idemOutcome int

const (
	idemProceed  idemOutcome = iota // first request: do the work, then finish or abandon
	idemReplay                      // finished earlier with the same body
	idemInFlight                    // the first request is still running
	idemMismatch                    // the key was used with another body
)

func idemKey(callerID, key string) string { return callerID + "\x00" + key }

// begin claims key for a request with canonical body, or says why not.
func (c *idempotencyCache) begin(key string, body []byte, now time.Time) (idemOutcome, *idemEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*idemEntry{}
	}
	if now.Sub(c.lastPrune) > time.Minute {
		for k, e := range c.entries {
			if !e.inFlight && !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		c.lastPrune = now
	}
	h := sha256.Sum256(body)
	if e, ok := c.entries[key]; ok && (e.inFlight || now.Before(e.expires)) {
		switch {
		case e.bodyHash != h:
			return idemMismatch, nil
		case e.inFlight:
			return idemInFlight, nil
		default:
			cp := *e
			return idemReplay, &cp
		}
	}
	c.entries[key] = &idemEntry{bodyHash: h, inFlight: true}
	return idemProceed, nil
}

// finish stores the reply of a claimed key.
func (c *idempotencyCache) finish(key string, status int, reply []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		e.inFlight = false
		e.status = status
		e.reply = reply
		e.expires = now.Add(idempotencyTTL)
	}
}

// abandon releases a claimed key after a failure, so a retry may proceed.
func (c *idempotencyCache) abandon(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}
