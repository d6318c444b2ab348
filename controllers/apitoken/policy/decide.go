package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/controllers/secretcache"
)

// Action is what the pass must do.
type Action int

const (
	// ActionNone: the token is as the spec asks; only the status may need refreshing.
	ActionNone Action = iota
	// ActionIssue: issue a token (first, or replacing the current one).
	ActionIssue
	// ActionDeactivate: spec.active is false and the current token is still active.
	ActionDeactivate
	// ActionExpire: spec.expiresAt has passed; deactivate and report Expired.
	ActionExpire
	// ActionFail: a person must change something; nothing is issued.
	ActionFail
	// ActionWait: the backend is not Ready; wait for it (a watch wakes us).
	ActionWait
	// ActionUpdateSecret: the token is fine but the Secret's metadata or keys are stale.
	ActionUpdateSecret
	// ActionSweep: the token is fine, but tokens listed in status.pendingDeactivation, or
	// active tokens of this APIToken that status does not name, must be deactivated.
	ActionSweep
	// ActionRevoke: a backend policy no longer allows the token: deactivate every token of
	// this APIToken, then report the reason as a failure.
	ActionRevoke
	// ActionRetire: predecessors in status.previousTokens are due to be deactivated.
	ActionRetire
	// ActionAdopt: verify, claim and store the existing token spec.adopt names.
	ActionAdopt
)

// Decision is the outcome of Decide: the action, the status to report once it is carried
// out, and the event to emit then, if any.
type Decision struct {
	Action Action
	// Report is the status once the action is done. A backend step that fails or has to wait
	// reports a failure or the pending deactivations instead (the Outcome says which).
	Report ReportSpec
	// Event is the Event to emit once the action is done; nil for none. For ActionIssue its
	// note is the reason for the new token, which IssuedNote completes with the new token's
	// id (unknown before the create).
	Event *Event
	// Reason is the condition reason for ActionFail, or the event reason for ActionIssue
	// (EventIssued for a first token, EventReplaced or EventRevokedOnBackend for a replacement).
	Reason string
	// Why is a sentence: why a token is issued again, or why it failed.
	Why string
	// RequeueAt is when the next time-driven step is due (expiry, renewal, retirement);
	// zero for none.
	RequeueAt time.Time
	// Overlap: the replaced token keeps working for spec.rotation.gracePeriod.
	Overlap bool
	// Retire lists the predecessors to retire now (ActionRetire).
	Retire []Retirement
}

// Event is an Event to emit on the APIToken.
type Event struct {
	Type, Reason, Note string
}

// Decide is the whole policy of the APIToken controller: the action, in order of
// precedence (chooseAction), the backend-not-ready override, and the status and event that
// go with the outcome (withOutcome).
func Decide(in Inputs) Decision {
	d := chooseAction(in)
	if (d.Action == ActionIssue || d.Action == ActionAdopt) && !in.Backend.Ready {
		d = Decision{Action: ActionWait}
	}
	return withOutcome(in, d)
}

// withOutcome adds to an action the status to report and the event to emit.
func withOutcome(in Inputs, d Decision) Decision {
	tok := in.Token
	switch d.Action {
	case ActionFail:
		d.Report = ReportSpec{Kind: ReportStalled, Reason: d.Reason, Message: d.Why}
		// Failed is emitted once per reason, not on every pass that finds it unchanged.
		if c := ReadyCondition(tok); c == nil || c.Reason != d.Reason {
			d.Event = &Event{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, d.Why}
		}
	case ActionWait:
		d.Report = ReportSpec{Kind: ReportProgressing, Reason: tokensv1alpha1.ReasonBackendNotReady, Message: in.Backend.Message}
	case ActionIssue:
		d.Report = ReportSpec{Kind: ReportIssued}
		d.Event = issueEvent(tok, d)
	case ActionAdopt:
		// adoptToken emits Adopted or the refusal: both name what the verification found.
		d.Report = ReportSpec{Kind: ReportIssued}
	case ActionDeactivate:
		d.Report = ReportSpec{Kind: ReportDeactivated}
		d.Event = &Event{corev1.EventTypeNormal, tokensv1alpha1.EventDeactivated,
			fmt.Sprintf("Deactivated token %s because spec.active is false", tok.Status.TokenID)}
	case ActionExpire:
		d.Report = ReportSpec{Kind: ReportExpired}
		d.Event = &Event{corev1.EventTypeNormal, tokensv1alpha1.EventExpired,
			fmt.Sprintf("Token %s expired at %s and was deactivated", tok.Status.TokenID, FormatTime(tok.Spec.ExpiresAt))}
	case ActionRevoke:
		d.Report = ReportSpec{Kind: ReportFailed, Reason: d.Reason, Message: d.Why}
		d.Event = &Event{corev1.EventTypeWarning, tokensv1alpha1.EventPolicyDeactivated, d.Why}
	default:
		d.Report = steadyReport(tok)
	}
	if d.Report.Kind == ReportIssued {
		if why := RetainRefused(in); why != "" {
			d.Report.Reason, d.Report.Message = tokensv1alpha1.ReasonRetainNotAllowed, why
			if c := ReadyCondition(tok); (c == nil || c.Reason != tokensv1alpha1.ReasonRetainNotAllowed) && d.Event == nil {
				d.Event = &Event{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, why}
			}
		}
	}
	return d
}

