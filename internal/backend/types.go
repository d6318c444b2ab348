// Package backend is the driver-neutral port between the operator and a token backend: what a
// token is, who owns it, the core operations every driver implements (Driver), the abilities
// a driver may add (Claimer, Identifier, and the Capabilities it lists), and the error kinds
// the controllers decide on. Each backend is a driver in a package of its own below this one
// (native: the HTTP protocol of docs/backend-protocol.md; zabbix: Zabbix API tokens); the
// controllers speak only this port. It imports no Kubernetes package.
package backend

import (
	"context"
	"time"
)

// Permission is the access level of a backend token.
type Permission string

const (
	// PermissionReadOnly may only read.
	PermissionReadOnly Permission = "read_only"
	// PermissionFullAccess may read and write; token management also needs Token.Admin.
	PermissionFullAccess Permission = "full_access"
)

// TokenStatus is the lifecycle state the backend reports for a token.
type TokenStatus string

const (
	// StatusActive means the token authenticates.
	StatusActive TokenStatus = "active"
	// StatusInactive means the token was deactivated or has expired.
	StatusInactive TokenStatus = "inactive"
)

// Owner is who a token belongs to. Each driver encodes it in what its backend has (the native
// protocol: external_id and a cluster label; Zabbix: the token's name) and reads it back the
// same way, so the isolation rules hold for every driver: the operator deactivates only tokens
// its backend shows with the APIToken's UID.
type Owner struct {
	// UID is the owning APIToken's UID; "" for a token nobody owns.
	UID string
	// Cluster is the identity of the cluster whose operator created the token; "" when the
	// backend does not say (a token made by hand and adopted).
	Cluster string
	// Serial is the issue serial the token was created for; 0 when the backend does not say.
	Serial int64
}

// Token is a backend token object. It never carries the token value: a backend shows the value
// only once, in CreatedToken.
type Token struct {
	ID          string
	Name        string
	Description string
	Permission  Permission
	Status      TokenStatus
	ExpiresAt   *time.Time
	LastUsedAt  *time.Time
	CreatedAt   time.Time
	// DeactivatedAt is when the token was deactivated; nil while active, and for a backend that
	// keeps no such time (the driver then sets it when it reports a deactivated token).
	DeactivatedAt *time.Time
	// Last4 is the last four characters of the value, for display only.
	Last4 string
	// Owner is who the token belongs to, as the backend says.
	Owner Owner
	// Admin reports a credential that may manage tokens (list, get, create, deactivate): the
	// operator's own credential must be one, and no issued token ever is.
	Admin bool
	// LastWriteAt and LastDeniedAt come with CapabilityUsage: the last successful write and
	// the last refusal because the token is read-only. Nil when the backend lacks it or it
	// never happened.
	LastWriteAt  *time.Time
	LastDeniedAt *time.Time
	// UpdatedAt comes with CapabilityUpdatedSince: the last change of status, usage stamps or
	// owner. Nil when the backend lacks it.
	UpdatedAt *time.Time
}

// IsAdmin reports whether the token may manage tokens; the operator's own credential needs it.
func (t *Token) IsAdmin() bool { return t.Admin }

// TokenSpec is what a new token must be.
type TokenSpec struct {
	// Name says what the token is for (the APIToken's namespace/name), for people reading the
	// backend; a driver may shorten it or keep it elsewhere.
	Name       string
	Permission Permission
	// ExpiresAt is the expiry to ask for; nil for none.
	ExpiresAt   *time.Time
	Description string
}

// CreatedToken is the answer to a create: the token object plus its value, which the backend
// gives only this once (or again on a replay of the same create).
type CreatedToken struct {
	Token
	// Value is the secret token value; it redacts itself when printed.
	Value SecretValue
	// Replayed reports that the backend answered with the token of an earlier create for the
	// same owner, serial and spec (a retry after a lost reply), not with a new one.
	Replayed bool
}

