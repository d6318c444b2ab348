package controllers

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file holds the pure decisions of the APIToken controller: given what was gathered
// (the APIToken, its Secret, its backend, the backend's last inventory and the clock), what
// must happen next. Nothing here talks to Kubernetes or the backend, so a table test covers
// every case.

// annotationTokenSHA256 on the managed Secret is the SHA-256 of the token value, so an edited
// token is noticed without keeping the value anywhere but the Secret.
const annotationTokenSHA256 = "tokens.statusops.dev/token-sha256"

// revocationGrace: a token absent from a backend inventory counts as revoked only when it
// was issued at least this long before the inventory was taken (clock skew, list latency).
const revocationGrace = 5 * time.Second

// tokenInputs is everything a decision looks at.
type tokenInputs struct {
	now   time.Time
	token *tokensv1alpha1.APIToken
	// secret is the Secret named spec.secretName when this APIToken owns it; nil otherwise.
	secret *corev1.Secret
	// secretConflict is set when a Secret of that name exists and another owner has it.
	secretConflict bool
	backend        backendState
	// inventory is the backend's last list of active tokens; nil when none was taken yet.
	inventory *inventorySnapshot
	// revokedConfirmed: the inventory did not list the current token and a GET on its
	// backend confirmed that it is inactive or gone (a list walk alone can miss a token).
	revokedConfirmed bool
	// adoptValue is the value spec.adopt.secretRef holds, and adoptProblem why it could not
	// be read (adoption pending only).
	adoptValue   backend.SecretValue
	adoptProblem string
	// rolloutsPending are opted-in workloads naming this APIToken whose rollout of the
	// current token is not complete (with --restart-workloads).
	rolloutsPending []string
	// predecessorUse is the backend's last use of each draining predecessor, by id.
	predecessorUse map[string]*time.Time
	// predecessorsInactive are the draining predecessors their backend's inventory no longer
	// lists active: they leave status.
	predecessorsInactive []string
	// predecessorPermission is the inventory's permission of predecessors whose status entry
	// has none (written before status kept it).
	predecessorPermission map[string]tokensv1alpha1.Permission
	// fullAccessAllowedOn says, for the backend of the current token and of each predecessor,
	// whether it still allows FullAccess tokens in this namespace.
	fullAccessAllowedOn map[BackendKey]bool
	// extraActive are active tokens carrying this APIToken's UID on the current backend,
	// from the inventory, that status does not name: a sweep must deactivate them.
	extraActive []string
	// issuesInWindow counts the tokens created for this APIToken within the issuance window,
	// and budget is how many are allowed (0: no limit); windowEnds is when the oldest leaves.
	issuesInWindow int
	budget         int
	windowEnds     time.Time
}

// backendState is what was found of the referenced backend.
type backendState struct {
	key   BackendKey
	found bool
	// deleting: the backend has a deletion timestamp (it waits for its APITokens).
	deleting bool
	ready    bool
	message  string // why it is not Ready
	// namespacePolicy is what the backend's selectors allow the APIToken's namespace:
	// allowedNamespaces, fullAccessNamespaces, retainNamespaces, retainFullAccessNamespaces.
	namespacePolicy
	// disabled: the backend's kind is switched off in this installation.
	disabled bool
	uid      string
	caBundle []byte
	url      string
}

// actionKind is what the reconciler must do.
type actionKind int

const (
	// actionNone: the token is as the spec asks; only the status may need refreshing.
	actionNone actionKind = iota
	// actionIssue: issue a token (first, or replacing the current one).
	actionIssue
	// actionDeactivate: spec.active is false and the current token is still active.
	actionDeactivate
	// actionExpire: spec.expiresAt has passed; deactivate and report Expired.
	actionExpire
	// actionFail: a person must change something; nothing is issued.
	actionFail
	// actionWait: the backend is not Ready; wait for it (a watch wakes us).
	actionWait
	// actionUpdateSecret: the token is fine but the Secret's metadata or keys are stale.
	actionUpdateSecret
	// actionSweep: the token is fine, but tokens listed in status.pendingDeactivation, or
	// active tokens of this APIToken that status does not name, must be deactivated.
	actionSweep
	// actionRevoke: a backend policy no longer allows the token: deactivate every token of
	// this APIToken, then report the reason as a failure.
	actionRevoke
	// actionRetire: predecessors in status.previousTokens are due to be deactivated.
	actionRetire
	// actionAdopt: verify, claim and store the existing token spec.adopt names.
	actionAdopt
)