// retainRefused says why spec.deletionPolicy Retain is refused for this token, or "". A
// retained token outlives every policy (a namespace losing FullAccess reaches it no more), so
// the backend's admin decides who may retain, and a FullAccess token by default nobody.
func RetainRefused(in Inputs) string {
	tok := in.Token
	if tok.Spec.DeletionPolicy != tokensv1alpha1.DeletionPolicyRetain || !in.Backend.Found {
		return ""
	}
	fullAccess := tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess || tok.Status.Permission == tokensv1alpha1.PermissionFullAccess
	switch {
	case fullAccess && !in.Backend.RetainFullAccessAllowed:
		return fmt.Sprintf("%s does not allow FullAccess tokens to be retained in namespace %q (spec.retainFullAccessNamespaces), so deleting this APIToken will wait instead of leaving its token active. Set spec.deletionPolicy: Revoke, or ask the cluster admin to allow it.", in.Backend.Key, tok.Namespace)
	case !fullAccess && !in.Backend.RetainAllowed:
		return fmt.Sprintf("%s does not allow tokens to be retained in namespace %q (spec.retainNamespaces), so deleting this APIToken will wait instead of leaving its token active. Set spec.deletionPolicy: Revoke, or ask the cluster admin to allow it.", in.Backend.Key, tok.Namespace)
	}
	return ""
}

// steadyReport is what holds when nothing is left to do: deactivated on request, expired,
// or an active token in the Secret.
func steadyReport(tok *tokensv1alpha1.APIToken) ReportSpec {
	switch {
	case !tok.IsActiveRequested():
		return ReportSpec{Kind: ReportDeactivated}
	case tok.Status.Phase == tokensv1alpha1.PhaseInactive:
		return ReportSpec{Kind: ReportExpired}
	}
	return ReportSpec{Kind: ReportIssued}
}

// issueEvent is the event of an issue: a first token, a re-issue (reactivated), a
// replacement, or a replacement of a token revoked on the backend.
func issueEvent(tok *tokensv1alpha1.APIToken, d Decision) *Event {
	switch {
	case tok.Status.TokenID == "":
		return &Event{corev1.EventTypeNormal, tokensv1alpha1.EventIssued, ""}
	case d.Reason == tokensv1alpha1.EventRevokedOnBackend:
		return &Event{corev1.EventTypeWarning, tokensv1alpha1.EventRevokedOnBackend, d.Why}
	case d.Reason == tokensv1alpha1.EventIssued:
		return &Event{corev1.EventTypeNormal, tokensv1alpha1.EventIssued, d.Why}
	}
	return &Event{corev1.EventTypeNormal, tokensv1alpha1.EventReplaced, d.Why}
}

// issuedNote completes an issue event's note with the new token, now that it exists.
func IssuedNote(ev *Event, previous string, st tokensv1alpha1.APITokenStatus) string {
	switch {
	case ev.Reason == tokensv1alpha1.EventRevokedOnBackend:
		return fmt.Sprintf("Token %s was revoked on the backend; issued %s into Secret %s", previous, st.TokenID, st.SecretName)
	case ev.Reason == tokensv1alpha1.EventIssued && ev.Note == "":
		return fmt.Sprintf("Issued %s token %s (%s) into Secret %s", st.Permission, st.TokenID, st.TokenHint, st.SecretName)
	case ev.Reason == tokensv1alpha1.EventIssued:
		return fmt.Sprintf("Issued %s token %s (%s) into Secret %s because %s", st.Permission, st.TokenID, st.TokenHint, st.SecretName, ev.Note)
	}
	return fmt.Sprintf("Replaced token %s with %s because %s", previous, st.TokenID, ev.Note)
}

