package v1alpha1

// Condition types. Ready carries the GitOps meaning (the spec has been carried out);
// Reconciling and Stalled follow the kstatus convention so that
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute reports Current, InProgress or Failed.
const (
	// ConditionReady is True when the object has reached what its spec asks for.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller is still working towards the spec
	// (issuing, replacing, or retrying a transient error).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the controller cannot make progress without a person
	// changing something (invalid spec, conflict, expiry, missing backend).
	ConditionStalled = "Stalled"
	// ConditionLeastPrivilege is the least-privilege review of the token's use: False when a
	// FullAccess token made no write in the review window, or a ReadOnly one was refused
	// writes. It is not part of Ready or kstatus: the token works either way.
	ConditionLeastPrivilege = "LeastPrivilege"
)

// Condition reasons. They are CamelCase so that tools can match on them; the condition
// message is the sentence a person reads.
const (
	// ReasonIssued: an active token is in the Secret.
	ReasonIssued = "Issued"
	// ReasonDeactivated: spec.active is false and the backend token has been deactivated.
	ReasonDeactivated = "Deactivated"
	// ReasonBackendNotReady: the referenced backend exists but is not Ready; the token
	// waits and proceeds when the backend becomes Ready.
	ReasonBackendNotReady = "BackendNotReady"
	// ReasonBackendNotFound: the referenced StatusBackend or ClusterStatusBackend does not exist.
	ReasonBackendNotFound = "BackendNotFound"
	// ReasonBackendError: a call to the backend failed with a transient error; it is retried
	// with backoff.
	ReasonBackendError = "BackendError"
	// ReasonBackendRejected: the backend refused the request in a way a retry cannot fix
	// (for example 400 or 403); the message says what the backend answered.
	ReasonBackendRejected = "BackendRejected"
	// ReasonExpired: spec.expiresAt has passed and the token has been deactivated.
	ReasonExpired = "Expired"
	// ReasonExpiresAtInPast: spec.expiresAt was already in the past when the token would
	// have been issued, so nothing was issued.
	ReasonExpiresAtInPast = "ExpiresAtInPast"
	// ReasonSecretConflict: a Secret named spec.secretName exists and is not owned by this
	// APIToken; it is never overwritten.
	ReasonSecretConflict = "SecretConflict"
	// ReasonNamespaceNotAllowed: the ClusterStatusBackend's allowedNamespaces does not
	// select the APIToken's namespace.
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	// ReasonPermissionNotAllowed: the backend's fullAccessNamespaces does not select the
	// APIToken's namespace and spec.permission is FullAccess.
	ReasonPermissionNotAllowed = "PermissionNotAllowed"
	// ReasonInvalidSecretTemplate: a spec.secretTemplate label or annotation key is not a
	// valid Kubernetes key; nothing is issued until it is fixed.
	ReasonInvalidSecretTemplate = "InvalidSecretTemplate"
	// ReasonSecretWriteFailed: the API server refused the Secret write (for example an
	// invalid label from spec.secretTemplate); the message carries the server's answer.
	ReasonSecretWriteFailed = "SecretWriteFailed"
	// ReasonBackendMismatch: the backend answered a create with another permission, owner or
	// id than requested; the token was deactivated and nothing more is issued.
	ReasonBackendMismatch = "BackendMismatch"
	// ReasonIssuanceLimited: more tokens were created for this APIToken in a short time than
	// the issuance budget allows; nothing more is issued until a person looks.
	ReasonIssuanceLimited = "IssuanceLimited"
	// ReasonDeactivationPending: the token in the Secret is active, but an older token of this
	// APIToken (status.pendingDeactivation) still has to be deactivated; it is retried.
	ReasonDeactivationPending = "DeactivationPending"
	// ReasonAdopted: an existing backend token was verified, claimed and put in the Secret
	// (spec.adopt); Ready is True.
	ReasonAdopted = "Adopted"
	// ReasonAdoptionFailed: the adopted token could not be verified: the secretRef Secret or
	// key is missing, the value does not authenticate, it names another token, the token is
	// inactive, or the backend cannot claim tokens.
	ReasonAdoptionFailed = "AdoptionFailed"
	// ReasonAlreadyManaged: the token to adopt already belongs to another owner (its
	// external_id is set to another value), for example another APIToken.
	ReasonAlreadyManaged = "AlreadyManaged"
	// ReasonAdoptionForbidden: the value is the backend's admin credential, which an
	// APIToken must never hold (deactivating it would cut off the operator).
	ReasonAdoptionForbidden = "AdoptionForbidden"
	// ReasonUnusedWritePermission (LeastPrivilege=False): a FullAccess token made no write
	// during the review window; spec.permission: ReadOnly would do.
	ReasonUnusedWritePermission = "UnusedWritePermission"
	// ReasonWritesDenied (LeastPrivilege=False): a ReadOnly token was refused a write during
	// the review window; the workload tries to write.
	ReasonWritesDenied = "WritesDenied"
	// ReasonInsufficientHistory (LeastPrivilege=Unknown): the review window has not been
	// observed yet, or the backend does not report usage.
	ReasonInsufficientHistory = "InsufficientHistory"
	// ReasonLeastPrivilege (LeastPrivilege=True): the permission fits the observed use.
	ReasonLeastPrivilege = "PermissionFitsUse"
	// ReasonRetainNotAllowed: spec.deletionPolicy is Retain, and the backend does not allow
	// this namespace to retain a token of this permission (retainNamespaces,
	// retainFullAccessNamespaces). The token works; deletion waits until deletionPolicy is Revoke.
	ReasonRetainNotAllowed = "RetainNotAllowed"
	// ReasonDeleting: the APIToken is being deleted and its backend token is being
	// deactivated (deletionPolicy Revoke) before the finalizer is removed.
	ReasonDeleting = "Deleting"

	// ReasonPingSucceeded: GET /ping with the backend credential answered 200.
	ReasonPingSucceeded = "PingSucceeded"
	// ReasonCredentialsNotFound: the credentials Secret or its key does not exist.
	ReasonCredentialsNotFound = "CredentialsNotFound"
	// ReasonCredentialsInvalid: the backend rejected the credential (401), or it is read-only
	// and so cannot manage tokens.
	ReasonCredentialsInvalid = "CredentialsInvalid"
	// ReasonBackendUnreachable: the backend URL could not be reached or did not speak the protocol.
	ReasonBackendUnreachable = "BackendUnreachable"
	// ReasonInUse: the backend is being deleted and waits until no APIToken refers to it.
	ReasonInUse = "InUse"
	// ReasonInvalidConfiguration: the backend spec cannot be used as written (for example a
	// CA bundle that is not PEM).
	ReasonInvalidConfiguration = "InvalidConfiguration"
)

