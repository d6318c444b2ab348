package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// This file holds the pure rules of rotation without downtime (spec.rotation): when a token
// is renewed, how long its predecessor overlaps, and when a predecessor is retired.

// MaxPreviousTokens bounds the predecessors that drain at once (AWS's two keys); a third
// replacement retires the oldest at once.
const MaxPreviousTokens = 2

// anchorGrid rounds the issue time a lifetime counts from (a tenth of the lifetime, between
// 1 s and 1 min), so that a create retried after a crash within the same grid step sends the
// same body and replays under its idempotency key; a retry across a step creates a second
// token, and the first, an orphan carrying this APIToken's UID, is swept.
func anchorGrid(lifetime time.Duration) time.Duration {
	return min(max(lifetime/10, time.Second), time.Minute)
}

// defaultQuietForStillInUse is how recent a predecessor's last use must be, when its grace
// ends, to count as "still in use" without retireWhenUnused.
const defaultQuietForStillInUse = 5 * time.Minute

func LifetimeOf(tok *tokensv1alpha1.APIToken) time.Duration {
	if r := tok.Spec.Rotation; r != nil && r.Lifetime != nil {
		return r.Lifetime.Duration
	}
	return 0
}

// renewBeforeOf is spec.rotation.renewBefore, default a third of the lifetime.
func renewBeforeOf(tok *tokensv1alpha1.APIToken) time.Duration {
	r := tok.Spec.Rotation
	if r == nil || r.Lifetime == nil {
		return 0
	}
	if r.RenewBefore != nil {
		return r.RenewBefore.Duration
	}
	return r.Lifetime.Duration / 3
}

func GracePeriodOf(tok *tokensv1alpha1.APIToken) time.Duration {
	if r := tok.Spec.Rotation; r != nil && r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	return 0
}

func quietPeriodOf(tok *tokensv1alpha1.APIToken) (time.Duration, bool) {
	if r := tok.Spec.Rotation; r != nil && r.RetireWhenUnused != nil {
		return r.RetireWhenUnused.QuietPeriod.Duration, true
	}
	return 0, false
}

// RequestedBackendExpiry is the expiry to ask the backend for: issue time plus lifetime,
// never past spec.expiresAt.
func RequestedBackendExpiry(tok *tokensv1alpha1.APIToken, now time.Time) *time.Time {
	var out *time.Time
	if tok.Spec.ExpiresAt != nil {
		t := tok.Spec.ExpiresAt.UTC()
		out = &t
	}
	if l := LifetimeOf(tok); l > 0 {
		t := now.UTC().Truncate(anchorGrid(l)).Add(l)
		if out == nil || t.Before(*out) {
			out = &t
		}
	}
	return out
}

// RenewalTimeFor is when the successor of a token expiring on the backend at expiry is
// issued: renewBefore earlier, minus a spread that is fixed by the APIToken's UID and the
// issue serial (never a new random time per pass, which could put renewal off forever), so
// tokens created together do not all rotate in the same second. Nil when no renewal is
// due: no lifetime, or the expiry is spec.expiresAt itself (the end of the token's life).
func RenewalTimeFor(tok *tokensv1alpha1.APIToken, expiry *metav1.Time, issuedAt time.Time, serial int64) *metav1.Time {
	rb := renewBeforeOf(tok)
	if rb <= 0 || expiry == nil || (tok.Spec.ExpiresAt != nil && !expiry.Before(tok.Spec.ExpiresAt)) {
		return nil
	}
	life := expiry.Sub(issuedAt)
	at := expiry.Add(-rb - renewalSpread(tok.UID, serial, min(rb, LifetimeOf(tok)-rb)))
	// A renewBefore close to the lifetime (or a backend that cut the expiry short) must not
	// make each token renew at once: every token lives at least a tenth of its life.
	if floor := issuedAt.Add(life / 10); at.Before(floor) {
		at = floor
	}
	t := metav1.NewTime(at.UTC().Truncate(time.Second))
	return &t
}

// renewalSpread is a deterministic offset in [0, room/4): part of the slack renewBefore
// leaves for outages (room is the smaller of renewBefore and lifetime-renewBefore), used
// to spread renewals.
func renewalSpread(uid types.UID, serial int64, room time.Duration) time.Duration {
	span := room / 4
	if span < time.Second {
		return 0
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", uid, serial))
	return time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(span))
}

// renewalDue: scheduled rotation has reached the renewal time of the current token.
func renewalDue(in Inputs) bool {
	rt := in.Token.Status.RenewalTime
	return rt != nil && LifetimeOf(in.Token) > 0 && !in.Now.Before(rt.Time)
}