// chooseAction is the policy's order of precedence.
func chooseAction(in Inputs) Decision {
	tok := in.Token
	st := tok.Status
	if in.SecretConflict {
		return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonSecretConflict,
			Why: fmt.Sprintf("Secret %q exists and is not owned by this APIToken; it is never overwritten. Delete or rename that Secret, or set spec.secretName to another name.", tok.SecretNameOrDefault())}
	}
	if why := secretTemplateProblem(tok.Spec.SecretTemplate); why != "" {
		return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonInvalidSecretTemplate, Why: why}
	}
	if in.Backend.Disabled {
		return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonBackendNotFound,
			Why: fmt.Sprintf("Namespaced StatusBackends are turned off in this installation (--namespaced-backends=false), so %s cannot be used. Point spec.backendRef at a ClusterStatusBackend.", in.Backend.Key)}
	}
	if !in.Backend.Found {
		return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonBackendNotFound,
			Why: fmt.Sprintf("%s %q does not exist. Create it, or point spec.backendRef at an existing backend.", in.Backend.Key.Kind, in.Backend.Key.Name)}
	}
	if d, ok := policyDecision(in); ok {
		return d
	}
	if due := predecessorsToEndNow(in); len(due) > 0 {
		// Retired before anything else; the next pass (at once) goes on with the rest.
		return Decision{Action: ActionRetire, Retire: due, RequeueAt: in.Now}
	}
	if !tok.IsActiveRequested() {
		if MayBeActive(tok) {
			return Decision{Action: ActionDeactivate}
		}
		return Decision{Action: ActionNone}
	}
	if d, ok := expiryDecision(in); ok {
		return d
	}
	if d, ok := stuckDecision(in); ok {
		return d
	}
	if AdoptionPending(tok) {
		return Decision{Action: ActionAdopt, Why: "spec.adopt names an existing token"}
	}
	if why, event := needsNewToken(in); why != "" {
		if in.Budget > 0 && in.IssuesInWindow >= in.Budget {
			return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonIssuanceLimited, RequeueAt: in.WindowEnds,
				Why: fmt.Sprintf("%d tokens were created for this APIToken within the issuance window, the most allowed; a new one is needed because %s. The operator issues again at %s; if tokens keep being replaced, check the backend's answers and the Events of this APIToken.", in.IssuesInWindow, why, in.WindowEnds.UTC().Format(time.RFC3339))}
		}
		return Decision{Action: ActionIssue, Reason: event, Why: why, Overlap: overlapsFor(tok, event) && !fullAccessEnds(in, st.Permission, backendkey.Current(tok))}
	}
	if due := retirementsDue(in); len(due) > 0 {
		return Decision{Action: ActionRetire, Retire: due, RequeueAt: NextDeadline(tok)}
	}
	if len(st.PendingDeactivation) > 0 || len(in.Inventory.ExtraActive) > 0 {
		return Decision{Action: ActionSweep, RequeueAt: NextDeadline(tok)}
	}
	if secretNeedsUpdate(in) {
		return Decision{Action: ActionUpdateSecret, RequeueAt: NextDeadline(tok)}
	}
	return Decision{Action: ActionNone, RequeueAt: NextDeadline(tok)}
}

// expiryDecision: spec.expiresAt has passed. The token it was issued for is expired; a time
// already past when the spec asked for it is a failure, and nothing is issued.
func expiryDecision(in Inputs) (Decision, bool) {
	tok := in.Token
	exp := tok.Spec.ExpiresAt
	switch {
	case exp == nil || in.Now.Before(exp.Time):
		return Decision{}, false
	case tok.Status.TokenID != "" && sameTime(RequestedExpiry(tok), exp):
		if MayBeActive(tok) {
			return Decision{Action: ActionExpire}, true
		}
		return Decision{Action: ActionNone}, true
	}
	return Decision{Action: ActionFail, Reason: tokensv1alpha1.ReasonExpiresAtInPast,
		Why: fmt.Sprintf("spec.expiresAt %s is in the past, so no token was issued. Set a future time or remove it.", exp.UTC().Format(time.RFC3339))}, true
}

