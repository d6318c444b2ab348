package policy

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Ledger records, in the order the steps happen, every change a pass makes to which tokens an
// APIToken has: the issue serial, the current token, the draining predecessors, the tokens
// pending deactivation, and the recent issues. The action code keeps it and reads the pass's
// state from it; Report applies it to status on every path, failures included, so a serial
// advance or a pending entry always reaches the one status patch (the crash-safety walk above
// the issue code relies on that).
type Ledger struct {
	// st holds the token fields as the pass has left them so far.
	st tokensv1alpha1.APITokenStatus
	// events are the retirements and abandonments, in order.
	events []Event
	// usedAfterGrace counts the predecessors retired while still in use.
	usedAfterGrace int
}

// NewLedger starts a pass's ledger from the APIToken's status (copied). A token without a
// current token writes its Secret under the name the spec asks for.
func NewLedger(tok *tokensv1alpha1.APIToken) *Ledger {
	l := &Ledger{st: *tok.Status.DeepCopy()}
	if l.st.TokenID == "" {
		l.st.SecretName = tok.SecretNameOrDefault()
	}
	return l
}

// ledgerFields copies the fields a ledger owns from one status to another.
func ledgerFields(dst, src *tokensv1alpha1.APITokenStatus) {
	dst.IssueSerial = src.IssueSerial
	dst.TokenID, dst.TokenHint, dst.Permission = src.TokenID, src.TokenHint, src.Permission
	dst.IssuedAt, dst.ExpiresAt, dst.RequestedExpiresAt = src.IssuedAt, src.ExpiresAt, src.RequestedExpiresAt
	dst.LastUsedAt, dst.Backend, dst.SecretName, dst.RenewalTime = src.LastUsedAt, src.Backend, src.SecretName, src.RenewalTime
	dst.RotationHandled, dst.RevocationHandled, dst.AdoptedTokenID = src.RotationHandled, src.RevocationHandled, src.AdoptedTokenID
	dst.PreviousTokens, dst.PendingDeactivation, dst.RecentIssues = src.PreviousTokens, src.PendingDeactivation, src.RecentIssues
}

// apply writes the ledger's fields into st.
func (l *Ledger) apply(st *tokensv1alpha1.APITokenStatus) { ledgerFields(st, &l.st) }

// View is the pass's status as the ledger has it: to read, never to write.
func (l *Ledger) View() tokensv1alpha1.APITokenStatus { return l.st }

// CurrentKey is the backend that holds the current token (backendkey.Current of the ledger's
// view).
func (l *Ledger) CurrentKey(tok *tokensv1alpha1.APIToken) backendkey.Key {
	if l.st.Backend != nil {
		return backendkey.OfRef(*l.st.Backend)
	}
	return backendkey.For(tok)
}

// CurrentRef is the status form of CurrentKey.
func (l *Ledger) CurrentRef(tok *tokensv1alpha1.APIToken) tokensv1alpha1.BackendStatusReference {
	if l.st.Backend != nil {
		return *l.st.Backend
	}
	return backendkey.Ref(backendkey.For(tok), "")
}

// AdvanceSerial moves the issue serial to serial without a current token: after a reply
// that was refused or a Secret that could not be written, so that no retry replays a
// create whose token is deactivated.
func (l *Ledger) AdvanceSerial(serial int64) { l.st.IssueSerial = serial }

// RecordIssue appends a creation time and forgets those older than the window.
func (l *Ledger) RecordIssue(now time.Time, window time.Duration) {
	out := make([]metav1.Time, 0, len(l.st.RecentIssues)+1)
	for _, t := range l.st.RecentIssues {
		if now.Sub(t.Time) < window {
			out = append(out, t)
		}
	}
	out = append(out, metav1.NewTime(now.UTC().Truncate(time.Second)))
	if len(out) > 32 {
		out = out[len(out)-32:]
	}
	l.st.RecentIssues = out
}

// Issued is a token the backend created, now held by the Secret.
type Issued struct {
	Token   backend.Token
	Hint    string
	Backend tokensv1alpha1.BackendStatusReference
	Serial  int64
}

