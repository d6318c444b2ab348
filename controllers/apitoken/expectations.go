package apitoken

import (
	"encoding/json"
	"hash/fnv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
)

// expectationTimeout bounds how long a pass trusts its own memory over the cache. After it,
// the cache is believed again (so a Secret deleted right after a write is still repaired).
const expectationTimeout = 10 * time.Second

// writeExpectations remember, per APIToken, the issue serial and Secret hash this process
// just wrote. The informer cache lags behind our own writes; a pass that ran on the stale
// copy would see "no token yet" or "Secret missing" and issue again. Like the ReplicaSet
// controller's expectations, a pass whose cache has not caught up waits briefly instead.
// Memory only: after a restart the cache starts from a fresh list, so nothing is stale.
//
// The status is expected too: a pass that ran on a copy older than our last status write
// would redo what that write recorded (a refused create sent again when many APITokens start
// together, found by the hostile-input scenario). So after every status patch the written
// status is remembered, and a pass waits until the cache shows it.
type writeExpectations struct {
	mu     sync.Mutex
	m      map[types.UID]writeExpectation
	status map[types.UID]statusExpectation
	// finalized is when this process added the finalizer: a pass on a copy that does not
	// show it yet would patch it again (two finalizer writes for one token, seen once a
	// refused pass could be woken right after its own patch).
	finalized map[types.UID]time.Time
	// uncertain are the APITokens whose last create failed without an answer (a timeout, a
	// reset, a 5xx): the backend may have made the token, which no status names until the
	// create is replayed with the same key. Their passes go first in line for a backend slot
	// (see WaitForSlot), so that window lasts one slot's wait, not the whole burst's queue.
	uncertain map[types.UID]struct{}
}

type statusExpectation struct {
	hash uint64
	at   time.Time
}

type writeExpectation struct {
	serial     int64
	tokenID    string
	secretHash string
	at         time.Time
}

// expect records a write: the issue serial and current token id status now has, and the
// hash of the token the Secret now holds. (An adoption changes the token id, not the serial.)
func (e *writeExpectations) expect(uid types.UID, serial int64, tokenID, secretHash string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[types.UID]writeExpectation{}
	}
	e.m[uid] = writeExpectation{serial: serial, tokenID: tokenID, secretHash: secretHash, at: now}
}

// expectStatus records the status a patch just wrote (as the API server returned it).
func (e *writeExpectations) expectStatus(uid types.UID, st *tokensv1alpha1.APITokenStatus, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.status == nil {
		e.status = map[types.UID]statusExpectation{}
	}
	e.status[uid] = statusExpectation{hash: statusHash(st), at: now}
}

func (e *writeExpectations) forget(uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m = deleted(e.m, uid)
	e.status = deleted(e.status, uid)
	e.finalized = deleted(e.finalized, uid)
	e.uncertain = deleted(e.uncertain, uid)
}

// createUncertain records whether the last create for uid failed without an answer.
func (e *writeExpectations) createUncertain(uid types.UID, uncertain bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !uncertain {
		e.uncertain = deleted(e.uncertain, uid)
		return
	}
	if e.uncertain == nil {
		e.uncertain = map[types.UID]struct{}{}
	}
	e.uncertain[uid] = struct{}{}
}

// isCreateUncertain: the last create for uid failed without an answer and was not replayed.
func (e *writeExpectations) isCreateUncertain(uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.uncertain[uid]
	return ok
}

// deleted removes uid from m and returns nil once m is empty: a Go map keeps the table of its
// largest size, and these fill with every token at once (a create burst, a restart) and empty
// as the cache catches up, so an empty one is dropped rather than kept at its peak.
func deleted[V any](m map[types.UID]V, uid types.UID) map[types.UID]V {
	delete(m, uid)
	if len(m) == 0 {
		return nil
	}
	return m
}

// expectFinalizer records that this process just added the finalizer.
func (e *writeExpectations) expectFinalizer(uid types.UID, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.finalized == nil {
		e.finalized = map[types.UID]time.Time{}
	}
	e.finalized[uid] = now
}

// finalizerPending reports whether this process added the finalizer of an APIToken whose
// cached copy does not show it yet (within expectationTimeout): the pass should wait for the
// cache rather than add it again. Once the cache shows it, or after the timeout (someone may
// have removed it), the expectation is dropped.
func (e *writeExpectations) finalizerPending(tok *tokensv1alpha1.APIToken, has bool, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, ok := e.finalized[tok.UID]
	if !ok {
		return false
	}
	if has || now.Sub(at) > expectationTimeout {
		e.finalized = deleted(e.finalized, tok.UID)
		return false
	}
	return true
}

// statusHash is a hash of the status as JSON (deterministic: struct fields in order, no maps
// of unordered keys that encoding/json would not sort).
func statusHash(st *tokensv1alpha1.APITokenStatus) uint64 {
	h := fnv.New64a()
	_ = json.NewEncoder(h).Encode(st)
	return h.Sum64()
}

// statusSatisfied reports whether the cached APIToken shows our last status write.
func (e *writeExpectations) statusSatisfied(tok *tokensv1alpha1.APIToken, now time.Time) bool {
	exp, ok := e.status[tok.UID]
	switch {
	case !ok:
		return true
	case now.Sub(exp.at) > expectationTimeout, statusHash(&tok.Status) == exp.hash:
		e.status = deleted(e.status, tok.UID)
		return true
	}
	return false
}

// satisfied reports whether the cached APIToken and Secret reflect our last write.
func (e *writeExpectations) satisfied(tok *tokensv1alpha1.APIToken, secret *corev1.Secret, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.statusSatisfied(tok, now) {
		return false
	}
	exp, ok := e.m[tok.UID]
	if !ok {
		return true
	}
	if now.Sub(exp.at) > expectationTimeout {
		e.m = deleted(e.m, tok.UID)
		return true
	}
	if tok.Status.IssueSerial < exp.serial || tok.Status.TokenID != exp.tokenID || secret == nil || secret.Annotations[secretcache.AnnotationTokenSHA256] != exp.secretHash {
		return false
	}
	e.m = deleted(e.m, tok.UID)
	return true
}