// ListOptions filters List. Zero fields do not filter.
type ListOptions struct {
	// Owner lists only the tokens of this APIToken UID.
	Owner  string
	Status TokenStatus
	// UpdatedSince, when set, lists only tokens changed at or after it, oldest change first.
	// Use it only when the driver lists CapabilityUpdatedSince.
	UpdatedSince time.Time
	// Keep, when set, is applied to each listed token as it is decoded, so that a walk of every
	// token holds only what the caller keeps of them (the inventory drops the description).
	Keep func(Token) Token
}

// Capability names what a driver offers beyond the core operations. The operator uses one
// only when the backend lists it, and a missing one degrades a feature with a reason.
type Capability string

const (
	// CapabilityUsage adds Token.LastWriteAt and Token.LastDeniedAt (the least-privilege review).
	CapabilityUsage Capability = "usage"
	// CapabilityClaim: the driver implements Claimer and Identifier (adoption).
	CapabilityClaim Capability = "claim"
	// CapabilityUpdatedSince adds Token.UpdatedAt and ListOptions.UpdatedSince (an idle
	// inventory costs one request whatever the number of tokens).
	CapabilityUpdatedSince Capability = "updated_since"
)

// AllCapabilities are the capabilities the operator knows, for status and docs.
var AllCapabilities = []Capability{CapabilityUsage, CapabilityClaim, CapabilityUpdatedSince}

// Capabilities is the set a backend offers.
type Capabilities []Capability

// Has reports whether c is listed.
func (cs Capabilities) Has(c Capability) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// Driver is the core port: what the operator needs of every backend.
//
// Every method is safe for concurrent use and does not retry (the operator's work queue backs
// off on transient errors). Errors are *Error with one of the ErrorKinds, whatever the backend
// said; their messages never hold a token value.
type Driver interface {
	// Self returns the credential's own token object: Admin must be true for the operator to
	// manage tokens. It is also the backend check (reachable, the credential valid); a driver
	// whose backend is set up wrongly for the operator says exactly what in a KindMisconfigured
	// error.
	Self(ctx context.Context) (*Token, error)
	// Capabilities lists what the backend offers beyond the core; read at each check.
	Capabilities(ctx context.Context) (Capabilities, error)
	// Create issues a token for owner as spec asks. Called again for the same owner (UID and
	// serial) and spec, after a reply that was lost or a crash, it never leaves a second live
	// token: the driver replays, finds or regenerates the first, so exactly one live value of
	// that create reaches the caller. When that first token was deactivated since, the create
	// makes nothing and answers KindSpent (a replay must not hand out a dead value as live);
	// the caller asks again with the next serial.
	Create(ctx context.Context, owner Owner, spec TokenSpec) (*CreatedToken, error)
	// Get reads one token; IsNotFound(err) when it does not exist.
	Get(ctx context.Context, id string) (*Token, error)
	// List returns every token matching opts, the backend's admin credentials included.
	List(ctx context.Context, opts ListOptions) ([]Token, error)
	// Deactivate makes a token stop authenticating; repeating it is harmless.
	Deactivate(ctx context.Context, id string) (*Token, error)
}

// Claimer is the adoption side of a driver that lists CapabilityClaim: it marks an existing
// token as owner's (one write), unless another owner holds it (IsClaimed).
type Claimer interface {
	Claim(ctx context.Context, id string, owner Owner) (*Token, error)
}

// Identifier tells which token a value is, without writing to the backend and without
// counting as a use where the backend allows: adoption verifies possession with it.
// IsUnauthorized(err) when the value is unknown; an inactive token may be returned as such.
type Identifier interface {
	Identify(ctx context.Context, value SecretValue) (*Token, error)
}

// Endpointer tells the URL a workload calls with a token of this backend (the Secret's url
// key), when it is not the backend object's URL as written.
type Endpointer interface {
	Endpoint() string
}