// Event reasons of an APIToken. Each has one meaning, so an alert or a `kubectl get events
// --field-selector reason=...` can rely on it.
const (
	// EventIssued: a first token, or a fresh one after it was inactive, is in the Secret.
	EventIssued = "Issued"
	// EventReplaced: a new token replaced the current one (spec change, rotation, drift).
	EventReplaced = "Replaced"
	// EventRevokedOnBackend (Warning): the current token was found inactive or missing on the
	// backend (revoked by hand in its UI) and was replaced.
	EventRevokedOnBackend = "RevokedOnBackend"
	// EventRevoked: the backend token was deactivated because the APIToken was deleted.
	EventRevoked = "Revoked"
	// EventExpired: spec.expiresAt was reached and the token deactivated.
	EventExpired = "Expired"
	// EventDeactivated: spec.active is false and the token was deactivated.
	EventDeactivated = "Deactivated"
	// EventPolicyDeactivated (Warning): a backend policy (allowedNamespaces,
	// fullAccessNamespaces) no longer allows the token, and it was deactivated.
	EventPolicyDeactivated = "PolicyDeactivated"
	// EventFailed (Warning): the APIToken needs a person; the note says what to do.
	EventFailed = "Failed"
	// EventBackendMismatch (Warning): a create reply was refused (see ReasonBackendMismatch).
	EventBackendMismatch = "BackendMismatch"
	// EventSecretWriteFailed (Warning): the API server refused the Secret.
	EventSecretWriteFailed = "SecretWriteFailed"
	// EventRevocationSkipped (Warning): deleted with the skip-revoke annotation; the backend
	// token may stay active.
	EventRevocationSkipped = "RevocationSkipped"
	// EventDeactivationAbandoned (Warning): a token to deactivate is on a backend object that
	// no longer exists; it may stay active until it expires.
	EventDeactivationAbandoned = "DeactivationAbandoned"
	// EventPredecessorRetired: a replaced token was deactivated; the note says why (grace
	// over, unused, superseded by a newer replacement, revoked).
	EventPredecessorRetired = "PredecessorRetired"
	// EventPredecessorStillInUse (Warning): a replaced token was still used when its grace
	// period ended and was retired anyway; a consumer never picked up the new value.
	EventPredecessorStillInUse = "PredecessorStillInUse"
	// EventAdopted: an existing backend token was verified, claimed and put in the Secret.
	EventAdopted = "Adopted"
	// EventLeastPrivilegeFinding (Warning): the review found UnusedWritePermission or
	// WritesDenied (only on a change to False).
	EventLeastPrivilegeFinding = "LeastPrivilegeFinding"
	// EventRolloutTriggered: a workload that opted in was rolled out because a named
	// APIToken's token changed (on the workload and on the APIToken).
	EventRolloutTriggered = "RolloutTriggered"
	// EventRestartTargetMissing (Warning): a workload names an APIToken that does not exist.
	EventRestartTargetMissing = "RestartTargetMissing"
	// EventRolloutBlocked (Warning): an opted-in workload cannot roll out (a paused
	// Deployment); the predecessor waits for the grace period.
	EventRolloutBlocked = "RolloutBlocked"
	// EventUndecodable (Warning): the operator could not decode the object as stored (a value
	// its Go type refuses, brought in past the schema by a CRD upgrade or a direct etcd write);
	// it is left out of the operator's cache, so nothing is done for it until it is fixed.
	EventUndecodable = "Undecodable"
	// EventRetained (Warning): deletionPolicy Retain left tokens active that could not all be
	// checked.
	EventRetained = "Retained"
)