// decision is the outcome of decide: the action, the status to report once it is carried
// out, and the event to emit then, if any.
type decision struct {
	action actionKind
	// report is the status once the action is done. A backend step that fails or has to wait
	// reports progress instead (backendFailed, pendingMessage): that is the executor's.
	report report
	// event is the Event to emit once the action is done; nil for none. For actionIssue its
	// note is the reason for the new token, which issuedNote completes with the new token's
	// id (unknown before the create).
	event *eventSpec
	// reason is the condition reason for actionFail, or the event reason for actionIssue
	// (EventIssued for a first token, EventReplaced or EventRevokedOnBackend for a replacement).
	reason string
	// why is a sentence: why a token is issued again, or why it failed.
	why string
	// requeueAt is when the next time-driven step is due (expiry, renewal, retirement);
	// zero for none.
	requeueAt time.Time
	// overlap: the replaced token keeps working for spec.rotation.gracePeriod.
	overlap bool
	// retire lists the predecessors to retire now (actionRetire).
	retire []retirement
}

// eventSpec is an Event to emit on the APIToken.
type eventSpec struct {
	typ, reason, note string
}

// decide is the whole policy of the APIToken controller: the action, in order of
// precedence (chooseAction), the backend-not-ready override, and the status and event that
// go with the outcome (withOutcome).
func decide(in tokenInputs) decision {
	d := chooseAction(in)
	if (d.action == actionIssue || d.action == actionAdopt) && !in.backend.ready {
		d = decision{action: actionWait}
	}
	return withOutcome(in, d)
}

// withOutcome adds to an action the status to report and the event to emit.
func withOutcome(in tokenInputs, d decision) decision {
	tok := in.token
	switch d.action {
	case actionFail:
		d.report = report{kind: reportStalled, reason: d.reason, message: d.why}
		// Failed is emitted once per reason, not on every pass that finds it unchanged.
		if c := readyCondition(tok); c == nil || c.Reason != d.reason {
			d.event = &eventSpec{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, d.why}
		}
	case actionWait:
		d.report = report{kind: reportProgressing, reason: tokensv1alpha1.ReasonBackendNotReady, message: in.backend.message}
	case actionIssue:
		d.report = report{kind: reportIssued}
		d.event = issueEvent(tok, d)
	case actionAdopt:
		// adoptToken emits Adopted or the refusal: both name what the verification found.
		d.report = report{kind: reportIssued}
	case actionDeactivate:
		d.report = report{kind: reportDeactivated}
		d.event = &eventSpec{corev1.EventTypeNormal, tokensv1alpha1.EventDeactivated,
			fmt.Sprintf("Deactivated token %s because spec.active is false", tok.Status.TokenID)}
	case actionExpire:
		d.report = report{kind: reportExpired}
		d.event = &eventSpec{corev1.EventTypeNormal, tokensv1alpha1.EventExpired,
			fmt.Sprintf("Token %s expired at %s and was deactivated", tok.Status.TokenID, formatTime(tok.Spec.ExpiresAt))}
	case actionRevoke:
		d.report = report{kind: reportFailed, reason: d.reason, message: d.why}
		d.event = &eventSpec{corev1.EventTypeWarning, tokensv1alpha1.EventPolicyDeactivated, d.why}
	default:
		d.report = steadyReport(tok)
	}
	if d.report.kind == reportIssued {
		if why := retainRefused(in); why != "" {
			d.report.reason, d.report.message = tokensv1alpha1.ReasonRetainNotAllowed, why
			if c := readyCondition(tok); (c == nil || c.Reason != tokensv1alpha1.ReasonRetainNotAllowed) && d.event == nil {
				d.event = &eventSpec{corev1.EventTypeWarning, tokensv1alpha1.EventFailed, why}
			}
		}
	}
	return d
}