// overlapsFor says whether a replacement for this event keeps the old token working for the
// grace period. A token revoked on the backend is dead already, and a revocation request
// means the old value leaked: neither overlaps.
func overlapsFor(tok *tokensv1alpha1.APIToken, event string) bool {
	return GracePeriodOf(tok) > 0 && event == tokensv1alpha1.EventReplaced && RevocationRequested(tok) == ""
}

// Retirement is one predecessor to deactivate, and why.
type Retirement struct {
	TokenID string
	// Why finishes "Retired predecessor X because ...".
	Why string
	// StillInUse: it was used recently although its grace is over.
	StillInUse bool
}

// retirementsDue lists the predecessors to retire now: at retireAt (grace over, or backend
// expiry), or with retireWhenUnused once the successor is in use and the predecessor has
// been quiet for quietPeriod.
func retirementsDue(in Inputs) []Retirement {
	tok := in.Token
	quiet, whenUnused := quietPeriodOf(tok)
	// Both times have a precision of a second in status, and a token cannot be used before
	// its issue: a use in the second of the issue counts.
	successorUsed := tok.Status.LastUsedAt != nil && tok.Status.IssuedAt != nil && !tok.Status.LastUsedAt.Before(tok.Status.IssuedAt)
	var out []Retirement
	for _, p := range tok.Status.PreviousTokens {
		p = withUse(p, in.PredecessorUse)
		switch {
		case !in.Now.Before(p.RetireAt.Time):
			r := graceOver(p, stillInUseWindow(tok, quiet, whenUnused))
			if len(in.RolloutsPending) > 0 {
				r.StillInUse = true
				r.Why = fmt.Sprintf("its grace period is over, although %s had not finished rolling out the new token", strings.Join(in.RolloutsPending, ", "))
			}
			out = append(out, r)
		case len(in.RolloutsPending) > 0:
			// Workloads that opted in are still rolling out: even an unused predecessor waits.
		case whenUnused && successorUsed && !in.Now.Before(quietSince(p).Add(quiet)):
			out = append(out, Retirement{TokenID: p.TokenID, Why: fmt.Sprintf("the successor is in use and it has not been used for %s", quiet)})
		}
	}
	return out
}

// stillInUseWindow is how close to the end of its grace a predecessor's last use must be to
// count as "still in use": the quiet period (default 5 minutes), at most half the grace, so
// that a use right after the swap, which every consumer makes, does not count.
func stillInUseWindow(tok *tokensv1alpha1.APIToken, quiet time.Duration, whenUnused bool) time.Duration {
	if !whenUnused {
		quiet = defaultQuietForStillInUse
	}
	if g := GracePeriodOf(tok); g > 0 {
		quiet = min(quiet, g/2)
	}
	return quiet
}

func graceOver(p tokensv1alpha1.PreviousToken, window time.Duration) Retirement {
	used := p.LastUsedAt != nil && p.LastUsedAt.After(p.SupersededAt.Time) && !p.LastUsedAt.Time.Before(p.RetireAt.Add(-window))
	r := Retirement{TokenID: p.TokenID, Why: "its grace period is over", StillInUse: used}
	if used {
		r.Why = fmt.Sprintf("its grace period is over, although it was still used at %s: a consumer has not picked up the new value", p.LastUsedAt.UTC().Format(time.RFC3339))
	}
	return r
}

// withUse takes the later of the recorded and the inventory's last use of a predecessor.
func withUse(p tokensv1alpha1.PreviousToken, use map[string]*time.Time) tokensv1alpha1.PreviousToken {
	if t := use[p.TokenID]; t != nil && (p.LastUsedAt == nil || t.After(p.LastUsedAt.Time)) {
		m := metav1.NewTime(t.UTC().Truncate(time.Second))
		p.LastUsedAt = &m
	}
	return p
}

// quietSince is when the predecessor was last seen in use (or superseded, if later).
func quietSince(p tokensv1alpha1.PreviousToken) time.Time {
	if p.LastUsedAt != nil && p.LastUsedAt.After(p.SupersededAt.Time) {
		return p.LastUsedAt.Time
	}
	return p.SupersededAt.Time
}

// NextDeadline is the earliest time-driven step: expiry, renewal, a Retirement, or the end
// of a predecessor's quiet period.
func NextDeadline(tok *tokensv1alpha1.APIToken) time.Time {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	consider(expiryOf(tok))
	if LifetimeOf(tok) > 0 && tok.Status.RenewalTime != nil {
		consider(tok.Status.RenewalTime.Time)
	}
	quiet, whenUnused := quietPeriodOf(tok)
	for _, p := range tok.Status.PreviousTokens {
		consider(p.RetireAt.Time)
		if whenUnused {
			consider(quietSince(p).Add(quiet))
		}
	}
	return at
}
