package policy

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// TestDecide covers the whole policy without a cluster: one row per situation.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	future := metav1.NewTime(now.Add(time.Hour))
	later := metav1.NewTime(now.Add(2 * time.Hour))
	past := metav1.NewTime(now.Add(-time.Second))
	issuedAt := metav1.NewTime(now.Add(-time.Hour))
	off := false
	value := []byte("sgt_value")

	// issued is an APIToken with an active ReadOnly token tok_1 in its Secret.
	issued := func(mut ...func(*tokensv1alpha1.APIToken)) *tokensv1alpha1.APIToken {
		tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"}}
		tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
		tok.Status = tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseActive, TokenID: "tok_1", Permission: tokensv1alpha1.PermissionReadOnly, IssuedAt: &issuedAt, IssueSerial: 1}
		for _, m := range mut {
			m(tok)
		}
		return tok
	}
	secretFor := func(tok *tokensv1alpha1.APIToken) *corev1.Secret {
		m := DesiredSecretMeta(tok, "http://b/api/v3", SecretTokenOf(tok))
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: m.Labels, Annotations: map[string]string{secretcache.AnnotationTokenSHA256: secretcache.HashToken(value)}}, Data: map[string][]byte{"token": value}}
		for k, v := range m.Annotations {
			s.Annotations[k] = v
		}
		for k, v := range m.Data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	ready := BackendState{Found: true, Ready: true, NamespacePolicy: NamespacePolicy{Allowed: true, FullAccessAllowed: true, RetainAllowed: true}, URL: "http://b/api/v3", Key: backendkey.Key{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}}
	defaultRef := tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
	// inv is what an inventory listing these active tokens says of the current token tok_1.
	inv := func(active ...string) InventoryFacts {
		f := InventoryFacts{Taken: true}
		for _, id := range active {
			if id == "tok_1" {
				f.Listed, f.Current = true, backend.Token{ID: id}
			}
		}
		return f
	}

	cases := []struct {
		name   string
		tok    *tokensv1alpha1.APIToken
		secret func(*tokensv1alpha1.APIToken) *corev1.Secret
		mutIn  func(*Inputs)
		action Action
		reason string
		why    string
		// overlap is checked for ActionIssue rows; requeue, when set, is the expected deadline.
		overlap bool
		requeue *metav1.Time
		// report, when set, is the status the decision reports; event, when set, the reason
		// of the event it emits ("none": no event).
		report ReportKind
		event  string
	}{
		{name: "new token is issued", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, action: ActionIssue, reason: tokensv1alpha1.ReasonIssued, report: ReportIssued, event: tokensv1alpha1.EventIssued},
		{name: "steady state does nothing", tok: issued(), secret: secretFor, action: ActionNone, report: ReportIssued, event: "none"},
		{name: "secret conflict fails first", tok: issued(), mutIn: func(in *Inputs) { in.SecretConflict = true; in.Secret = nil }, action: ActionFail, reason: tokensv1alpha1.ReasonSecretConflict, report: ReportStalled, event: tokensv1alpha1.EventFailed},
		{name: "missing backend fails", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.Found = false }, action: ActionFail, reason: tokensv1alpha1.ReasonBackendNotFound},
		{name: "namespace not allowed fails", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, mutIn: func(in *Inputs) { in.Backend.Allowed = false }, action: ActionFail, reason: tokensv1alpha1.ReasonNamespaceNotAllowed},
		{name: "active false deactivates", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off }), secret: secretFor, action: ActionDeactivate, report: ReportDeactivated, event: tokensv1alpha1.EventDeactivated},
		{name: "active false already done", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off; t.Status.Phase = tokensv1alpha1.PhaseInactive }), secret: secretFor, action: ActionNone, report: ReportDeactivated, event: "none"},
		{name: "reactivated issues", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Status.Phase = tokensv1alpha1.PhaseInactive }), secret: secretFor, action: ActionIssue, why: "inactive", report: ReportIssued, event: tokensv1alpha1.EventIssued},
		{name: "expiry reached expires", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &past; t.Status.ExpiresAt = &past }), secret: secretFor, action: ActionExpire, report: ReportExpired, event: tokensv1alpha1.EventExpired},
		{name: "expired stays expired", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &past
			t.Status.ExpiresAt = &past
			t.Status.Phase = tokensv1alpha1.PhaseInactive
		}), secret: secretFor, action: ActionNone},
		{name: "a backend not Ready is waited for", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, mutIn: func(in *Inputs) {
			in.Backend.Ready, in.Backend.Message = false, "not Ready yet"
		}, action: ActionWait, report: ReportProgressing, event: "none"},
		{name: "a backend not Ready does not stop a deactivation", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off }), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.Ready = false }, action: ActionDeactivate},
		{name: "adoption is carried out", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, Adopt: &tokensv1alpha1.AdoptSpec{TokenID: "tok_9"}}}, action: ActionAdopt, report: ReportIssued, event: "none"},
		{name: "adoption waits for the backend", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, Adopt: &tokensv1alpha1.AdoptSpec{TokenID: "tok_9"}}}, mutIn: func(in *Inputs) { in.Backend.Ready = false }, action: ActionWait},
		{name: "expiresAt in the past at creation", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, ExpiresAt: &past}}, action: ActionFail, reason: tokensv1alpha1.ReasonExpiresAtInPast},
		{name: "expiry in the future schedules a pass", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &future; t.Status.ExpiresAt = &future }), secret: secretFor, action: ActionNone},
		{name: "expiry moved later replaces", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &later; t.Status.ExpiresAt = &future }), secret: secretFor, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.expiresAt changed"},
		{name: "permission changed replaces", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.permission changed", report: ReportIssued, event: tokensv1alpha1.EventReplaced},
		{name: "rotation requested replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
		}), secret: secretFor, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "rotation"},
		{name: "handled rotation does nothing", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
			t.Status.RotationHandled = "r1"
		}), secret: secretFor, action: ActionNone},
		{name: "deleted secret replaces", tok: issued(), action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "was deleted"},
		{name: "edited token replaces", tok: issued(), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			s.Data["token"] = []byte("edited")
			return s
		}, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "was edited"},
		{name: "edited token id replaces", tok: issued(), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			s.Data["tokenID"] = []byte("tok_other")
			return s
		}, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "was edited"},
		{name: "revoked on backend replaces once confirmed", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Inventory = inv("tok_other"); in.RevokedConfirmed = true }, action: ActionIssue, reason: tokensv1alpha1.EventRevokedOnBackend, report: ReportIssued, event: tokensv1alpha1.EventRevokedOnBackend},
		{name: "missing from the inventory alone is not revoked", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Inventory = inv("tok_other") }, action: ActionNone},
		{name: "namespace no longer allowed revokes the token", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.Allowed = false }, action: ActionRevoke, reason: tokensv1alpha1.ReasonNamespaceNotAllowed, why: "deactivated", report: ReportFailed, event: tokensv1alpha1.EventPolicyDeactivated},
		{name: "FullAccess outside fullAccessNamespaces revokes", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionRevoke, reason: tokensv1alpha1.ReasonPermissionNotAllowed, why: "spec.permission: ReadOnly"},
		{name: "new FullAccess outside fullAccessNamespaces fails", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionFullAccess}}, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionFail, reason: tokensv1alpha1.ReasonPermissionNotAllowed},
		{name: "ReadOnly is fine outside fullAccessNamespaces", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionNone},
		{name: "a revoked policy failure stays failed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Phase = tokensv1alpha1.PhaseFailed
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonNamespaceNotAllowed}}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.Allowed = false }, action: ActionFail, reason: tokensv1alpha1.ReasonNamespaceNotAllowed, report: ReportStalled, event: "none"},
		{name: "allowed again issues a fresh token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Phase = tokensv1alpha1.PhaseFailed
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonNamespaceNotAllowed}}
		}), secret: secretFor, action: ActionIssue, why: "inactive"},
		{name: "namespaced backends turned off fail", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.Disabled = true }, action: ActionFail, reason: tokensv1alpha1.ReasonBackendNotFound, why: "--namespaced-backends"},
		{name: "pending deactivation is swept", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PendingDeactivation = []tokensv1alpha1.RetiringToken{{TokenID: "tok_0"}}
		}), secret: secretFor, action: ActionSweep, report: ReportIssued},
		{name: "an unlisted active token of this APIToken is swept", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Inventory.ExtraActive = []string{"tok_orphan"} }, action: ActionSweep},
		{name: "issuance budget spent stalls", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, mutIn: func(in *Inputs) {
			in.Budget, in.IssuesInWindow, in.WindowEnds = 5, 5, now.Add(time.Minute)
		}, action: ActionFail, reason: tokensv1alpha1.ReasonIssuanceLimited},
		{name: "issuance budget left issues", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, mutIn: func(in *Inputs) { in.Budget, in.IssuesInWindow = 5, 4 }, action: ActionIssue},
		{name: "a backend mismatch is not retried at the same generation", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Generation = 2
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendMismatch, ObservedGeneration: 2}}
		}), secret: secretFor, action: ActionFail, reason: tokensv1alpha1.ReasonBackendMismatch},
		{name: "a backend refusal is not retried at the same generation", tok: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseFailed, Conditions: []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendRejected, ObservedGeneration: 1}}}},
			action: ActionFail, reason: tokensv1alpha1.ReasonBackendRejected, report: ReportStalled, event: "none"},
		{name: "a backend refusal is retried after a spec change", tok: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseFailed, Conditions: []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendRejected, ObservedGeneration: 1}}}},
			action: ActionIssue},
		{name: "a backend mismatch is retried after a spec change", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Generation = 3
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendMismatch, ObservedGeneration: 2}}
		}), secret: secretFor, action: ActionIssue},
		{name: "backendRef changed replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "ns", Name: "mine"}
		}), secret: secretFor, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.backendRef changed"},
		{name: "backend recreated under the same name replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default", UID: "old"}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.UID = "new" }, action: ActionIssue, why: "spec.backendRef changed"},
		{name: "an expiry the backend capped is accepted once", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &later
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
			t.Status.RequestedExpiresAt = &later
			t.Status.ExpiresAt = &future
		}), secret: secretFor, action: ActionNone},
		{name: "a null expiry from the backend is accepted once", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &later
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
			t.Status.RequestedExpiresAt = &later
		}), secret: secretFor, action: ActionNone},
		{name: "scheduled renewal due replaces with overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Minute}}
			t.Status.RenewalTime = &past
		}), secret: secretFor, action: ActionIssue, reason: tokensv1alpha1.EventReplaced, why: "scheduled rotation", overlap: true},
		{name: "renewal not yet due waits for it", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: time.Hour}}
			t.Status.RenewalTime = &future
		}), secret: secretFor, action: ActionNone, requeue: &future},
		{name: "rotation without grace does not overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
		}), secret: secretFor, action: ActionIssue, overlap: false},
		{name: "revocation requested replaces without overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRevokeRequestedAt: "leak"}
		}), secret: secretFor, action: ActionIssue, why: "may have leaked", overlap: false},
		{name: "handled revocation does nothing", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRevokeRequestedAt: "leak"}
			t.Status.RevocationHandled = "leak"
		}), secret: secretFor, action: ActionNone},
		{name: "a predecessor past its grace is retired", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: past}}
		}), secret: secretFor, action: ActionRetire, report: ReportIssued},
		{name: "a draining predecessor schedules its retirement", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, action: ActionNone, requeue: &future},
		{name: "a draining predecessor is not an unlisted token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) {
			// Listing both: inventory.ExtraActive leaves the draining predecessor out
			// (inventory's TestExtraActiveLeavesStatusTokensOut), so nothing is extra.
			in.Inventory = inv("tok_1", "tok_0")
		}, action: ActionNone},
		// Issue 27, finding 3: where FullAccess is not allowed, no FullAccess token drains.
		{name: "a FullAccess predecessor is retired at once where FullAccess is no longer allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: 100 * time.Hour}}
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionFullAccess, Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionRetire, why: "", requeue: &metav1.Time{Time: now}},
		{name: "a ReadOnly predecessor drains where FullAccess is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionReadOnly, Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionNone, requeue: &future},
		{name: "a FullAccess predecessor drains where FullAccess is allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionFullAccess, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, action: ActionNone, requeue: &future},
		{name: "a predecessor of unknown permission counts as FullAccess where that is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionRetire},
		{name: "a predecessor of unknown permission the inventory lists ReadOnly drains", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) {
			in.Backend.FullAccessAllowed = false
			in.PredecessorPermission = map[string]tokensv1alpha1.Permission{"tok_0": tokensv1alpha1.PermissionReadOnly}
		}, action: ActionNone},
		{name: "an adopted FullAccess token is replaced without overlap where FullAccess is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, mutIn: func(in *Inputs) { in.Backend.FullAccessAllowed = false }, action: ActionIssue, why: "spec.permission changed", overlap: false},
		{name: "a switch from FullAccess to ReadOnly overlaps where FullAccess is allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, action: ActionIssue, why: "spec.permission changed", overlap: true},
		// Finding 4: a predecessor seen inactive leaves status.
		{name: "a predecessor the inventory no longer lists leaves status", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionReadOnly, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *Inputs) { in.PredecessorsInactive = []string{"tok_0"} }, action: ActionRetire},
		// Finding 9: Retain needs the backend's consent; refused, the token works and the APIToken is Stalled.
		{name: "a refused Retain of a FullAccess token stalls and keeps the token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Permission, t.Status.Permission = tokensv1alpha1.PermissionFullAccess, tokensv1alpha1.PermissionFullAccess
			t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
		}), secret: secretFor, action: ActionNone, report: ReportIssued, event: tokensv1alpha1.EventFailed},
		{name: "Retain of a ReadOnly token is allowed by default", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
		}), secret: secretFor, action: ActionNone, report: ReportIssued, event: "none"},
		{name: "secretName changed issues into the new Secret", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Status.SecretName = "old-name" }), action: ActionIssue, why: "spec.secretName changed"},
		{name: "listed on backend is fine", tok: issued(), secret: secretFor, mutIn: func(in *Inputs) { in.Inventory = inv("tok_1") }, action: ActionNone},
		{name: "inventory older than the token is ignored", tok: issued(func(t *tokensv1alpha1.APIToken) { n := metav1.NewTime(now.Add(-time.Second)); t.Status.IssuedAt = &n }), secret: secretFor, mutIn: func(in *Inputs) { in.Inventory = inv() }, action: ActionNone},
		{name: "stale secret labels are updated", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.SecretTemplate = &tokensv1alpha1.SecretTemplate{Labels: map[string]tokensv1alpha1.LabelValue{"team": "a"}}
		}), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			delete(s.Labels, "team")
			return s
		}, action: ActionUpdateSecret, report: ReportIssued, event: "none"},
	}
	seen := map[Action]bool{}
	for _, tc := range cases {
		seen[tc.action] = true
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := Inputs{Now: now, Token: tc.tok, Backend: ready}
			if tc.secret != nil {
				in.Secret = tc.secret(tc.tok)
			}
			if tc.mutIn != nil {
				tc.mutIn(&in)
			}
			d := Decide(in)
			g.Expect(d.Action).To(Equal(tc.action), "why: %s", d.Why)
			if tc.reason != "" {
				g.Expect(d.Reason).To(Equal(tc.reason))
			}
			if tc.why != "" {
				g.Expect(d.Why).To(ContainSubstring(tc.why))
			}
			if tc.action == ActionIssue {
				g.Expect(d.Overlap).To(Equal(tc.overlap), "overlap")
			}
			if tc.report != ReportNone {
				g.Expect(d.Report.Kind).To(Equal(tc.report), "report")
				if tc.report == ReportIssued {
					refused := tc.tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain && tc.tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess
					g.Expect(d.Report.Reason == tokensv1alpha1.ReasonRetainNotAllowed).To(Equal(refused), "RetainNotAllowed reported: %q", d.Report.Message)
				}
				if tc.report == ReportStalled || tc.report == ReportFailed {
					g.Expect(d.Report.Reason).To(Equal(d.Reason))
					g.Expect(d.Report.Message).To(Equal(d.Why))
				}
			}
			switch tc.event {
			case "":
			case "none":
				g.Expect(d.Event).To(BeNil(), "no event")
			default:
				g.Expect(d.Event).NotTo(BeNil(), "an event")
				g.Expect(d.Event.Reason).To(Equal(tc.event))
			}
			if tc.requeue != nil {
				g.Expect(d.RequeueAt).To(Equal(tc.requeue.Time), "the next deadline is scheduled, not polled")
			}
			if tc.tok.Spec.ExpiresAt != nil && tc.action == ActionNone && tc.tok.Status.Phase == tokensv1alpha1.PhaseActive {
				g.Expect(d.RequeueAt).To(Equal(tc.tok.Spec.ExpiresAt.Time), "expiry is scheduled, not polled")
			}
		})
	}
	for a := ActionNone; a <= ActionAdopt; a++ {
		if !seen[a] {
			t.Errorf("no row decides action %d", a)
		}
	}
}

