package policy

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// This file reads an APIToken: its spec, its annotations and its conditions, in the words
// the rules use.

// ReadyCondition is the APIToken's Ready condition, or nil.
func ReadyCondition(tok *tokensv1alpha1.APIToken) *metav1.Condition {
	return meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
}

// MayBeActive: status names a token that was not deactivated (expired, on request, or by a
// policy), so it may still be active on its backend.
func MayBeActive(tok *tokensv1alpha1.APIToken) bool {
	if tok.Status.TokenID == "" || tok.Status.Phase == tokensv1alpha1.PhaseInactive {
		return false
	}
	if c := ReadyCondition(tok); c != nil && tok.Status.Phase == tokensv1alpha1.PhaseFailed && retiredReasons[c.Reason] {
		return false
	}
	return true
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

// BackendPermission maps the API's permission to the port's.
func BackendPermission(p tokensv1alpha1.Permission) backend.Permission {
	if p == tokensv1alpha1.PermissionFullAccess {
		return backend.PermissionFullAccess
	}
	return backend.PermissionReadOnly
}

// APIPermission maps the port's permission to the API's.
func APIPermission(p backend.Permission) tokensv1alpha1.Permission {
	if p == backend.PermissionFullAccess {
		return tokensv1alpha1.PermissionFullAccess
	}
	return tokensv1alpha1.PermissionReadOnly
}

// TokenHint is the last four characters of the value the operator received; a backend's
// last4 is never trusted (a hostile one could send the whole value there).
func TokenHint(value string) string {
	if len(value) < 8 {
		return "..."
	}
	return "..." + value[len(value)-4:]
}

// RotationRequested returns the rotate annotation's value when it has not been handled.
func RotationRequested(tok *tokensv1alpha1.APIToken) string {
	v := tok.Annotations[tokensv1alpha1.AnnotationRotateRequestedAt]
	if v == "" || v == tok.Status.RotationHandled {
		return ""
	}
	return v
}

// RevocationRequested returns the revoke annotation's value when it has not been handled.
func RevocationRequested(tok *tokensv1alpha1.APIToken) string {
	v := tok.Annotations[tokensv1alpha1.AnnotationRevokeRequestedAt]
	if v == "" || v == tok.Status.RevocationHandled {
		return ""
	}
	return v
}

// RequestedExpiry is the expiry asked for when the current token was issued. Status written
// before requestedExpiresAt existed has only the backend's answer.
func RequestedExpiry(tok *tokensv1alpha1.APIToken) *metav1.Time {
	if tok.Status.Backend == nil {
		return tok.Status.ExpiresAt
	}
	return tok.Status.RequestedExpiresAt
}

// AdoptionPending: spec.adopt names a token and this APIToken holds none yet.
func AdoptionPending(tok *tokensv1alpha1.APIToken) bool {
	return tok.Spec.Adopt != nil && tok.Status.TokenID == "" && tok.Status.AdoptedTokenID == ""
}

// AdoptSecretKey is the key of spec.adopt.secretRef, with its default.
func AdoptSecretKey(tok *tokensv1alpha1.APIToken) string {
	if k := tok.Spec.Adopt.SecretRef.Key; k != "" {
		return k
	}
	return tokensv1alpha1.SecretKeyToken
}

// TimePtr is t as an API time; nil for nil.
func TimePtr(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	m := metav1.NewTime(t.UTC())
	return &m
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

// FormatTime is t as status and messages write it; "" for nil.
func FormatTime(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func orNever(t *metav1.Time) string {
	if t == nil {
		return "never"
	}
	return FormatTime(t)
}

// conditionOf is the condition of the type, or nil.
func conditionOf(tok *tokensv1alpha1.APIToken, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tok.Status.Conditions, typ)
}