// Well-known labels and annotations.
const (
	// LabelManagedBy is put on every Secret the operator writes; the operator caches only
	// Secrets that carry it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "apitoken-operator"
	// LabelAPIToken names the APIToken that owns a Secret.
	LabelAPIToken = "tokens.statusops.dev/apitoken"
	// AnnotationRotateRequestedAt: setting it to a new value replaces the token once.
	AnnotationRotateRequestedAt = "tokens.statusops.dev/rotate-requested-at"
	// AnnotationRevokeRequestedAt: setting it to a new value (a leaked token) issues a new
	// token and deactivates every older one at once, with no overlap.
	AnnotationRevokeRequestedAt = "tokens.statusops.dev/revoke-requested-at"
	// AnnotationRestartOnRotate on a Deployment, StatefulSet or DaemonSet names (comma-
	// separated) the APITokens of its namespace whose rotation rolls it out: consent lives on
	// the workload (with --restart-workloads).
	AnnotationRestartOnRotate = "tokens.statusops.dev/restart-on-rotate"
	// AnnotationTokensHash is the pod-template annotation the operator sets to a hash of the
	// named APITokens' current token ids; changing it is what rolls the workload out.
	AnnotationTokensHash = "tokens.statusops.dev/tokens-hash"
	// AnnotationSkipRevoke set to "true" on an APIToken lets it be deleted without deactivating
	// its backend token: the way out when a backend is gone for good. An Event says the backend
	// token may still be active.
	AnnotationSkipRevoke = "tokens.statusops.dev/skip-revoke"
	// CredentialsFinalizer is put on a backend's credentials Secret while APITokens depend on
	// that backend, so the credential outlives them (namespace deletion included).
	CredentialsFinalizer = "tokens.statusops.dev/credentials-in-use"
	// Finalizer keeps an APIToken until its backend token has been deactivated and its
	// Secret removed.
	Finalizer = "tokens.statusops.dev/finalizer"
)

// Data keys of the Secret an APIToken writes.
const (
	SecretKeyToken      = "token"
	SecretKeyTokenID    = "tokenID"
	SecretKeyPermission = "permission"
	SecretKeyExpiresAt  = "expiresAt"
	SecretKeyURL        = "url"
)