// retainRefused says why spec.deletionPolicy Retain is refused for this token, or "". A
// retained token outlives every policy (a namespace losing FullAccess reaches it no more), so
// the backend's admin decides who may retain, and a FullAccess token by default nobody.
func retainRefused(in tokenInputs) string {
	tok := in.token
	if tok.Spec.DeletionPolicy != tokensv1alpha1.DeletionPolicyRetain || !in.backend.found {
		return ""
	}
	fullAccess := tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess || tok.Status.Permission == tokensv1alpha1.PermissionFullAccess
	switch {
	case fullAccess && !in.backend.retainFullAccessAllowed:
		return fmt.Sprintf("%s does not allow FullAccess tokens to be retained in namespace %q (spec.retainFullAccessNamespaces), so deleting this APIToken will wait instead of leaving its token active. Set spec.deletionPolicy: Revoke, or ask the cluster admin to allow it.", in.backend.key, tok.Namespace)
	case !fullAccess && !in.backend.retainAllowed:
		return fmt.Sprintf("%s does not allow tokens to be retained in namespace %q (spec.retainNamespaces), so deleting this APIToken will wait instead of leaving its token active. Set spec.deletionPolicy: Revoke, or ask the cluster admin to allow it.", in.backend.key, tok.Namespace)
	}
	return ""
}

// steadyReport is what holds when nothing is left to do: deactivated on request, expired,
// or an active token in the Secret.
func steadyReport(tok *tokensv1alpha1.APIToken) report {
	switch {
	case !tok.IsActiveRequested():
		return report{kind: reportDeactivated}
	case tok.Status.Phase == tokensv1alpha1.PhaseInactive:
		return report{kind: reportExpired}
	}
	return report{kind: reportIssued}
}

// issueEvent is the event of an issue: a first token, a re-issue (reactivated), a
// replacement, or a replacement of a token revoked on the backend.
func issueEvent(tok *tokensv1alpha1.APIToken, d decision) *eventSpec {
	switch {
	case tok.Status.TokenID == "":
		return &eventSpec{corev1.EventTypeNormal, tokensv1alpha1.EventIssued, ""}
	case d.reason == tokensv1alpha1.EventRevokedOnBackend:
		return &eventSpec{corev1.EventTypeWarning, tokensv1alpha1.EventRevokedOnBackend, d.why}
	case d.reason == tokensv1alpha1.EventIssued:
		return &eventSpec{corev1.EventTypeNormal, tokensv1alpha1.EventIssued, d.why}
	}
	return &eventSpec{corev1.EventTypeNormal, tokensv1alpha1.EventReplaced, d.why}
}

// issuedNote completes an issue event's note with the new token, now that it exists.
func issuedNote(ev *eventSpec, previous string, st tokensv1alpha1.APITokenStatus) string {
	switch {
	case ev.reason == tokensv1alpha1.EventRevokedOnBackend:
		return fmt.Sprintf("Token %s was revoked on the backend; issued %s into Secret %s", previous, st.TokenID, st.SecretName)
	case ev.reason == tokensv1alpha1.EventIssued && ev.note == "":
		return fmt.Sprintf("Issued %s token %s (%s) into Secret %s", st.Permission, st.TokenID, st.TokenHint, st.SecretName)
	case ev.reason == tokensv1alpha1.EventIssued:
		return fmt.Sprintf("Issued %s token %s (%s) into Secret %s because %s", st.Permission, st.TokenID, st.TokenHint, st.SecretName, ev.note)
	}
	return fmt.Sprintf("Replaced token %s with %s because %s", previous, st.TokenID, ev.note)
}

