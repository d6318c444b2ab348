package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
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
		m := desiredSecretMeta(tok, "http://b/api/v3", secretTokenOf(tok))
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: m.labels, Annotations: map[string]string{annotationTokenSHA256: hashToken(value)}}, Data: map[string][]byte{"token": value}}
		for k, v := range m.annotations {
			s.Annotations[k] = v
		}
		for k, v := range m.data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	ready := backendState{found: true, ready: true, namespacePolicy: namespacePolicy{allowed: true, fullAccessAllowed: true, retainAllowed: true}, url: "http://b/api/v3", key: BackendKey{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}}
	defaultRef := tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
	inv := func(active ...string) *inventorySnapshot {
		s := &inventorySnapshot{takenAt: now, active: map[string]inventoryEntry{}}
		for _, id := range active {
			s.active[id] = inventoryEntry{}
		}
		return s
	}

	cases := []struct {
		name   string
		tok    *tokensv1alpha1.APIToken
		secret func(*tokensv1alpha1.APIToken) *corev1.Secret
		mutIn  func(*tokenInputs)
		action actionKind
		reason string
		why    string
		// overlap is checked for actionIssue rows; requeue, when set, is the expected deadline.
		overlap bool
		requeue *metav1.Time
		// report, when set, is the status the decision reports; event, when set, the reason
		// of the event it emits ("none": no event).
		report reportKind
		event  string
	}{
		{name: "new token is issued", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, action: actionIssue, reason: tokensv1alpha1.ReasonIssued, report: reportIssued, event: tokensv1alpha1.EventIssued},
		{name: "steady state does nothing", tok: issued(), secret: secretFor, action: actionNone, report: reportIssued, event: "none"},
		{name: "secret conflict fails first", tok: issued(), mutIn: func(in *tokenInputs) { in.secretConflict = true; in.secret = nil }, action: actionFail, reason: tokensv1alpha1.ReasonSecretConflict, report: reportStalled, event: tokensv1alpha1.EventFailed},
		{name: "missing backend fails", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.found = false }, action: actionFail, reason: tokensv1alpha1.ReasonBackendNotFound},
		{name: "namespace not allowed fails", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, mutIn: func(in *tokenInputs) { in.backend.allowed = false }, action: actionFail, reason: tokensv1alpha1.ReasonNamespaceNotAllowed},
		{name: "active false deactivates", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off }), secret: secretFor, action: actionDeactivate, report: reportDeactivated, event: tokensv1alpha1.EventDeactivated},
		{name: "active false already done", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off; t.Status.Phase = tokensv1alpha1.PhaseInactive }), secret: secretFor, action: actionNone, report: reportDeactivated, event: "none"},
		{name: "reactivated issues", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Status.Phase = tokensv1alpha1.PhaseInactive }), secret: secretFor, action: actionIssue, why: "inactive", report: reportIssued, event: tokensv1alpha1.EventIssued},
		{name: "expiry reached expires", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &past; t.Status.ExpiresAt = &past }), secret: secretFor, action: actionExpire, report: reportExpired, event: tokensv1alpha1.EventExpired},
		{name: "expired stays expired", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &past
			t.Status.ExpiresAt = &past
			t.Status.Phase = tokensv1alpha1.PhaseInactive
		}), secret: secretFor, action: actionNone},
		{name: "a backend not Ready is waited for", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly}}, mutIn: func(in *tokenInputs) {
			in.backend.ready, in.backend.message = false, "not Ready yet"
		}, action: actionWait, report: reportProgressing, event: "none"},
		{name: "a backend not Ready does not stop a deactivation", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Active = &off }), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.ready = false }, action: actionDeactivate},
		{name: "adoption is carried out", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, Adopt: &tokensv1alpha1.AdoptSpec{TokenID: "tok_9"}}}, action: actionAdopt, report: reportIssued, event: "none"},
		{name: "adoption waits for the backend", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, Adopt: &tokensv1alpha1.AdoptSpec{TokenID: "tok_9"}}}, mutIn: func(in *tokenInputs) { in.backend.ready = false }, action: actionWait},
		{name: "expiresAt in the past at creation", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly, ExpiresAt: &past}}, action: actionFail, reason: tokensv1alpha1.ReasonExpiresAtInPast},
		{name: "expiry in the future schedules a pass", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &future; t.Status.ExpiresAt = &future }), secret: secretFor, action: actionNone},
		{name: "expiry moved later replaces", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.ExpiresAt = &later; t.Status.ExpiresAt = &future }), secret: secretFor, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.expiresAt changed"},
		{name: "permission changed replaces", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.permission changed", report: reportIssued, event: tokensv1alpha1.EventReplaced},
		{name: "rotation requested replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
		}), secret: secretFor, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "rotation"},
		{name: "handled rotation does nothing", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
			t.Status.RotationHandled = "r1"
		}), secret: secretFor, action: actionNone},
		{name: "deleted secret replaces", tok: issued(), action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "was deleted"},
		{name: "edited token replaces", tok: issued(), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			s.Data["token"] = []byte("edited")
			return s
		}, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "was edited"},
		{name: "edited token id replaces", tok: issued(), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			s.Data["tokenID"] = []byte("tok_other")
			return s
		}, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "was edited"},
		{name: "revoked on backend replaces once confirmed", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.inventory = inv("tok_other"); in.revokedConfirmed = true }, action: actionIssue, reason: tokensv1alpha1.EventRevokedOnBackend, report: reportIssued, event: tokensv1alpha1.EventRevokedOnBackend},
		{name: "missing from the inventory alone is not revoked", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.inventory = inv("tok_other") }, action: actionNone},
		{name: "namespace no longer allowed revokes the token", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.allowed = false }, action: actionRevoke, reason: tokensv1alpha1.ReasonNamespaceNotAllowed, why: "deactivated", report: reportFailed, event: tokensv1alpha1.EventPolicyDeactivated},
		{name: "FullAccess outside fullAccessNamespaces revokes", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionRevoke, reason: tokensv1alpha1.ReasonPermissionNotAllowed, why: "spec.permission: ReadOnly"},
		{name: "new FullAccess outside fullAccessNamespaces fails", tok: &tokensv1alpha1.APIToken{Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionFullAccess}}, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionFail, reason: tokensv1alpha1.ReasonPermissionNotAllowed},
		{name: "ReadOnly is fine outside fullAccessNamespaces", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionNone},
		{name: "a revoked policy failure stays failed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Phase = tokensv1alpha1.PhaseFailed
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonNamespaceNotAllowed}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.allowed = false }, action: actionFail, reason: tokensv1alpha1.ReasonNamespaceNotAllowed, report: reportStalled, event: "none"},
		{name: "allowed again issues a fresh token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Phase = tokensv1alpha1.PhaseFailed
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonNamespaceNotAllowed}}
		}), secret: secretFor, action: actionIssue, why: "inactive"},
		{name: "namespaced backends turned off fail", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.disabled = true }, action: actionFail, reason: tokensv1alpha1.ReasonBackendNotFound, why: "--namespaced-backends"},
		{name: "pending deactivation is swept", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PendingDeactivation = []tokensv1alpha1.RetiringToken{{TokenID: "tok_0"}}
		}), secret: secretFor, action: actionSweep, report: reportIssued},
		{name: "an unlisted active token of this APIToken is swept", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.extraActive = []string{"tok_orphan"} }, action: actionSweep},
		{name: "issuance budget spent stalls", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, mutIn: func(in *tokenInputs) {
			in.budget, in.issuesInWindow, in.windowEnds = 5, 5, now.Add(time.Minute)
		}, action: actionFail, reason: tokensv1alpha1.ReasonIssuanceLimited},
		{name: "issuance budget left issues", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Spec.Permission = tokensv1alpha1.PermissionFullAccess }), secret: secretFor, mutIn: func(in *tokenInputs) { in.budget, in.issuesInWindow = 5, 4 }, action: actionIssue},
		{name: "a backend mismatch is not retried at the same generation", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Generation = 2
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendMismatch, ObservedGeneration: 2}}
		}), secret: secretFor, action: actionFail, reason: tokensv1alpha1.ReasonBackendMismatch},
		{name: "a backend refusal is not retried at the same generation", tok: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseFailed, Conditions: []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendRejected, ObservedGeneration: 1}}}},
			action: actionFail, reason: tokensv1alpha1.ReasonBackendRejected, report: reportStalled, event: "none"},
		{name: "a backend refusal is retried after a spec change", tok: &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseFailed, Conditions: []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendRejected, ObservedGeneration: 1}}}},
			action: actionIssue},
		{name: "a backend mismatch is retried after a spec change", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Generation = 3
			t.Spec.Permission = tokensv1alpha1.PermissionFullAccess
			t.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonBackendMismatch, ObservedGeneration: 2}}
		}), secret: secretFor, action: actionIssue},
		{name: "backendRef changed replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Namespace: "ns", Name: "mine"}
		}), secret: secretFor, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.backendRef changed"},
		{name: "backend recreated under the same name replaces", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default", UID: "old"}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.uid = "new" }, action: actionIssue, why: "spec.backendRef changed"},
		{name: "an expiry the backend capped is accepted once", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &later
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
			t.Status.RequestedExpiresAt = &later
			t.Status.ExpiresAt = &future
		}), secret: secretFor, action: actionNone},
		{name: "a null expiry from the backend is accepted once", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.ExpiresAt = &later
			t.Status.Backend = &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default"}
			t.Status.RequestedExpiresAt = &later
		}), secret: secretFor, action: actionNone},
		{name: "scheduled renewal due replaces with overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Minute}}
			t.Status.RenewalTime = &past
		}), secret: secretFor, action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "scheduled rotation", overlap: true},
		{name: "renewal not yet due waits for it", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: time.Hour}}
			t.Status.RenewalTime = &future
		}), secret: secretFor, action: actionNone, requeue: &future},
		{name: "rotation without grace does not overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRotateRequestedAt: "r1"}
		}), secret: secretFor, action: actionIssue, overlap: false},
		{name: "revocation requested replaces without overlap", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRevokeRequestedAt: "leak"}
		}), secret: secretFor, action: actionIssue, why: "may have leaked", overlap: false},
		{name: "handled revocation does nothing", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Annotations = map[string]string{tokensv1alpha1.AnnotationRevokeRequestedAt: "leak"}
			t.Status.RevocationHandled = "leak"
		}), secret: secretFor, action: actionNone},
		{name: "a predecessor past its grace is retired", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: past}}
		}), secret: secretFor, action: actionRetire, report: reportIssued},
		{name: "a draining predecessor schedules its retirement", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, action: actionNone, requeue: &future},
		{name: "a draining predecessor is not an unlisted token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) {
			in.inventory = &inventorySnapshot{takenAt: now, active: map[string]inventoryEntry{"tok_1": {}, "tok_0": {}}, byExternalID: map[string][]string{"": {"tok_1", "tok_0"}}}
			in.extraActive = extraActiveTokens(in.token, in.inventory)
		}, action: actionNone},
		// Issue 27, finding 3: where FullAccess is not allowed, no FullAccess token drains.
		{name: "a FullAccess predecessor is retired at once where FullAccess is no longer allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: 100 * time.Hour}}
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionFullAccess, Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionRetire, why: "", requeue: &metav1.Time{Time: now}},
		{name: "a ReadOnly predecessor drains where FullAccess is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionReadOnly, Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionNone, requeue: &future},
		{name: "a FullAccess predecessor drains where FullAccess is allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionFullAccess, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, action: actionNone, requeue: &future},
		{name: "a predecessor of unknown permission counts as FullAccess where that is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionRetire},
		{name: "a predecessor of unknown permission the inventory lists ReadOnly drains", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Backend: defaultRef, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) {
			in.backend.fullAccessAllowed = false
			in.predecessorPermission = map[string]tokensv1alpha1.Permission{"tok_0": tokensv1alpha1.PermissionReadOnly}
		}, action: actionNone},
		{name: "an adopted FullAccess token is replaced without overlap where FullAccess is not allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.backend.fullAccessAllowed = false }, action: actionIssue, why: "spec.permission changed", overlap: false},
		{name: "a switch from FullAccess to ReadOnly overlaps where FullAccess is allowed", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			t.Status.Permission = tokensv1alpha1.PermissionFullAccess
		}), secret: secretFor, action: actionIssue, why: "spec.permission changed", overlap: true},
		// Finding 4: a predecessor seen inactive leaves status.
		{name: "a predecessor the inventory no longer lists leaves status", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "tok_0", Permission: tokensv1alpha1.PermissionReadOnly, SupersededAt: issuedAt, RetireAt: future}}
		}), secret: secretFor, mutIn: func(in *tokenInputs) { in.predecessorsInactive = []string{"tok_0"} }, action: actionRetire},
		// Finding 9: Retain needs the backend's consent; refused, the token works and the APIToken is Stalled.
		{name: "a refused Retain of a FullAccess token stalls and keeps the token", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.Permission, t.Status.Permission = tokensv1alpha1.PermissionFullAccess, tokensv1alpha1.PermissionFullAccess
			t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
		}), secret: secretFor, action: actionNone, report: reportIssued, event: tokensv1alpha1.EventFailed},
		{name: "Retain of a ReadOnly token is allowed by default", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyRetain
		}), secret: secretFor, action: actionNone, report: reportIssued, event: "none"},
		{name: "secretName changed issues into the new Secret", tok: issued(func(t *tokensv1alpha1.APIToken) { t.Status.SecretName = "old-name" }), action: actionIssue, why: "spec.secretName changed"},
		{name: "listed on backend is fine", tok: issued(), secret: secretFor, mutIn: func(in *tokenInputs) { in.inventory = inv("tok_1") }, action: actionNone},
		{name: "inventory older than the token is ignored", tok: issued(func(t *tokensv1alpha1.APIToken) { n := metav1.NewTime(now.Add(-time.Second)); t.Status.IssuedAt = &n }), secret: secretFor, mutIn: func(in *tokenInputs) { in.inventory = inv() }, action: actionNone},
		{name: "stale secret labels are updated", tok: issued(func(t *tokensv1alpha1.APIToken) {
			t.Spec.SecretTemplate = &tokensv1alpha1.SecretTemplate{Labels: map[string]tokensv1alpha1.LabelValue{"team": "a"}}
		}), secret: func(t *tokensv1alpha1.APIToken) *corev1.Secret {
			s := secretFor(t)
			delete(s.Labels, "team")
			return s
		}, action: actionUpdateSecret, report: reportIssued, event: "none"},
	}
	seen := map[actionKind]bool{}
	for _, tc := range cases {
		seen[tc.action] = true
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := tokenInputs{now: now, token: tc.tok, backend: ready}
			if tc.secret != nil {
				in.secret = tc.secret(tc.tok)
			}
			if tc.mutIn != nil {
				tc.mutIn(&in)
			}
			d := decide(in)
			g.Expect(d.action).To(Equal(tc.action), "why: %s", d.why)
			if tc.reason != "" {
				g.Expect(d.reason).To(Equal(tc.reason))
			}
			if tc.why != "" {
				g.Expect(d.why).To(ContainSubstring(tc.why))
			}
			if tc.action == actionIssue {
				g.Expect(d.overlap).To(Equal(tc.overlap), "overlap")
			}
			if tc.report != reportNone {
				g.Expect(d.report.kind).To(Equal(tc.report), "report")
				if tc.report == reportIssued {
					refused := tc.tok.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain && tc.tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess
					g.Expect(d.report.reason == tokensv1alpha1.ReasonRetainNotAllowed).To(Equal(refused), "RetainNotAllowed reported: %q", d.report.message)
				}
				if tc.report == reportStalled || tc.report == reportFailed {
					g.Expect(d.report.reason).To(Equal(d.reason))
					g.Expect(d.report.message).To(Equal(d.why))
				}
			}
			switch tc.event {
			case "":
			case "none":
				g.Expect(d.event).To(BeNil(), "no event")
			default:
				g.Expect(d.event).NotTo(BeNil(), "an event")
				g.Expect(d.event.reason).To(Equal(tc.event))
			}
			if tc.requeue != nil {
				g.Expect(d.requeueAt).To(Equal(tc.requeue.Time), "the next deadline is scheduled, not polled")
			}
			if tc.tok.Spec.ExpiresAt != nil && tc.action == actionNone && tc.tok.Status.Phase == tokensv1alpha1.PhaseActive {
				g.Expect(d.requeueAt).To(Equal(tc.tok.Spec.ExpiresAt.Time), "expiry is scheduled, not polled")
			}
		})
	}
	for a := actionNone; a <= actionAdopt; a++ {
		if !seen[a] {
			t.Errorf("no row decides action %d", a)
		}
	}
}

