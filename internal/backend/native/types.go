// Package native is the driver of the operator's own HTTP protocol (docs/backend-protocol.md):
// Client speaks the protocol (its methods are the protocol's calls, for tools and tests) and
// implements the port, backend.Driver with backend.Claimer and backend.Identifier. The owner
// of a token is its external_id (the APIToken UID) and the label tokens.statusops.dev/cluster;
// a create's Idempotency-Key is derived from the owner, the issue serial and the request, so a
// retried create replays instead of issuing a second token.
package native

import (
	"time"

	"github.com/statusops/apitoken-operator/internal/backend"
)

// RoleAdmin is the role that token management needs. The backend gives it only to credentials
// made outside the API, so no issued token ever has it.
const RoleAdmin = "admin"

// Labels the operator puts on the tokens it creates (the protocol cannot change them later, so
// a token keeps the identity it was created with).
const (
	// LabelManagedBy says who made the token.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "apitoken-operator"
	// LabelCluster carries the identity of the cluster whose operator made the token: clusters
	// sharing one backend account tell their tokens apart by it.
	LabelCluster = "tokens.statusops.dev/cluster"
)

// CreateRequest is the body of POST /api_tokens.
type CreateRequest struct {
	Name        string
	Permission  backend.Permission
	ExpiresAt   *time.Time
	Description string
	ExternalID  string
	Labels      map[string]string
}

// ListOptions filters ListTokens. Zero fields do not filter.
type ListOptions struct {
	ExternalID string
	// Labels are AND-ed: a token must carry every pair.
	Labels map[string]string
	Status backend.TokenStatus
	// PerPage is the page size requested from the server (1..100, default 100);
	// ListTokens follows every page regardless.
	PerPage int
	// UpdatedSince, when set, lists only tokens with updated_at at or after it,
	// ordered by (updated_at, id) ascending instead of newest first. Use it only
	// when Features lists FeatureUpdatedSince.
	UpdatedSince time.Time
	// Keep, when set, is applied to each listed token as its page is decoded, so that a
	// walk of every token holds only what the caller keeps of them (the inventory drops the
	// description), not the whole list as sent.
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

// Token is a token object as the protocol sends it. It never carries the token value.
type Token struct {
	ID            string
	Name          string
	Description   string
	Permission    backend.Permission
	Status        backend.TokenStatus
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
	// LastWriteAt and LastDeniedAt come with FeatureUsage.
	LastWriteAt  *time.Time
	LastDeniedAt *time.Time
	// UpdatedAt comes with FeatureUpdatedSince.
	UpdatedAt *time.Time
}

// IsAdmin reports whether the token may manage tokens; the operator's own credential needs it.
func (t *Token) IsAdmin() bool { return t.Role == RoleAdmin }

// Port is the token as the port sees it: the owner is external_id and the cluster label.
func (t *Token) Port() backend.Token {
	return backend.Token{
		ID: t.ID, Name: t.Name, Description: t.Description, Permission: t.Permission, Status: t.Status,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, CreatedAt: t.CreatedAt, DeactivatedAt: t.DeactivatedAt,
		Last4: t.Last4, Owner: backend.Owner{UID: t.ExternalID, Cluster: t.Labels[LabelCluster]}, Admin: t.IsAdmin(),
		LastWriteAt: t.LastWriteAt, LastDeniedAt: t.LastDeniedAt, UpdatedAt: t.UpdatedAt,
	}
}

// CreatedToken is the answer to a create: the token object plus its value, which the backend
// sends only this once (or on an idempotent replay).
type CreatedToken struct {
	Token
	// Value is the secret token value; it redacts itself when printed.
	Value backend.SecretValue
	// Replayed reports that the backend answered with the stored reply of an earlier request
	// with the same Idempotency-Key (header Idempotent-Replayed).
	Replayed bool
}
