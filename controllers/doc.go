// Package controllers holds the reconcilers of APIToken, StatusBackend and
// ClusterStatusBackend, and the in-memory machinery they share. A two-minute map:
//
// # APIToken reconciler (apitoken_*.go)
//
// Each pass gathers its inputs (apitoken_gather.go: the APIToken, its Secret from the cache,
// the backend object, the backend's last inventory, the clock; data only, no client), asks
// the pure function decide (apitoken_checks.go) for the outcome: the one action, the status
// to report once it is done, and the event to emit. It then carries out that action: issue
// (apitoken_issue.go), adopt (apitoken_adopt.go), deactivate or sweep (apitoken_sweep.go),
// delete (apitoken_delete.go), with the backend's client from the registry. Status is
// written once per pass, in a deferred merge patch, only when it changed; the setters are in
// apitoken_status.go. Its event sources:
//
//   - APITokens: spec, annotation, label and deletion changes (status writes do not wake it);
//   - managed Secrets (Owns), and a metadata-only watch of other Secrets, so a token in
//     SecretConflict proceeds as soon as the foreign Secret goes;
//   - StatusBackend and ClusterStatusBackend objects whose Ready condition or spec changed,
//     and Namespaces whose labels changed (allowedNamespaces, fullAccessNamespaces);
//   - the backend registry's channel (a backend became usable) and the inventory's channel
//     (a token's last use or liveness on the backend changed).
//
// # Backend registry (backend_registry.go)
//
// The backend reconcilers check each backend's credential (GET /api_tokens/self, which must
// be the backend's admin token) and put a ready client in the registry; only a registered
// backend is called by the APIToken reconciler. A (re)registration wakes exactly the
// APITokens of that backend. When a call fails as if the backend were down, the APIToken
// reconciler reports an outage: the backend is re-checked at once and, while down,
// unregistered, so its tokens wait quietly instead of each retrying; the next successful
// check wakes them all at once. The registry also caps the requests in flight per backend,
// so one slow or hostile backend cannot hold every worker.
//
// # Inventory (inventory.go)
//
// Once per sync interval, per registered backend, it reads the backend's tokens (all of
// them, not only the operator's; the admin tokens are left out): a full list after each
// registration (and every few hours), and in between, where the backend offers
// updated_since, only the tokens changed since the last walk (so an idle interval costs one
// request whatever the number of tokens). It feeds status.lastUsedAt, finds tokens revoked
// by hand (then confirmed with a GET on the token itself, since a list walk can miss one),
// and finds active tokens of an APIToken that its status does not name, which the next pass
// deactivates. It wakes only the APITokens whose view changed. It also counts the tokens by
// who manages them, for the backend's status.tokens (written by the backend's controller,
// which it wakes only when the counts change). Tokens labelled with another cluster's
// identity (tokens.statusops.dev/cluster) are counted as the other clusters' and left out of
// the per-APIToken index, so they are never swept as orphans.
//
// # Write expectations (expectations.go)
//
// The cache lags behind the operator's own writes. After a pass wrote a Secret and a new
// issue serial, the next pass waits (briefly, and at most expectationTimeout) until the cache
// shows them, instead of issuing again from a stale copy. Memory only: after a restart the
// caches start from a fresh list.
//
// # Token holders (token_holders.go)
//
// A map from a backend token id to the APIToken whose status names it, fed by the APIToken
// informer's events. An issuance whose reply names a token id another APIToken already holds
// is refused (a backend that hands out one id twice). A field index of the cache would keep
// two sets per APIToken for it; the map keeps one small entry.
//
// # Where safety comes from
//
// Every token to retire is first recorded in status.pendingDeactivation with the backend
// that holds it, and leaves the list only once that backend no longer lists it active. A
// token is deactivated only when its own backend lists it with this APIToken's UID as
// external_id. The create call's idempotency key depends only on what status says before the
// Secret holds the value, so a retry after a crash replays the create instead of issuing a
// second token. Cached Secrets keep only metadata and the token's hash (secret_cache.go), so
// the operator's heap holds no token value and a tenant's large Secrets cost it nothing.
package controllers