// TestIssuedNote: the issue event names the new token, and the old one when it replaces.
func TestIssuedNote(t *testing.T) {
	g := NewWithT(t)
	st := tokensv1alpha1.APITokenStatus{TokenID: "tok_2", TokenHint: "…ab12", SecretName: "s", Permission: tokensv1alpha1.PermissionReadOnly}
	first := issueEvent(&tokensv1alpha1.APIToken{}, decision{action: actionIssue, reason: tokensv1alpha1.EventIssued})
	g.Expect(issuedNote(first, "", st)).To(Equal("Issued ReadOnly token tok_2 (…ab12) into Secret s"))
	old := &tokensv1alpha1.APIToken{Status: tokensv1alpha1.APITokenStatus{TokenID: "tok_1"}}
	repl := issueEvent(old, decision{action: actionIssue, reason: tokensv1alpha1.EventReplaced, why: "spec.permission changed"})
	g.Expect(issuedNote(repl, "tok_1", st)).To(Equal("Replaced token tok_1 with tok_2 because spec.permission changed"))
	rev := issueEvent(old, decision{action: actionIssue, reason: tokensv1alpha1.EventRevokedOnBackend})
	g.Expect(rev.typ).To(Equal(corev1.EventTypeWarning))
	g.Expect(issuedNote(rev, "tok_1", st)).To(ContainSubstring("tok_1 was revoked on the backend; issued tok_2"))
}