// chooseAction is the policy's order of precedence.
func chooseAction(in tokenInputs) decision {
	tok := in.token
	st := tok.Status
	if in.secretConflict {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonSecretConflict,
			why: fmt.Sprintf("Secret %q exists and is not owned by this APIToken; it is never overwritten. Delete or rename that Secret, or set spec.secretName to another name.", tok.SecretNameOrDefault())}
	}
	if why := secretTemplateProblem(tok.Spec.SecretTemplate); why != "" {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonInvalidSecretTemplate, why: why}
	}
	if in.backend.disabled {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonBackendNotFound,
			why: fmt.Sprintf("Namespaced StatusBackends are turned off in this installation (--namespaced-backends=false), so %s cannot be used. Point spec.backendRef at a ClusterStatusBackend.", in.backend.key)}
	}
	if !in.backend.found {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonBackendNotFound,
			why: fmt.Sprintf("%s %q does not exist. Create it, or point spec.backendRef at an existing backend.", in.backend.key.Kind, in.backend.key.Name)}
	}
	if d, ok := policyDecision(in); ok {
		return d
	}
	if due := predecessorsToEndNow(in); len(due) > 0 {
		// Retired before anything else; the next pass (at once) goes on with the rest.
		return decision{action: actionRetire, retire: due, requeueAt: in.now}
	}
	if !tok.IsActiveRequested() {
		if mayBeActive(tok) {
			return decision{action: actionDeactivate}
		}
		return decision{action: actionNone}
	}
	if d, ok := expiryDecision(in); ok {
		return d
	}
	if d, ok := stuckDecision(in); ok {
		return d
	}
	if adoptionPending(tok) {
		return decision{action: actionAdopt, why: "spec.adopt names an existing token"}
	}
	if why, event := needsNewToken(in); why != "" {
		if in.budget > 0 && in.issuesInWindow >= in.budget {
			return decision{action: actionFail, reason: tokensv1alpha1.ReasonIssuanceLimited, requeueAt: in.windowEnds,
				why: fmt.Sprintf("%d tokens were created for this APIToken within the issuance window, the most allowed; a new one is needed because %s. The operator issues again at %s; if tokens keep being replaced, check the backend's answers and the Events of this APIToken.", in.issuesInWindow, why, in.windowEnds.UTC().Format(time.RFC3339))}
		}
		return decision{action: actionIssue, reason: event, why: why, overlap: overlapsFor(tok, event) && !fullAccessEnds(in, st.Permission, currentBackendKey(tok))}
	}
	if due := retirementsDue(in); len(due) > 0 {
		return decision{action: actionRetire, retire: due, requeueAt: nextDeadline(tok)}
	}
	if len(st.PendingDeactivation) > 0 || len(in.extraActive) > 0 {
		return decision{action: actionSweep, requeueAt: nextDeadline(tok)}
	}
	if secretNeedsUpdate(in) {
		return decision{action: actionUpdateSecret, requeueAt: nextDeadline(tok)}
	}
	return decision{action: actionNone, requeueAt: nextDeadline(tok)}
}

