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

// RoleAdmin is the role of a token that may manage tokens (the backend's bootstrap
// credential, or one an administrator made outside the API).
const RoleAdmin = "admin"

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
	// Role is "admin" for a credential that may manage tokens, empty otherwise.
	Role string
}

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