// Issue makes the new token the current one. The token it replaces is superseded first
// (Supersede), by the caller, who knows whether it overlaps.
func (l *Ledger) Issue(tok *tokensv1alpha1.APIToken, in Issued) {
	st := &l.st
	st.TokenID = in.Token.ID
	st.TokenHint = in.Hint
	st.Permission = APIPermission(in.Token.Permission)
	issuedAt := metav1.NewTime(in.Token.CreatedAt.UTC())
	st.IssuedAt = &issuedAt
	st.ExpiresAt = TimePtr(in.Token.ExpiresAt)
	st.RequestedExpiresAt = nil
	if tok.Spec.ExpiresAt != nil {
		t := metav1.NewTime(tok.Spec.ExpiresAt.UTC())
		st.RequestedExpiresAt = &t
	}
	st.LastUsedAt = nil
	st.IssueSerial = in.Serial
	ref := in.Backend
	st.Backend = &ref
	st.SecretName = tok.SecretNameOrDefault()
	st.RenewalTime = RenewalTimeFor(tok, st.ExpiresAt, in.Token.CreatedAt, in.Serial)
	if v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]; v != "" {
		st.RotationHandled = v
	}
	if v := tok.Annotations[tokensv1alpha1.AnnotationRevokeRequestedAt]; v != "" {
		st.RevocationHandled = v
	}
}

// Adopt makes an adopted token the current one. Its expiry counts as the one requested, so an
// expiry that differs from spec.expiresAt is replaced like a spec change.
func (l *Ledger) Adopt(tok *tokensv1alpha1.APIToken, self backend.Token, hint string, ref tokensv1alpha1.BackendStatusReference) {
	st := &l.st
	st.TokenID, st.AdoptedTokenID = self.ID, self.ID
	st.TokenHint = hint
	st.Permission = APIPermission(self.Permission)
	issued := metav1.NewTime(self.CreatedAt.UTC())
	st.IssuedAt = &issued
	st.ExpiresAt = TimePtr(self.ExpiresAt)
	st.RequestedExpiresAt = st.ExpiresAt
	st.LastUsedAt = TimePtr(self.LastUsedAt)
	st.Backend = &ref
	st.SecretName = tok.SecretNameOrDefault()
	if v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]; v != "" {
		st.RotationHandled = v
	}
}

// PredecessorOf describes the current token as a predecessor superseded at now: it drains for
// the grace period, never past its own backend expiry.
func (l *Ledger) PredecessorOf(tok *tokensv1alpha1.APIToken, now time.Time) tokensv1alpha1.PreviousToken {
	st := l.st
	retire := now.Add(GracePeriodOf(tok))
	if st.ExpiresAt != nil && st.ExpiresAt.Before(&metav1.Time{Time: retire}) {
		retire = st.ExpiresAt.Time
	}
	return tokensv1alpha1.PreviousToken{
		TokenID: st.TokenID, TokenHint: st.TokenHint, Permission: st.Permission, Backend: l.CurrentRef(tok), LastUsedAt: st.LastUsedAt,
		SupersededAt: metav1.NewTime(now.UTC().Truncate(time.Second)), RetireAt: metav1.NewTime(retire.UTC().Truncate(time.Second)),
	}
}