// TestIssuedNote: the issue event names the new token, and the old one when it replaces.
func TestIssuedNote(t *testing.T) {
	g := NewWithT(t)
	st := tokensv1alpha1.APITokenStatus{TokenID: "tok_2", TokenHint: "…ab12", SecretName: "s", Permission: tokensv1alpha1.PermissionReadOnly}
	first := issueEvent(&tokensv1alpha1.APIToken{}, Decision{Action: ActionIssue, Reason: tokensv1alpha1.EventIssued})
	g.Expect(IssuedNote(first, "", st)).To(Equal("Issued ReadOnly token tok_2 (…ab12) into Secret s"))
	old := &tokensv1alpha1.APIToken{Status: tokensv1alpha1.APITokenStatus{TokenID: "tok_1"}}
	repl := issueEvent(old, Decision{Action: ActionIssue, Reason: tokensv1alpha1.EventReplaced, Why: "spec.permission changed"})
	g.Expect(IssuedNote(repl, "tok_1", st)).To(Equal("Replaced token tok_1 with tok_2 because spec.permission changed"))
	rev := issueEvent(old, Decision{Action: ActionIssue, Reason: tokensv1alpha1.EventRevokedOnBackend})
	g.Expect(rev.Type).To(Equal(corev1.EventTypeWarning))
	g.Expect(IssuedNote(rev, "tok_1", st)).To(ContainSubstring("tok_1 was revoked on the backend; issued tok_2"))
}
