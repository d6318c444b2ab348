package controllers

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// expectationTimeout bounds how long a pass trusts its own memory over the cache. After it,
// the cache is believed again (so a Secret deleted right after a write is still repaired).
const expectationTimeout = 10 * time.Second

// writeExpectations remember, per APIToken, the issue serial and Secret hash this process
// just wrote. The informer cache lags behind our own writes; a pass that ran on the stale
// copy would see "no token yet" or "Secret missing" and issue again. Like the ReplicaSet
// controller's expectations, a pass whose cache has not caught up waits briefly instead.
// Memory only: after a restart the cache starts from a fresh list, so nothing is stale.
type writeExpectations struct {
	mu sync.Mutex
	m  map[types.UID]writeExpectation
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

func (e *writeExpectations) forget(uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, uid)
}

// satisfied reports whether the cached APIToken and Secret reflect our last write.
func (e *writeExpectations) satisfied(tok *tokensv1alpha1.APIToken, secret *corev1.Secret, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.m[tok.UID]
	if !ok {
		return true
	}
	if now.Sub(exp.at) > expectationTimeout {
		delete(e.m, tok.UID)
		return true
	}
	if tok.Status.IssueSerial < exp.serial || tok.Status.TokenID != exp.tokenID || secret == nil || secret.Annotations[annotationTokenSHA256] != exp.secretHash {
		return false
	}
	delete(e.m, tok.UID)
	return true
}
