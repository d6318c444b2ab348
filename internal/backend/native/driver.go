package native

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/statusops/apitoken-operator/internal/backend"
)

// Driver is the port over a Client: a backend.Driver, a backend.Claimer and a
// backend.Identifier.
type Driver struct {
	c *Client
}

var (
	_ backend.Driver     = (*Driver)(nil)
	_ backend.Claimer    = (*Driver)(nil)
	_ backend.Identifier = (*Driver)(nil)
)

// NewDriver builds the native driver from a backend.Config.
func NewDriver(cfg backend.Config) (backend.Driver, error) {
	c, err := New(Options{BaseURL: cfg.URL, Token: cfg.Credential, CABundle: cfg.CABundle, Timeout: cfg.Timeout, Observer: cfg.Observer})
	if err != nil {
		return nil, err
	}
	return c.Driver(), nil
}

// Driver is the port over c: always the same one, so that a registration of it is
// recognised as the same client.
func (c *Client) Driver() *Driver { return c.driver }

// Client is the protocol client under the port.
func (d *Driver) Client() *Client { return d.c }

// port converts the answer of a protocol call to the port's.
func port(t *Token, err error) (*backend.Token, error) {
	if err != nil {
		return nil, err
	}
	p := t.Port()
	return &p, nil
}

// Self implements backend.Driver: GET /api_tokens/self.
func (d *Driver) Self(ctx context.Context) (*backend.Token, error) {
	return port(d.c.Self(ctx))
}

// Capabilities implements backend.Driver: the protocol extensions GET /ping lists.
func (d *Driver) Capabilities(ctx context.Context) (backend.Capabilities, error) {
	fs, err := d.c.Features(ctx)
	if err != nil {
		return nil, err
	}
	out := backend.Capabilities{}
	for _, f := range fs {
		out = append(out, backend.Capability(f))
	}
	return out, nil
}

// CreateRequestFor is the protocol's create request for owner and spec: external_id is the
// APIToken UID, and the labels say the operator of owner.Cluster made it.
func CreateRequestFor(owner backend.Owner, spec backend.TokenSpec) CreateRequest {
	labels := map[string]string{LabelManagedBy: ManagedByValue}
	if owner.Cluster != "" {
		labels[LabelCluster] = owner.Cluster
	}
	return CreateRequest{
		Name:        spec.Name,
		Permission:  spec.Permission,
		Description: spec.Description,
		ExternalID:  owner.UID,
		Labels:      labels,
		ExpiresAt:   spec.ExpiresAt,
	}
}

// IdempotencyKey is the Idempotency-Key of a create: UID, serial and a hash of the request.
// It depends only on what the operator's status says before the Secret holds the value, so a
// retry after a crash replays the create instead of issuing a second token; a request that
// changed (a new expiry) is a new create, and the first token an orphan the sweep deactivates.
func IdempotencyKey(owner backend.Owner, req CreateRequest) string {
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%s-%d-%s", owner.UID, owner.Serial, hex.EncodeToString(sum[:8]))
}

// Create implements backend.Driver: POST /api_tokens with the owner's idempotency key.
func (d *Driver) Create(ctx context.Context, owner backend.Owner, spec backend.TokenSpec) (*backend.CreatedToken, error) {
	req := CreateRequestFor(owner, spec)
	created, err := d.c.CreateToken(ctx, IdempotencyKey(owner, req), req)
	if err != nil {
		return nil, err
	}
	if created.Replayed {
		// A replay is the first reply as it was, active; the token may have been
		// deactivated since (by the pass that made it, whose Secret write failed).
		if err := d.replayLives(ctx, created.ID); err != nil {
			return nil, err
		}
	}
	return &backend.CreatedToken{Token: created.Port(), Value: created.Value, Replayed: created.Replayed}, nil
}

// replayLives checks that the token a create replayed is still there and active: one read,
// made only on a replay (after a crash or a failed pass). A token deactivated or gone since is
// KindSpent.
func (d *Driver) replayLives(ctx context.Context, id string) error {
	const op = "create"
	cur, err := d.c.GetToken(ctx, id)
	switch {
	case backend.IsNotFound(err):
		return backend.NewError(op, backend.KindSpent, 0, "the create replayed token %s, which is gone since", id)
	case err != nil:
		return err
	case cur.Status != backend.StatusActive:
		return backend.NewError(op, backend.KindSpent, 0, "the create replayed token %s, which was deactivated since", id)
	}
	return nil
}

// Get implements backend.Driver.
func (d *Driver) Get(ctx context.Context, id string) (*backend.Token, error) {
	return port(d.c.GetToken(ctx, id))
}

// List implements backend.Driver. Each token is converted (and kept) as its page is decoded.
func (d *Driver) List(ctx context.Context, o backend.ListOptions) ([]backend.Token, error) {
	keep := o.Keep
	if keep == nil {
		keep = func(t backend.Token) backend.Token { return t }
	}
	opts := ListOptions{ExternalID: o.Owner, Status: o.Status, UpdatedSince: o.UpdatedSince}
	return listTokens(ctx, d.c, opts, func(w *tokenWire) backend.Token {
		t := w.toToken()
		return keep(t.Port())
	})
}

// Deactivate implements backend.Driver.
func (d *Driver) Deactivate(ctx context.Context, id string) (*backend.Token, error) {
	return port(d.c.DeactivateToken(ctx, id))
}

// Claim implements backend.Claimer: POST /api_tokens/{id}/claim, a compare-and-set of
// external_id (the protocol cannot add the cluster label to a token made by hand).
func (d *Driver) Claim(ctx context.Context, id string, owner backend.Owner) (*backend.Token, error) {
	return port(d.c.ClaimToken(ctx, id, owner.UID))
}

// Identify implements backend.Identifier: GET /api_tokens/self with the value itself. It makes
// no write, but the protocol counts it as a use of the token (last_used_at).
func (d *Driver) Identify(ctx context.Context, value backend.SecretValue) (*backend.Token, error) {
	c := d.c
	probe, err := New(Options{BaseURL: c.base.String(), Token: value, HTTPClient: c.http, Timeout: c.timeout, MaxResponseBytes: c.maxBytes, UserAgent: c.userAgent, Observer: c.observer})
	if err != nil {
		return nil, backend.NewError("self", backend.KindUnauthorized, 0, "the value cannot be used as a token: %v", err)
	}
	return port(probe.Self(ctx))
}
