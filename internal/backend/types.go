// Package backend is the client for the status backend protocol
// (docs: shared/spec/backend-protocol.md). It speaks HTTP only and imports no
// Kubernetes package, so the operator and tools can share it.
package backend

import (
	"context"
	"time"
)

// Permission is the access level of a backend token.
type Permission string

const (
	// PermissionReadOnly allows GET, HEAD and OPTIONS on every resource.
	PermissionReadOnly Permission = "read_only"
	// PermissionFullAccess allows every method; token management also needs RoleAdmin.
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

// Token is a backend token object. It never carries the token value: the
// backend returns the value only once, in CreatedToken.
type Token struct {
	ID            string
	Name          string
	Description   string
	Permission    Permission
	Status        TokenStatus
	ExpiresAt     *time.Time
	LastUsedAt    *time.Time
	CreatedAt     time.Time
	DeactivatedAt *time.Time
	// Last4 is the last four characters of the value, for display only.
	Last4 string
	// ExternalID links the token to its owner (the APIToken uid); empty if none.
	ExternalID string
	Labels     map[string]string
	// Role is RoleAdmin for a credential that may manage tokens, empty otherwise.
	Role string
	// LastWriteAt and LastDeniedAt come with FeatureUsage: the last successful
	// write and the last refusal because the token is read-only. Nil when the
	// server lacks the feature or it never happened.
	LastWriteAt  *time.Time
	LastDeniedAt *time.Time
	// UpdatedAt comes with FeatureUpdatedSince: the last change of status,
	// usage stamps or external_id. Nil when the server lacks the feature.
	UpdatedAt *time.Time
}

// RoleAdmin is the role that token management needs. The backend gives it only
// to credentials made outside the API, so no issued token ever has it.
const RoleAdmin = "admin"

// IsAdmin reports whether the token may manage tokens (list, get, create,
// deactivate); the operator's own credential needs it.
func (t *Token) IsAdmin() bool { return t.Role == RoleAdmin }

// CreateRequest is the body of POST /api_tokens.
type CreateRequest struct {
	Name        string
	Permission  Permission
	ExpiresAt   *time.Time
	Description string
	ExternalID  string
	Labels      map[string]string
}

// CreatedToken is the answer to a create: the token object plus its value,
// which the backend sends only this once (or on an idempotent replay).
type CreatedToken struct {
	Token
	// Value is the secret token value; it redacts itself when printed.
	Value SecretValue
	// Replayed reports that the backend answered with the stored reply of an
	// earlier request with the same Idempotency-Key (header Idempotent-Replayed).
	Replayed bool
}

// ListOptions filters ListTokens. Zero fields do not filter.
type ListOptions struct {
	ExternalID string
	// Labels are AND-ed: a token must carry every pair.
	Labels map[string]string
	Status TokenStatus
	// PerPage is the page size requested from the server (1..100, default 100);
	// ListTokens follows every page regardless.
	PerPage int
	// UpdatedSince, when set, lists only tokens with updated_at at or after it,
	// ordered by (updated_at, id) ascending instead of newest first. Use it only
	// when Features lists FeatureUpdatedSince.
	UpdatedSince time.Time
	// Keep, when set, is applied to each listed token as its page is decoded, so that a
	// walk of every token holds only what the caller keeps of them (the inventory drops the
	// description and all but one label), not the whole list as sent.
	Keep func(Token) Token
}

func (o ListOptions) keep(t Token) Token {
	if o.Keep == nil {
		return t
	}
	return o.Keep(t)
}

// Feature names a protocol extension a server lists in GET /ping.
type Feature string

const (
	// FeatureUsage adds Token.LastWriteAt and Token.LastDeniedAt.
	FeatureUsage Feature = "usage"
	// FeatureClaim adds ClaimToken.
	FeatureClaim Feature = "claim"
	// FeatureUpdatedSince adds Token.UpdatedAt and ListOptions.UpdatedSince.
	FeatureUpdatedSince Feature = "updated_since"
)

// Features is the set of extensions a server implements; the operator uses
// one only when it is listed, so it keeps working against a plain server.
type Features []Feature

// Has reports whether f is listed.
func (fs Features) Has(f Feature) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// Client is what the operator needs from a status backend. *HTTPClient
// implements it; tests may substitute their own.
type Client interface {
	// Ping checks that the backend is reachable and the credential is valid.
	Ping(ctx context.Context) error
	// CreateToken issues a token. The same idempotencyKey with the same request
	// replays the first reply, so a retried create never issues a second token.
	CreateToken(ctx context.Context, idempotencyKey string, req CreateRequest) (*CreatedToken, error)
	// GetToken reads one token by id; IsNotFound(err) when it does not exist.
	GetToken(ctx context.Context, id string) (*Token, error)
	// ListTokens returns every token matching opts, following all pages, newest first.
	ListTokens(ctx context.Context, opts ListOptions) ([]Token, error)
	// DeactivateToken marks a token inactive; repeating it is harmless.
	DeactivateToken(ctx context.Context, id string) (*Token, error)
	// Self returns the token object of the client's own credential.
	Self(ctx context.Context) (*Token, error)
}

// ExtendedClient adds the protocol extensions. It is separate from Client so
// existing substitutes of Client keep compiling; *HTTPClient implements both.
type ExtendedClient interface {
	Client
	// Features returns the extensions the server lists in GET /ping (only the
	// ones this client knows); empty for a server without extensions.
	Features(ctx context.Context) (Features, error)
	// ClaimToken sets the token's external_id if it is unset or already
	// externalID; IsClaimed(err) when another value holds it.
	ClaimToken(ctx context.Context, id, externalID string) (*Token, error)
}