// secretTemplateProblem checks what the schema cannot afford to (CEL's cost budget does not
// allow a regular expression over every map key): label and annotation keys must be
// qualified names, as the API server will demand of the Secret. Checked before anything is
// issued, so a bad key costs no token.
func secretTemplateProblem(t *tokensv1alpha1.SecretTemplate) string {
	if t == nil {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Sprintf("spec.secretTemplate.labels key %q is not a valid label key: %s. Fix spec.secretTemplate.labels.", k, strings.Join(errs, "; "))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.Annotations)) {
		if errs := validation.IsQualifiedName(strings.ToLower(k)); len(errs) > 0 {
			return fmt.Sprintf("spec.secretTemplate.annotations key %q is not a valid annotation key: %s. Fix spec.secretTemplate.annotations.", k, strings.Join(errs, "; "))
		}
	}
	return ""
}

// policyDecision enforces the backend's namespace policies, not only at issue time: a
// token that a policy no longer allows is deactivated.
func policyDecision(in Inputs) (Decision, bool) {
	tok := in.Token
	var reason, why string
	switch {
	case !in.Backend.Allowed:
		reason = tokensv1alpha1.ReasonNamespaceNotAllowed
		why = fmt.Sprintf("%s does not allow namespace %q (spec.allowedNamespaces). Label the namespace to match, or use another backend.", in.Backend.Key, tok.Namespace)
	case tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess && !in.Backend.FullAccessAllowed:
		reason = tokensv1alpha1.ReasonPermissionNotAllowed
		why = fmt.Sprintf("%s does not allow FullAccess tokens in namespace %q (spec.fullAccessNamespaces). Set spec.permission: ReadOnly, or ask the cluster admin to allow the namespace.", in.Backend.Key, tok.Namespace)
	default:
		return Decision{}, false
	}
	if MayBeActive(tok) || len(tok.Status.PendingDeactivation) > 0 {
		return Decision{Action: ActionRevoke, Reason: reason, Why: why + " Its token was deactivated."}, true
	}
	return Decision{Action: ActionFail, Reason: reason, Why: why}, true
}

// fullAccessEnds: a token of this permission on this backend may not stay active, because
// the backend no longer allows FullAccess in the namespace. Such a token gets no overlap.
func fullAccessEnds(in Inputs, p tokensv1alpha1.Permission, key backendkey.Key) bool {
	allowed, known := in.FullAccessAllowedOn[key]
	if !known {
		allowed = key != in.Backend.Key || in.Backend.FullAccessAllowed
	}
	return p == tokensv1alpha1.PermissionFullAccess && !allowed
}

// predecessorsToEndNow are the draining predecessors that may not drain any longer: those
// their backend no longer lists active (they leave status), and FullAccess ones where FullAccess
// is no longer allowed (no overlap for them: the switch to ReadOnly, or an adopted legacy
// FullAccess token, must not leave write access alive for the grace period).
func predecessorsToEndNow(in Inputs) []Retirement {
	var out []Retirement
	for _, p := range in.Token.Status.PreviousTokens {
		perm := p.Permission
		if perm == "" {
			// Written before status kept the permission: the inventory's, and if it is not
			// listed, assumed FullAccess (where that is not allowed the overlap ends early).
			perm = cmp.Or(in.PredecessorPermission[p.TokenID], tokensv1alpha1.PermissionFullAccess)
		}
		switch {
		case slices.Contains(in.PredecessorsInactive, p.TokenID):
			out = append(out, Retirement{TokenID: p.TokenID, Why: "its backend no longer lists it as active"})
		case fullAccessEnds(in, perm, backendkey.OfRef(p.Backend)):
			out = append(out, Retirement{TokenID: p.TokenID, Why: fmt.Sprintf("FullAccess tokens are no longer allowed in namespace %q (spec.fullAccessNamespaces of %s), so no FullAccess token keeps working for an overlap", in.Token.Namespace, backendkey.OfRef(p.Backend))})
		}
	}
	return out
}