// expiryDecision: spec.expiresAt has passed. The token it was issued for is expired; a time
// already past when the spec asked for it is a failure, and nothing is issued.
func expiryDecision(in tokenInputs) (decision, bool) {
	tok := in.token
	exp := tok.Spec.ExpiresAt
	switch {
	case exp == nil || in.now.Before(exp.Time):
		return decision{}, false
	case tok.Status.TokenID != "" && sameTime(requestedExpiry(tok), exp):
		if mayBeActive(tok) {
			return decision{action: actionExpire}, true
		}
		return decision{action: actionNone}, true
	}
	return decision{action: actionFail, reason: tokensv1alpha1.ReasonExpiresAtInPast,
		why: fmt.Sprintf("spec.expiresAt %s is in the past, so no token was issued. Set a future time or remove it.", exp.UTC().Format(time.RFC3339))}, true
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
func policyDecision(in tokenInputs) (decision, bool) {
	tok := in.token
	var reason, why string
	switch {
	case !in.backend.allowed:
		reason = tokensv1alpha1.ReasonNamespaceNotAllowed
		why = fmt.Sprintf("%s does not allow namespace %q (spec.allowedNamespaces). Label the namespace to match, or use another backend.", in.backend.key, tok.Namespace)
	case tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess && !in.backend.fullAccessAllowed:
		reason = tokensv1alpha1.ReasonPermissionNotAllowed
		why = fmt.Sprintf("%s does not allow FullAccess tokens in namespace %q (spec.fullAccessNamespaces). Set spec.permission: ReadOnly, or ask the cluster admin to allow the namespace.", in.backend.key, tok.Namespace)
	default:
		return decision{}, false
	}
	if mayBeActive(tok) || len(tok.Status.PendingDeactivation) > 0 {
		return decision{action: actionRevoke, reason: reason, why: why + " Its token was deactivated."}, true
	}
	return decision{action: actionFail, reason: reason, why: why}, true
}

// fullAccessEnds: a token of this permission on this backend may not stay active, because
// the backend no longer allows FullAccess in the namespace. Such a token gets no overlap.
func fullAccessEnds(in tokenInputs, p tokensv1alpha1.Permission, key BackendKey) bool {
	allowed, known := in.fullAccessAllowedOn[key]
	if !known {
		allowed = key != in.backend.key || in.backend.fullAccessAllowed
	}
	return p == tokensv1alpha1.PermissionFullAccess && !allowed
}

// predecessorsToEndNow are the draining predecessors that may not drain any longer: those
// their backend no longer lists active (they leave status), and FullAccess ones where FullAccess
// is no longer allowed (no overlap for them: the switch to ReadOnly, or an adopted legacy
// FullAccess token, must not leave write access alive for the grace period).
func predecessorsToEndNow(in tokenInputs) []retirement {
	var out []retirement
	for _, p := range in.token.Status.PreviousTokens {
		perm := p.Permission
		if perm == "" {
			// Written before status kept the permission: the inventory's, and if it is not
			// listed, assumed FullAccess (where that is not allowed the overlap ends early).
			perm = cmp.Or(in.predecessorPermission[p.TokenID], tokensv1alpha1.PermissionFullAccess)
		}
		switch {
		case slices.Contains(in.predecessorsInactive, p.TokenID):
			out = append(out, retirement{tokenID: p.TokenID, why: "its backend no longer lists it as active"})
		case fullAccessEnds(in, perm, keyOfRef(p.Backend)):
			out = append(out, retirement{tokenID: p.TokenID, why: fmt.Sprintf("FullAccess tokens are no longer allowed in namespace %q (spec.fullAccessNamespaces of %s), so no FullAccess token keeps working for an overlap", in.token.Namespace, keyOfRef(p.Backend))})
		}
	}
	return out
}

// stuckDecision keeps a failure that only a spec change can cure, so that a backend that
// keeps answering wrongly is not asked again on every pass.
func stuckDecision(in tokenInputs) (decision, bool) {
	tok := in.token
	c := readyCondition(tok)
	if c == nil || !heldReasons[c.Reason] || c.ObservedGeneration != tok.Generation {
		return decision{}, false
	}
	return decision{action: actionFail, reason: c.Reason, why: c.Message}, true
}

// heldReasons are the backend's permanent answers (a reply that is not what was asked, a 4xx
// refusal): asking again returns the same, so the failure holds until the spec changes, and
// a wake-up (a backend re-check, the inventory) sends nothing.
var heldReasons = map[string]bool{
	tokensv1alpha1.ReasonBackendMismatch: true,
	tokensv1alpha1.ReasonBackendRejected: true,
}

// retiredReasons are the failures whose pass deactivated the token.
var retiredReasons = map[string]bool{
	tokensv1alpha1.ReasonNamespaceNotAllowed:  true,
	tokensv1alpha1.ReasonPermissionNotAllowed: true,
}

// mayBeActive: status names a token that was not deactivated (expired, on request, or by a
// policy), so it may still be active on its backend.
func mayBeActive(tok *tokensv1alpha1.APIToken) bool {
	if tok.Status.TokenID == "" || tok.Status.Phase == tokensv1alpha1.PhaseInactive {
		return false
	}
	if c := readyCondition(tok); c != nil && tok.Status.Phase == tokensv1alpha1.PhaseFailed && retiredReasons[c.Reason] {
		return false
	}
	return true
}

func readyCondition(tok *tokensv1alpha1.APIToken) *metav1.Condition {
	return meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
}

// requestedExpiry is the expiry asked for when the current token was issued. Status written
// before requestedExpiresAt existed has only the backend's answer.
func requestedExpiry(tok *tokensv1alpha1.APIToken) *metav1.Time {
	if tok.Status.Backend == nil {
		return tok.Status.ExpiresAt
	}
	return tok.Status.RequestedExpiresAt
}

// needsNewToken says why the token in the Secret no longer answers the spec, and which
// event reports it; "" when it still does.
func needsNewToken(in tokenInputs) (why, event string) {
	tok := in.token
	st := tok.Status
	switch {
	case st.TokenID == "":
		return "no token has been issued yet", tokensv1alpha1.EventIssued
	case !mayBeActive(tok):
		return "the token was inactive and an active one is requested again", tokensv1alpha1.EventIssued
	case revocationRequested(tok) != "":
		return "a revocation was requested with the " + tokensv1alpha1.AnnotationRevokeRequestedAt + " annotation (the token may have leaked); every older token is deactivated at once", tokensv1alpha1.EventReplaced
	case currentBackendKey(tok) != in.backend.key || (st.Backend != nil && st.Backend.UID != "" && in.backend.uid != "" && st.Backend.UID != in.backend.uid):
		return fmt.Sprintf("spec.backendRef changed from %s to %s", currentBackendKey(tok), in.backend.key), tokensv1alpha1.EventReplaced
	case adoptedMismatch(tok) != "":
		return adoptedMismatch(tok), tokensv1alpha1.EventReplaced
	case st.Permission != tok.Spec.Permission:
		return fmt.Sprintf("spec.permission changed from %s to %s", st.Permission, tok.Spec.Permission), tokensv1alpha1.EventReplaced
	case !sameTime(requestedExpiry(tok), tok.Spec.ExpiresAt):
		return "spec.expiresAt changed", tokensv1alpha1.EventReplaced
	case rotationRequested(tok) != "":
		return "a rotation was requested with the " + tokensv1alpha1.AnnotationRotateRequestedAt + " annotation", tokensv1alpha1.EventReplaced
	case in.secret == nil && st.SecretName != "" && st.SecretName != tok.SecretNameOrDefault():
		return fmt.Sprintf("spec.secretName changed from %q to %q (a token value cannot be read back, so a new one is issued)", st.SecretName, tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case in.secret == nil:
		return fmt.Sprintf("Secret %q was deleted", tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case string(in.secret.Data[tokensv1alpha1.SecretKeyTokenID]) != st.TokenID ||
		in.secret.Annotations[annotationTokenSHA256] == "" ||
		in.secret.Annotations[annotationTokenSHA256] != secretTokenHash(in.secret):
		return fmt.Sprintf("the token in Secret %q was edited", tok.SecretNameOrDefault()), tokensv1alpha1.EventReplaced
	case renewalDue(in):
		return fmt.Sprintf("scheduled rotation: the token expires on the backend at %s (spec.rotation)", formatTime(st.ExpiresAt)), tokensv1alpha1.EventReplaced
	case in.revokedConfirmed:
		return "the token was found inactive or missing on the backend (revoked by hand?)", tokensv1alpha1.EventRevokedOnBackend
	}
	return "", ""
}

// revokedOnBackend: the backend's last inventory, taken well after the token was issued,
// does not list it as active.
func revokedOnBackend(in tokenInputs) bool {
	inv := in.inventory
	st := in.token.Status
	if inv == nil || st.IssuedAt == nil {
		return false
	}
	if inv.takenAt.Sub(st.IssuedAt.Time) < revocationGrace {
		return false
	}
	_, active := inv.active[st.TokenID]
	return !active
}

// rotationRequested returns the rotate annotation's value when it has not been handled.
func rotationRequested(tok *tokensv1alpha1.APIToken) string {
	v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]
	if v == "" || v == tok.Status.RotationHandled {
		return ""
	}
	return v
}

// secretNeedsUpdate: the token is right but the Secret's labels, annotations or non-token
// keys differ from what desiredSecret would write.
func secretNeedsUpdate(in tokenInputs) bool {
	if in.secret == nil {
		return false
	}
	want := desiredSecretMeta(in.token, in.backend.url, secretTokenOf(in.token))
	for k, v := range want.labels {
		if in.secret.Labels[k] != v {
			return true
		}
	}
	for k, v := range want.annotations {
		if in.secret.Annotations[k] != v {
			return true
		}
	}
	for k, v := range want.data {
		if string(in.secret.Data[k]) != v {
			return true
		}
	}
	return false
}

// secretMeta is what the operator writes on the Secret, apart from the token itself.
type secretMeta struct {
	labels      map[string]string
	annotations map[string]string
	data        map[string]string
}

// secretToken is what the Secret's non-secret keys describe.
type secretToken struct {
	id         string
	permission tokensv1alpha1.Permission
	expiresAt  *metav1.Time
}

// secretTokenOf describes the current token of status.
func secretTokenOf(tok *tokensv1alpha1.APIToken) secretToken {
	return secretToken{id: tok.Status.TokenID, permission: tok.Status.Permission, expiresAt: tok.Status.ExpiresAt}
}

// desiredSecretMeta: the template's labels and annotations, then the operator's own (which
// win), and the non-secret data keys describing t.
func desiredSecretMeta(tok *tokensv1alpha1.APIToken, url string, t secretToken) secretMeta {
	m := secretMeta{labels: map[string]string{}, annotations: map[string]string{}, data: map[string]string{}}
	if t := tok.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			m.labels[k] = string(v)
		}
		for k, v := range t.Annotations {
			m.annotations[k] = string(v)
		}
	}
	m.labels[tokensv1alpha1.LabelManagedBy] = tokensv1alpha1.ManagedByValue
	m.labels[tokensv1alpha1.LabelAPIToken] = tok.Name
	m.data[tokensv1alpha1.SecretKeyTokenID] = t.id
	m.data[tokensv1alpha1.SecretKeyPermission] = string(t.permission)
	m.data[tokensv1alpha1.SecretKeyExpiresAt] = formatTime(t.expiresAt)
	if url != "" {
		m.data[tokensv1alpha1.SecretKeyURL] = url
	}
	return m
}