// Supersede lets a replaced token drain (overlap), a third one retiring the oldest at once;
// without overlap it goes straight to pending deactivation.
func (l *Ledger) Supersede(p tokensv1alpha1.PreviousToken, overlap bool) {
	if !overlap {
		l.AddPending(p.TokenID, p.Backend)
		return
	}
	l.st.PreviousTokens = append(l.st.PreviousTokens, p)
	for len(l.st.PreviousTokens) > MaxPreviousTokens {
		oldest := l.st.PreviousTokens[0]
		l.st.PreviousTokens = l.st.PreviousTokens[1:]
		l.AddPending(oldest.TokenID, oldest.Backend)
		l.event(corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because a newer replacement superseded it (at most %d drain at once)", oldest.TokenID, oldest.TokenHint, MaxPreviousTokens))
	}
}

// AddPending records a token to retire; recording it twice is a no-op.
func (l *Ledger) AddPending(id string, ref tokensv1alpha1.BackendStatusReference) {
	if id == "" {
		return
	}
	for _, p := range l.st.PendingDeactivation {
		if p.TokenID == id && backendkey.OfRef(p.Backend) == backendkey.OfRef(ref) {
			return
		}
	}
	l.st.PendingDeactivation = append(l.st.PendingDeactivation, tokensv1alpha1.RetiringToken{TokenID: id, Backend: ref})
}

// Retire moves the predecessors due for retirement to pending deactivation (the sweep that
// follows deactivates them) and says why in an Event each. One still in use when its grace
// ended is retired anyway, with a Warning naming it: a consumer never picked up the new value.
func (l *Ledger) Retire(due []Retirement) {
	for _, ret := range due {
		i := slices.IndexFunc(l.st.PreviousTokens, func(p tokensv1alpha1.PreviousToken) bool { return p.TokenID == ret.TokenID })
		if i < 0 {
			continue
		}
		p := l.st.PreviousTokens[i]
		l.st.PreviousTokens = slices.Delete(l.st.PreviousTokens, i, i+1)
		l.AddPending(p.TokenID, p.Backend)
		if ret.StillInUse {
			l.usedAfterGrace++
			l.event(corev1.EventTypeWarning, tokensv1alpha1.EventPredecessorStillInUse,
				fmt.Sprintf("Retired predecessor %s (%s) because %s. Find the workload still using it and make it read the Secret %s again.", p.TokenID, p.TokenHint, ret.Why, l.st.SecretName))
			continue
		}
		l.event(corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because %s", p.TokenID, p.TokenHint, ret.Why))
	}
	if len(l.st.PreviousTokens) == 0 {
		l.st.PreviousTokens = nil
	}
}

// RetireAll ends every overlap at once (deactivation, expiry, deletion, a policy, a
// revocation): no old value keeps working.
func (l *Ledger) RetireAll(why string) {
	for _, p := range l.st.PreviousTokens {
		l.AddPending(p.TokenID, p.Backend)
		l.event(corev1.EventTypeNormal, tokensv1alpha1.EventPredecessorRetired,
			fmt.Sprintf("Retired predecessor %s (%s) because %s", p.TokenID, p.TokenHint, why))
	}
	l.st.PreviousTokens = nil
}

// RetireCurrent moves the current token, too, to pending deactivation (everything goes).
func (l *Ledger) RetireCurrent(tok *tokensv1alpha1.APIToken) {
	if l.st.TokenID != "" {
		l.AddPending(l.st.TokenID, l.CurrentRef(tok))
	}
}

// HasPendingOn reports entries pending on the backend of key.
func (l *Ledger) HasPendingOn(key backendkey.Key) bool {
	return slices.ContainsFunc(l.st.PendingDeactivation, func(p tokensv1alpha1.RetiringToken) bool { return backendkey.OfRef(p.Backend) == key })
}

// RemovePendingOn drops the entries of one backend after a successful sweep of it (the sweep
// deactivated every active token of this APIToken there except keep).
func (l *Ledger) RemovePendingOn(key backendkey.Key, keep string) {
	l.st.PendingDeactivation = slices.DeleteFunc(l.st.PendingDeactivation, func(p tokensv1alpha1.RetiringToken) bool {
		return backendkey.OfRef(p.Backend) == key && p.TokenID != keep
	})
	if len(l.st.PendingDeactivation) == 0 {
		l.st.PendingDeactivation = nil
	}
}

// DropPendingOn gives up on the entries of a backend that no longer exists, with a Warning each.
func (l *Ledger) DropPendingOn(key backendkey.Key, why string) {
	for _, p := range l.st.PendingDeactivation {
		if backendkey.OfRef(p.Backend) == key {
			l.event(corev1.EventTypeWarning, tokensv1alpha1.EventDeactivationAbandoned,
				fmt.Sprintf("Token %s could not be deactivated because %s; it may still be active on that service until it expires", p.TokenID, why))
		}
	}
	l.RemovePendingOn(key, "")
}

// SetSecretName records that the token is in the Secret of that name (a renamed Secret, once
// the old one is gone).
func (l *Ledger) SetSecretName(name string) { l.st.SecretName = name }

// PendingIDs lists the tokens pending deactivation, for a message.
func (l *Ledger) PendingIDs() []string {
	ids := make([]string, 0, len(l.st.PendingDeactivation))
	for _, p := range l.st.PendingDeactivation {
		ids = append(ids, p.TokenID)
	}
	return ids
}

func (l *Ledger) event(typ, reason, note string) {
	l.events = append(l.events, Event{Type: typ, Reason: reason, Note: note})
}

// refreshPredecessorUse records the inventory's last use of each draining predecessor.
func refreshPredecessorUse(st *tokensv1alpha1.APITokenStatus, use map[string]*time.Time) {
	for i, p := range st.PreviousTokens {
		st.PreviousTokens[i] = withUse(p, use)
	}
}

// previousIDs are the ids of the draining predecessors.
func previousIDs(st tokensv1alpha1.APITokenStatus) []string {
	ids := make([]string, 0, len(st.PreviousTokens))
	for _, p := range st.PreviousTokens {
		ids = append(ids, p.TokenID)
	}
	return ids
}