// stuckDecision keeps a failure that only a spec change can cure, so that a backend that
// keeps answering wrongly is not asked again on every pass.
func stuckDecision(in Inputs) (Decision, bool) {
	tok := in.Token
	c := ReadyCondition(tok)
	if c == nil || !heldReasons[c.Reason] || c.ObservedGeneration != tok.Generation {
		return Decision{}, false
	}
	return Decision{Action: ActionFail, Reason: c.Reason, Why: c.Message}, true
}

// needsNewToken says why the token in the Secret no longer answers the spec, and which
// event reports it; "" when it still does.
func needsNewToken(in Inputs) (why, event string) {
	tok := in.Token
	st := tok.Status
	switch {
	case st.TokenID == "":
		return "no token has been issued yet", tokensv1alpha1.EventIssued
	case !MayBeActive(tok):
		return "the token was inactive and an active one is requested again", tokensv1alpha1.EventIssued
	case RevocationRequested(tok) != "":
		return "a revocation was requested with the " + tokensv1alpha1.AnnotationRevokeRequestedAt + " annotation (the token may have leaked); every older token is deactivated at once", tokensv1alpha1.EventReplaced
	case backendkey.Current(tok) != in.Backend.Key || (st.Backend != nil && st.Backend.UID != "" && in.Backend.UID != "" && st.Backend.UID != in.Backend.UID):
		return fmt.Sprintf("spec.backendRef changed from %s to %s", backendkey.Current(tok), in.Backend.Key), tokensv1alpha1.EventReplaced
	case adoptedMismatch(tok) != "":
		return adoptedMismatch(tok), tokensv1alpha1.EventReplaced
	case st.Permission != tok.Spec.Permission:
		return fmt.Sprintf("spec.permission changed from %s to %s", st.Permission, tok.Spec.Permission), tokensv1alpha1.EventReplaced
	case !sameTime(RequestedExpiry(tok), tok.Spec.ExpiresAt):
		return "spec.expiresAt changed", tokensv1alpha1.EventReplaced
	case RotationRequested(tok) != "":
		return "a rotation was requested with the " + tokensv1alpha1.AnnotationRotateRequestedAt + " annotation", tokensv1alpha1.EventReplaced
	case in.Secret == nil && st.SecretName != "" && st.SecretName != tok.SecretNameOrDefault():
		return fmt.Sprintf("spec.secretName changed from %q to %q (a token value cannot be read back, so a new one is issued)", st.SecretName, tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case in.Secret == nil:
		return fmt.Sprintf("Secret %q was deleted", tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case string(in.Secret.Data[tokensv1alpha1.SecretKeyTokenID]) != st.TokenID ||
		in.Secret.Annotations[secretcache.AnnotationTokenSHA256] == "" ||
		in.Secret.Annotations[secretcache.AnnotationTokenSHA256] != secretcache.TokenHash(in.Secret):
		return fmt.Sprintf("the token in Secret %q was edited", tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case renewalDue(in):
		return fmt.Sprintf("scheduled rotation: the token expires on the backend at %s (spec.rotation)", FormatTime(st.ExpiresAt)), tokensv1alpha1.EventReplaced
	case in.RevokedConfirmed:
		return "the token was found inactive or missing on the backend (revoked by hand?)", tokensv1alpha1.EventRevokedOnBackend
	}
	return "", ""
}

// adoptedMismatch says how the adopted token, still the current one, differs from the
// spec ("" when it does not): the reason it is replaced, in words that name the adoption
// rather than a spec change nobody made.
func adoptedMismatch(tok *tokensv1alpha1.APIToken) string {
	st := tok.Status
	if st.AdoptedTokenID == "" || st.AdoptedTokenID != st.TokenID {
		return ""
	}
	switch {
	case st.Permission != tok.Spec.Permission:
		return fmt.Sprintf("the adopted token %s has %s permission and spec.permission asks for %s", st.TokenID, st.Permission, tok.Spec.Permission)
	case !sameTime(RequestedExpiry(tok), tok.Spec.ExpiresAt):
		return fmt.Sprintf("the adopted token %s expires on the backend at %s, not at spec.expiresAt (%s)", st.TokenID, orNever(st.ExpiresAt), orNever(tok.Spec.ExpiresAt))
	}
	return ""
}
