// Package apitoken is the APIToken reconciler. One pass (controller.go):
//
//	in  := r.gather(ctx, before)           // gather.go: everything a decision reads, data only
//	d   := policy.Decide(in)               // pure: the action, the status, the event, the deadline
//	out := r.act(ctx, in, d)               // issue.go, adopt.go, deactivate.go, secret.go, failures.go
//	pub := policy.Report(tok, in, d, out)  // the only code that writes conditions and phase
//	r.publish(tok, pub)                    // events.go: Events and per-APIToken gauges
//
// and the deferred patchStatus is the one status write. The action code reads the APIToken
// only through in, and records every change to which tokens exist in the outcome's
// policy.Ledger, in the order the steps happen; Report applies it on every path, failures
// included. The finalizer's pass (delete.go) has the same shape.
//
// # Where safety comes from
//
// Every token to retire is first recorded in the ledger's pendingDeactivation with the backend
// that holds it, and leaves the list only once that backend no longer lists it active. A token
// is deactivated only when its own backend lists it with this APIToken's UID as its owner
// (deactivate.go). A driver's create depends only on the owner (UID, cluster, serial) and the
// spec, which status fixes before the Secret holds the value, so a retry after a crash replays
// the create instead of issuing a second token (the walk above issue). Cached Secrets keep
// only metadata and the token's hash (package secretcache), so the heap holds no token value.
//
// # Write expectations (expectations.go)
//
// The cache lags behind the operator's own writes. After a pass wrote a Secret and a new issue
// serial, the next pass waits (briefly, and at most expectationTimeout) until the cache shows
// them, instead of issuing again from a stale copy. Memory only: after a restart the caches
// start from a fresh list.
//
// # Token holders (holders.go)
//
// A map from a backend token id to the APIToken whose status names it, fed by the APIToken
// informer's events. An issuance whose reply names a token id another APIToken already holds
// is refused (a backend that hands out one id twice).
//
// # Event sources (setup.go)
//
// APITokens (spec, annotation, label and deletion changes; status writes do not wake it), the
// managed Secrets, a metadata-only watch of the other Secrets (a foreign Secret in the way
// going away), the backends' Ready condition and spec, Namespaces whose labels changed, the
// registry's registrations and freed in-flight slots, the inventory's changes, and opted-in
// workloads (with --restart-workloads).
package apitoken
