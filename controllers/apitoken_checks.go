package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
}

// backendState is what was found of the referenced backend.
type backendState struct {
	key   BackendKey
	found bool
	// deleting: the backend has a deletion timestamp (it waits for its APITokens).
	deleting bool
	ready    bool
	message  string // why it is not Ready
	allowed  bool   // allowedNamespaces selects the APIToken's namespace
	client   backend.Client
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
)

// decision is the outcome of decide.
type decision struct {
	action actionKind
	// reason is the condition reason for actionFail, or the event reason for actionIssue
	// (ReasonIssued for a first token, "Replaced" or "Revoked" for a replacement).
	reason string
	// why is a sentence: why a token is issued again, or why it failed.
	why string
	// requeueAt is when the next time-driven step is due (expiry); zero for none.
	requeueAt time.Time
}

// Event reasons for replacement, besides the condition reasons.
const (
	eventReplaced = "Replaced"
	eventRevoked  = "Revoked"
)

// decide is the whole policy of the APIToken controller, in order of precedence.
func decide(in tokenInputs) decision {
	tok := in.token
	st := tok.Status
	issued := st.TokenID != ""
	inactive := st.Phase == tokensv1alpha1.PhaseInactive

	if in.secretConflict {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonSecretConflict,
			why: fmt.Sprintf("Secret %q exists and is not owned by this APIToken; it is never overwritten. Delete or rename that Secret, or set spec.secretName to another name.", tok.SecretNameOrDefault())}
	}
	if !in.backend.found {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonBackendNotFound,
			why: fmt.Sprintf("%s %q does not exist. Create it, or point spec.backendRef at an existing backend.", in.backend.key.Kind, in.backend.key.Name)}
	}
	if !in.backend.allowed {
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonNamespaceNotAllowed,
			why: fmt.Sprintf("ClusterStatusBackend %q does not allow namespace %q (spec.allowedNamespaces). Label the namespace to match, or use another backend.", in.backend.key.Name, tok.Namespace)}
	}

	if !tok.IsActiveRequested() {
		if issued && !inactive {
			return decision{action: actionDeactivate}
		}
		return decision{action: actionNone}
	}

	if exp := tok.Spec.ExpiresAt; exp != nil && !in.now.Before(exp.Time) {
		if issued && sameTime(st.ExpiresAt, exp) {
			if inactive {
				return decision{action: actionNone}
			}
			return decision{action: actionExpire}
		}
		return decision{action: actionFail, reason: tokensv1alpha1.ReasonExpiresAtInPast,
			why: fmt.Sprintf("spec.expiresAt %s is in the past, so no token was issued. Set a future time or remove it.", exp.UTC().Format(time.RFC3339))}
	}

	if why, event := needsNewToken(in); why != "" {
		return decision{action: actionIssue, reason: event, why: why}
	}
	if secretNeedsUpdate(in) {
		return decision{action: actionUpdateSecret, requeueAt: expiryOf(tok)}
	}
	return decision{action: actionNone, requeueAt: expiryOf(tok)}
}

// needsNewToken says why the token in the Secret no longer answers the spec, and which
// event reports it; "" when it still does.
func needsNewToken(in tokenInputs) (why, event string) {
	tok := in.token
	st := tok.Status
	switch {
	case st.TokenID == "":
		return "no token has been issued yet", tokensv1alpha1.ReasonIssued
	case st.Phase == tokensv1alpha1.PhaseInactive:
		return "the token was inactive and an active one is requested again", tokensv1alpha1.ReasonIssued
	case st.Permission != tok.Spec.Permission:
		return fmt.Sprintf("spec.permission changed from %s to %s", st.Permission, tok.Spec.Permission), eventReplaced
	case !sameTime(st.ExpiresAt, tok.Spec.ExpiresAt):
		return "spec.expiresAt changed", eventReplaced
	case rotationRequested(tok) != "":
		return "a rotation was requested with the " + tokensv1alpha1.AnnotationRotateRequestedAt + " annotation", eventReplaced
	case in.secret == nil:
		return fmt.Sprintf("Secret %q was deleted", tok.SecretNameOrDefault()), eventReplaced
	case string(in.secret.Data[tokensv1alpha1.SecretKeyTokenID]) != st.TokenID ||
		in.secret.Annotations[annotationTokenSHA256] == "" ||
		in.secret.Annotations[annotationTokenSHA256] != hashToken(in.secret.Data[tokensv1alpha1.SecretKeyToken]):
		return fmt.Sprintf("the token in Secret %q was edited", tok.SecretNameOrDefault()), eventReplaced
	case revokedOnBackend(in):
		return "the token was found inactive or missing on the backend (revoked by hand?)", eventRevoked
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
	want := desiredSecretMeta(in.token, in.backend.url)
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

// desiredSecretMeta: the template's labels and annotations, then the operator's own (which
// win), and the non-secret data keys derived from status.
func desiredSecretMeta(tok *tokensv1alpha1.APIToken, url string) secretMeta {
	m := secretMeta{labels: map[string]string{}, annotations: map[string]string{}, data: map[string]string{}}
	if t := tok.Spec.SecretTemplate; t != nil {
		for k, v := range t.Labels {
			m.labels[k] = v
		}
		for k, v := range t.Annotations {
			m.annotations[k] = v
		}
	}
	m.labels[tokensv1alpha1.LabelManagedBy] = tokensv1alpha1.ManagedByValue
	m.labels[tokensv1alpha1.LabelAPIToken] = tok.Name
	m.data[tokensv1alpha1.SecretKeyTokenID] = tok.Status.TokenID
	m.data[tokensv1alpha1.SecretKeyPermission] = string(tok.Status.Permission)
	m.data[tokensv1alpha1.SecretKeyExpiresAt] = formatTime(tok.Status.ExpiresAt)
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
