// Package policy is the APIToken controller's whole policy, pure: what a pass must do given
// what was gathered (Decide), and what status, events and gauges follow from what the pass
// then did (Report, over the Ledger the action code kept). It imports no client, no context
// and no clock: every case is a table row (TestDecide, TestReport, TestLedger).
package policy

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/backendkey"
	"github.com/statusops/apitoken-operator/internal/backend"
)

// Inputs is everything a decision looks at, gathered once per pass; data only.
type Inputs struct {
	Now time.Time
	// Token is the pass's snapshot of the APIToken (its "before" copy): read, never written.
	Token *tokensv1alpha1.APIToken
	// Secret is the Secret named spec.secretName when this APIToken owns it; nil otherwise.
	Secret *corev1.Secret
	// SecretConflict is set when a Secret of that name exists and another owner has it.
	SecretConflict bool
	Backend        BackendState
	// Inventory is what the last inventory of the current token's backend says.
	Inventory InventoryFacts
	// RevokedConfirmed: the inventory did not list the current token and a GET on its
	// backend confirmed that it is inactive or gone (a list walk alone can miss a token).
	RevokedConfirmed bool
	// AdoptValue is the value spec.adopt.secretRef holds, and AdoptProblem why it could not
	// be read (adoption pending only).
	AdoptValue   backend.SecretValue
	AdoptProblem string
	// RolloutsPending are opted-in workloads naming this APIToken whose rollout of the
	// current token is not complete (with --restart-workloads); RolloutsPaused, those of them
	// that cannot roll out by themselves (a paused Deployment).
	RolloutsPending []string
	RolloutsPaused  []string
	// PredecessorUse is the backend's last use of each draining predecessor, by id.
	PredecessorUse map[string]*time.Time
	// PredecessorsInactive are the draining predecessors their backend's inventory no longer
	// lists active: they leave status.
	PredecessorsInactive []string
	// PredecessorPermission is the inventory's permission of predecessors whose status entry
	// has none (written before status kept it).
	PredecessorPermission map[string]tokensv1alpha1.Permission
	// FullAccessAllowedOn says, for the backend of the current token and of each predecessor,
	// whether it still allows FullAccess tokens in this namespace.
	FullAccessAllowedOn map[backendkey.Key]bool
	// IssuesInWindow counts the tokens created for this APIToken within the issuance window,
	// and Budget is how many are allowed (0: no limit); WindowEnds is when the oldest leaves.
	IssuesInWindow int
	Budget         int
	WindowEnds     time.Time
	// Review is what the least-privilege review needs beyond status.
	Review ReviewFacts
}

// InventoryFacts is what the last inventory of the current token's backend says of it.
type InventoryFacts struct {
	// Taken: there is an inventory of that backend.
	Taken bool
	// Listed: it lists the current token active; Current is that token as listed.
	Listed  bool
	Current backend.Token
	// ExtraActive are active tokens carrying this APIToken's UID there that status does not
	// name: a sweep must deactivate them.
	ExtraActive []string
}

// ReviewFacts is what the least-privilege review reads besides the APIToken.
type ReviewFacts struct {
	// Window is the review window; 0 turns the review off.
	Window time.Duration
	// Registered: the current token's backend is registered now, so what it offers is known.
	Registered bool
	// Usage: it reports usage (CapabilityUsage).
	Usage bool
}

// BackendState is what was found of the referenced backend.
type BackendState struct {
	Key   backendkey.Key
	Found bool
	// Deleting: the backend has a deletion timestamp (it waits for its APITokens).
	Deleting bool
	// Ready: registered, so it may be called; Message says why not.
	Ready   bool
	Message string
	// NamespacePolicy is what the backend's selectors allow the APIToken's namespace.
	NamespacePolicy
	// Disabled: the backend's kind is switched off in this installation.
	Disabled bool
	UID      string
	CABundle []byte
	URL      string
}

// NamespacePolicy is what a backend's selectors allow one namespace: allowedNamespaces,
// fullAccessNamespaces, retainNamespaces and retainFullAccessNamespaces.
type NamespacePolicy struct {
	Allowed, FullAccessAllowed, RetainAllowed, RetainFullAccessAllowed bool
}