func expiryOf(tok *tokensv1alpha1.APIToken) time.Time {
	if tok.Spec.ExpiresAt == nil {
		return time.Time{}
	}
	return tok.Spec.ExpiresAt.Time
}

// sameTime compares two optional times to the second (RFC 3339 precision).
func sameTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Unix() == b.Unix()
}

func formatTime(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// secretTokenHash is the SHA-256 of the token a Secret holds: computed from the value on a
// live read, or kept by the cache transform (which drops the value itself); "" when the
// Secret holds no token.
func secretTokenHash(s *corev1.Secret) string {
	h, _ := CachedTokenHash(s)
	return h
}

// tokenHint is the last four characters of the value the operator received; a backend's
// last4 is never trusted (a hostile one could send the whole value there).
func tokenHint(value string) string {
	if len(value) < 8 {
		return "..."
	}
	return "..." + value[len(value)-4:]
}

// hashToken is the hex SHA-256 of a token value.
func hashToken(v []byte) string {
	sum := sha256.Sum256(v)
	return hex.EncodeToString(sum[:])
}

// backendPermission maps the API's permission to the protocol's.
func backendPermission(p tokensv1alpha1.Permission) backend.Permission {
	if p == tokensv1alpha1.PermissionFullAccess {
		return backend.PermissionFullAccess
	}
	return backend.PermissionReadOnly
}

// apiPermission maps the protocol's permission to the API's.
func apiPermission(p backend.Permission) tokensv1alpha1.Permission {
	if p == backend.PermissionFullAccess {
		return tokensv1alpha1.PermissionFullAccess
	}
	return tokensv1alpha1.PermissionReadOnly
}
