package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Permission is what a token may do on the backend.
// +kubebuilder:validation:Enum=ReadOnly;FullAccess
type Permission string

const (
	// PermissionReadOnly may only retrieve data (GET, HEAD, OPTIONS).
	// Prefer it.
	PermissionReadOnly Permission = "ReadOnly"
	// PermissionFullAccess may read and modify resources.
	PermissionFullAccess Permission = "FullAccess"
)

// DeletionPolicy says what happens to the backend token when the APIToken is deleted.
// +kubebuilder:validation:Enum=Revoke;Retain
type DeletionPolicy string

const (
	// DeletionPolicyRevoke deactivates the backend token before the APIToken goes away.
	DeletionPolicyRevoke DeletionPolicy = "Revoke"
	// DeletionPolicyRetain leaves the backend token active and keeps its Secret, released from the operator.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// BackendKind is the kind of a backend reference.
// +kubebuilder:validation:Enum=StatusBackend;ClusterStatusBackend
type BackendKind string

const (
	// BackendKindStatusBackend refers to a StatusBackend in the APIToken's namespace.
	BackendKindStatusBackend BackendKind = "StatusBackend"
	// BackendKindClusterStatusBackend refers to a cluster-scoped ClusterStatusBackend.
	BackendKindClusterStatusBackend BackendKind = "ClusterStatusBackend"
)

// APITokenPhase summarises whether the token in the Secret is usable.
// +kubebuilder:validation:Enum=Pending;Active;Inactive;Failed
type APITokenPhase string

const (
	// PhasePending: no usable token yet; issuing, or waiting for the backend.
	PhasePending APITokenPhase = "Pending"
	// PhaseActive: the Secret holds an active token.
	PhaseActive APITokenPhase = "Active"
	// PhaseInactive: the token has expired or was deactivated on request.
	PhaseInactive APITokenPhase = "Inactive"
	// PhaseFailed: the operator cannot issue a token until a person changes something.
	PhaseFailed APITokenPhase = "Failed"
)

// BackendReference names the backend a token is issued against.
type BackendReference struct {
	// Kind of the backend: a StatusBackend in the APIToken's namespace, or a cluster-scoped ClusterStatusBackend.
	// +kubebuilder:default=ClusterStatusBackend
	// +optional
	Kind BackendKind `json:"kind,omitempty"`

	// Name of the StatusBackend or ClusterStatusBackend.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// LabelValue is a Kubernetes label value: at most 63 characters, empty or beginning and ending with an alphanumeric, with only alphanumerics, '-', '_' and '.' between.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
type LabelValue string

// AnnotationValue is a Secret annotation value put there by the operator.
// +kubebuilder:validation:MaxLength=4096
type AnnotationValue string

// SecretTemplate holds metadata copied onto the Secret the operator writes.
type SecretTemplate struct {
	// Labels added to the Secret, for example to select it from a reloader.
	// The operator's own labels take precedence.
	// Keys and values follow the Kubernetes label rules.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 317)",message="label keys must be at most 317 characters (a 253-character prefix, '/', a 63-character name)"
	// +optional
	Labels map[string]LabelValue `json:"labels,omitempty"`

	// Annotations added to the Secret, for example reloader.stakater.com/match: "true" to restart workloads when the token changes.
	// Keys follow the Kubernetes annotation rules.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 317)",message="annotation keys must be at most 317 characters (a 253-character prefix, '/', a 63-character name)"
	// +optional
	Annotations map[string]AnnotationValue `json:"annotations,omitempty"`
}

// RotationSpec asks for tokens that are replaced without downtime: each backend token dies on the backend by itself (lifetime), its successor is issued in time (renewBefore), and the old value keeps working for an overlap (gracePeriod), or until nobody uses it.
// +kubebuilder:validation:XValidation:rule="!has(self.lifetime) || duration(self.lifetime) >= duration('1m')",message="spec.rotation.lifetime must be at least 1m",fieldPath=".lifetime"
// +kubebuilder:validation:XValidation:rule="!has(self.renewBefore) || has(self.lifetime)",message="spec.rotation.renewBefore needs spec.rotation.lifetime",fieldPath=".renewBefore"
// +kubebuilder:validation:XValidation:rule="!has(self.renewBefore) || !has(self.lifetime) || duration(self.renewBefore) < duration(self.lifetime)",message="spec.rotation.renewBefore must be shorter than spec.rotation.lifetime",fieldPath=".renewBefore"
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || !has(self.renewBefore) || duration(self.gracePeriod) <= duration(self.renewBefore)",message="spec.rotation.gracePeriod must not be longer than spec.rotation.renewBefore",fieldPath=".gracePeriod"
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || has(self.renewBefore) || !has(self.lifetime) || duration(self.gracePeriod).getSeconds() * 3 <= duration(self.lifetime).getSeconds()",message="spec.rotation.gracePeriod must not be longer than spec.rotation.renewBefore (default: lifetime/3)",fieldPath=".gracePeriod"
type RotationSpec struct {
	// Lifetime turns on scheduled rotation: each backend token is created with an expiry of issue time plus lifetime (never past spec.expiresAt), so it dies on the backend even when the operator is gone.
	// At least 1m, at most 8760h (a year).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="spec.rotation.lifetime must be at most 8760h"
	// +optional
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// RenewBefore is how long before a token's backend expiry its successor is issued: slack for outages.
	// Defaults to a third of lifetime; shorter than lifetime.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="spec.rotation.renewBefore must be at most 8760h"
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// GracePeriod is the overlap of every replacement (scheduled, the rotate annotation, a permission or description change, Secret drift): the old token stays active this long after the Secret holds its successor.
	// Default 0; at most renewBefore, and at most 168h (a week) with or without a lifetime: a longer overlap keeps an old value alive long after anyone should use it.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('168h')",message="spec.rotation.gracePeriod must be at most 168h"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`

	// RetireWhenUnused retires an old token before its grace period ends, once the successor has been used and the old one has not for quietPeriod.
	// +optional
	RetireWhenUnused *RetireWhenUnused `json:"retireWhenUnused,omitempty"`
}

// RetireWhenUnused says when an old token counts as unused.
type RetireWhenUnused struct {
	// QuietPeriod is how long the old token must have gone unused (by the backend's last-used information, read once per sync interval) while the successor is in use.
	// Keep it at least three sync intervals; at most 168h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('168h')",message="spec.rotation.retireWhenUnused.quietPeriod must be at most 168h"
	// +required
	QuietPeriod metav1.Duration `json:"quietPeriod"`
}

// AdoptSpec names a token that exists on the backend already, and where its value is today.
type AdoptSpec struct {
	// TokenID is the backend id of the existing token.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]{1,128}$`
	// +required
	TokenID string `json:"tokenID"`

	// SecretRef is the Secret, in the APIToken's namespace, that holds the token's value today.
	// It proves possession: the value must authenticate as tokenID.
	// +required
	SecretRef AdoptSecretReference `json:"secretRef"`
}

// AdoptSecretReference is a key of a Secret in the APIToken's namespace.
type AdoptSecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key in the Secret's data that holds the value.
	// +kubebuilder:default=token
	// +kubebuilder:validation:MinLength=1
	// +optional
	Key string `json:"key,omitempty"`
}

// APITokenSpec is the token a platform team asks for.
type APITokenSpec struct {
	// Permission of the token on the backend: ReadOnly (can only retrieve data; use it whenever the workload only reads) or FullAccess (can read and modify).
	// Changing it replaces the token.
	// +required
	Permission Permission `json:"permission"`

	// ExpiresAt is the RFC 3339 time at which the token stops working; unset means it never expires.
	// At that second the token is deactivated and the phase becomes Inactive.
	// Changing it replaces the token; a time already past when the token would be issued fails with reason ExpiresAtInPast.
	// Written as YYYY-MM-DDThh:mm:ss with an optional fraction of a second and Z or a ±hh:mm offset, before the year 9000.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	// +kubebuilder:validation:XValidation:rule="self < timestamp('9000-01-01T00:00:00Z')",message="spec.expiresAt must be before 9000-01-01"
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// BackendRef names the backend that issues the token.
	// Defaults to the ClusterStatusBackend named "default".
	// +kubebuilder:default={kind: ClusterStatusBackend, name: default}
	// +optional
	BackendRef *BackendReference `json:"backendRef,omitempty"`

	// SecretName is the Secret, in the APIToken's namespace, that receives the token under the keys token, tokenID, permission, expiresAt and url.
	// Defaults to the APIToken's name.
	// An existing Secret that this APIToken does not own is never overwritten.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// SecretTemplate holds labels and annotations to put on the Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// Description is shown on the backend token, to tell people what it is for: at most 255 bytes of UTF-8 on one line (no control characters), as the backend protocol allows.
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="bytes(self).size() <= 255",message="description must be at most 255 bytes of UTF-8"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[\\x00-\\x08\\x0a-\\x1f\\x7f]')",message="description must be one line without control characters (no newline)"
	// +optional
	Description string `json:"description,omitempty"`

	// Active set to false deactivates the backend token without deleting anything; setting it back to true issues a fresh token.
	// +kubebuilder:default=true
	// +optional
	Active *bool `json:"active,omitempty"`

	// Adopt brings an existing backend token under management without changing its value: verified with GET /api_tokens/self using the value (no backend write), then claimed and written to secretName.
	// Its permission or expiry, if it differs from this spec, is then replaced like any spec change.
	// It cannot be changed once set.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.adopt cannot be changed; to adopt another token, create another APIToken"
	// +optional
	Adopt *AdoptSpec `json:"adopt,omitempty"`

	// Rotation replaces tokens without downtime: scheduled by a lifetime, with an overlap in which the old value keeps working.
	// Unset, a replaced token is deactivated as soon as the Secret holds its successor.
	// +optional
	Rotation *RotationSpec `json:"rotation,omitempty"`

	// DeletionPolicy says what happens to the backend token when the APIToken is deleted: Revoke (default) deactivates it and removes the Secret; Retain leaves it active and keeps the Secret (without owner reference or managed-by label), even when the backend cannot be reached.
	// Retain needs the backend's consent (spec.retainNamespaces, and spec.retainFullAccessNamespaces for a FullAccess token): refused, the APIToken reports reason RetainNotAllowed and its deletion waits until deletionPolicy is Revoke.
	// +kubebuilder:default=Revoke
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// BackendStatusReference records the backend that holds a token: kind, name, namespace (for a StatusBackend) and UID, so that a backend deleted and re-created under the same name is never mistaken for the one that issued the token.
type BackendStatusReference struct {
	// Kind is StatusBackend or ClusterStatusBackend.
	Kind BackendKind `json:"kind"`
	// Name of the backend object.
	Name string `json:"name"`
	// Namespace of a StatusBackend; empty for a ClusterStatusBackend.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// UID of the backend object when the token was issued.
	// +optional
	UID string `json:"uid,omitempty"`
}

// RetiringToken is a backend token of this APIToken that the operator must still deactivate (a replaced token, or one left on a backend that spec.backendRef no longer names).
// It is listed here until the backend confirms it inactive, so no pass can forget it.
type RetiringToken struct {
	// TokenID is the backend id of the token.
	TokenID string `json:"tokenID"`
	// Backend holds the token.
	Backend BackendStatusReference `json:"backend"`
}

// PreviousToken is a replaced token that still works while it drains.
type PreviousToken struct {
	// TokenID is the backend id of the old token.
	TokenID string `json:"tokenID"`
	// TokenHint is its last four characters.
	// +optional
	TokenHint string `json:"tokenHint,omitempty"`
	// Permission of the old token: a FullAccess one is retired at once, without overlap, where the backend no longer allows FullAccess.
	// +optional
	Permission Permission `json:"permission,omitempty"`
	// Backend holds the token.
	Backend BackendStatusReference `json:"backend"`
	// SupersededAt is when the Secret stopped holding it.
	SupersededAt metav1.Time `json:"supersededAt"`
	// RetireAt is when it is deactivated: supersededAt plus the grace period, or its backend expiry if that is earlier.
	RetireAt metav1.Time `json:"retireAt"`
	// LastUsedAt is when it last authenticated, from the backend's last-used information.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`
}

// UsageStatus is what the backend reported of this APIToken's tokens' use, kept as the latest across every token it has had, for the least-privilege review.
type UsageStatus struct {
	// LastWriteAt is the last successful request other than GET, HEAD or OPTIONS.
	// +optional
	LastWriteAt *metav1.Time `json:"lastWriteAt,omitempty"`
	// LastDeniedAt is the last request refused because the token is read-only.
	// +optional
	LastDeniedAt *metav1.Time `json:"lastDeniedAt,omitempty"`
	// ObservedSince is when the operator began observing this usage (the review's verdict on unused write permission waits until a whole review window has been observed).
	// +optional
	ObservedSince *metav1.Time `json:"observedSince,omitempty"`
}

// APITokenStatus is what the operator observed and did.
type APITokenStatus struct {
	// Phase says whether the token in the Secret is usable: Pending, Active, Inactive or Failed.
	// +optional
	Phase APITokenPhase `json:"phase,omitempty"`

	// TokenID is the backend id of the token now in the Secret.
	// +optional
	TokenID string `json:"tokenID,omitempty"`

	// TokenHint is the last four characters of the token, to recognise it; never the value.
	// +optional
	TokenHint string `json:"tokenHint,omitempty"`

	// Permission of the token now in the Secret.
	// +optional
	Permission Permission `json:"permission,omitempty"`

	// SecretName is the Secret that holds the token.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// IssuedAt is when the backend created the token now in the Secret.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// ExpiresAt is the token's expiry as the backend reports it.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// RequestedExpiresAt is the expiry the operator asked the backend for when it issued the token now in the Secret (spec.expiresAt then).
	// A backend may cap or round it; expiresAt is what it granted.
	// Unset with status.backend set means none was requested.
	// +optional
	RequestedExpiresAt *metav1.Time `json:"requestedExpiresAt,omitempty"`

	// LastUsedAt is when the token last authenticated, from the backend's last-used information; refreshed once per sync interval.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// Backend is the backend that holds the current token (kind, name, namespace, UID).
	// +optional
	Backend *BackendStatusReference `json:"backend,omitempty"`

	// PendingDeactivation lists tokens of this APIToken that are still to be deactivated (a failed or interrupted deactivation is retried until the backend confirms it).
	// +listType=map
	// +listMapKey=tokenID
	// +kubebuilder:validation:MaxItems=16
	// +optional
	PendingDeactivation []RetiringToken `json:"pendingDeactivation,omitempty"`

	// IssueSerial counts the tokens issued for this APIToken.
	// With the APIToken's UID it forms the idempotency key of the next create call, so a retry after a crash replays the create instead of issuing a second token.
	// +optional
	IssueSerial int64 `json:"issueSerial,omitempty"`

	// AdoptedTokenID is the backend token this APIToken adopted (spec.adopt), once verified and claimed.
	// +optional
	AdoptedTokenID string `json:"adoptedTokenID,omitempty"`

	// RenewalTime is when the successor of the current token will be issued (scheduled rotation only).
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// PreviousTokens are replaced tokens still active while they drain, oldest first.
	// +listType=map
	// +listMapKey=tokenID
	// +kubebuilder:validation:MaxItems=2
	// +optional
	PreviousTokens []PreviousToken `json:"previousTokens,omitempty"`

	// Draining is the number of previousTokens, for kubectl's columns.
	// +optional
	Draining int32 `json:"draining,omitempty"`

	// RevocationHandled is the last value of the tokens.statusops.dev/revoke-requested-at annotation that has been carried out.
	// +optional
	RevocationHandled string `json:"revocationHandled,omitempty"`

	// RotationHandled is the last value of the tokens.statusops.dev/rotate-requested-at annotation that has been carried out; the same value never rotates twice.
	// +optional
	RotationHandled string `json:"rotationHandled,omitempty"`

	// RecentIssues is when each of the last token creations of this APIToken happened; it bounds how many tokens a misbehaving backend or spec can make the operator issue.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	RecentIssues []metav1.Time `json:"recentIssues,omitempty"`

	// Usage is the backend's write and denial information, for the least-privilege review.
	// +optional
	Usage *UsageStatus `json:"usage,omitempty"`

	// ObservedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling and Stalled (kstatus), and LeastPrivilege (the review, not part of Ready).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// APIToken declares an API token of a status backend and the Secret that holds it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apitok,categories=statusops
// +kubebuilder:printcolumn:name="Permission",type=string,JSONPath=`.spec.permission`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// +kubebuilder:printcolumn:name="Draining",type=integer,JSONPath=`.status.draining`,priority=1
// +kubebuilder:printcolumn:name="Renewal",type=string,JSONPath=`.status.renewalTime`,priority=1
// +kubebuilder:printcolumn:name="Least Privilege",type=string,JSONPath=`.status.conditions[?(@.type=="LeastPrivilege")].reason`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: it is used as a label value on the Secret"
type APIToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the token being asked for.
	// +required
	Spec APITokenSpec `json:"spec"`

	// Status is what the operator observed and did.
	// +optional
	Status APITokenStatus `json:"status,omitempty"`
}

// APITokenList is a list of APITokens.
// +kubebuilder:object:root=true
type APITokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the APITokens.
	Items []APIToken `json:"items"`
}

// SecretNameOrDefault is the Secret the token is written to.
func (t *APIToken) SecretNameOrDefault() string {
	if t.Spec.SecretName != "" {
		return t.Spec.SecretName
	}
	return t.Name
}

// IsActiveRequested reports whether spec.active asks for an active token (the default).
func (t *APIToken) IsActiveRequested() bool {
	return t.Spec.Active == nil || *t.Spec.Active
}

// BackendRefOrDefault is the backend reference with defaults applied, for objects that were not defaulted by the API server (for example in unit tests).
func (t *APIToken) BackendRefOrDefault() BackendReference {
	ref := BackendReference{Kind: BackendKindClusterStatusBackend, Name: "default"}
	if t.Spec.BackendRef != nil {
		ref = *t.Spec.BackendRef
		if ref.Kind == "" {
			ref.Kind = BackendKindClusterStatusBackend
		}
	}
	return ref
}

func init() {
	SchemeBuilder.Register(&APIToken{}, &APITokenList{})
}
