package oracle

import (
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// The continuous oracle judges the token invariants while a scenario runs, not only at
// its end: a scenario that ends clean may still have had two working tokens for one
// APIToken for a minute, or an old value alive long past its grace period.
//
// Each Sample is the backend's active tokens, then the namespace's APITokens read right
// after (so the status is at least as new as the backend's view). Judge lists what looks
// wrong in one sample:
//   - an active token with an APIToken's UID that its status names neither as current (while
//     Active or being deleted), nor as a draining predecessor, nor as pending deactivation;
//   - a draining predecessor still active after its status.previousTokens retireAt;
//   - an Active APIToken whose current token is not active;
//   - an active managed token whose APIToken is gone (unless deleted with Retain).
//
// The transient rule. Some of these are legitimately true for a moment: between a backend
// create and the status patch that names it, a token exists that status does not name; a
// token retired between the two reads of a sample looks unnamed; a token revoked by hand is
// not active until the next pass replaces it; a predecessor is retired by the pass after its
// retireAt. All of these end within one pass. So a finding is a violation only when it is in
// every sample over at least Window of manager time (time during which a manager process
// runs: a killed manager cannot end the transient state it left behind, its replacement does)
// and in at least MinSamples samples in a row. A sample that does not show it clears it; a
// sample that could not be taken neither extends nor clears it.

// Sample is one look at a namespace and its backend.
type Sample struct {
	At time.Time
	// Active are the backend's active tokens (all of them: managed or not).
	Active []native.Token
	// APITokens are the namespace's APITokens, read after Active.
	APITokens []tokensv1alpha1.APIToken
	// Retain are APITokens deleted with deletionPolicy Retain: their tokens may outlive them.
	Retain map[types.UID]bool
}

// Finding is one thing that looks wrong in a sample; Key identifies it across samples.
type Finding struct {
	Key, Message string
}

// Judge lists what looks wrong in one sample, sorted by key.
func Judge(s Sample) []Finding {
	var out []Finding
	live := map[types.UID]*tokensv1alpha1.APIToken{}
	for i := range s.APITokens {
		live[s.APITokens[i].UID] = &s.APITokens[i]
	}
	byUID := map[types.UID][]native.Token{}
	for _, t := range s.Active {
		if t.ExternalID != "" {
			byUID[types.UID(t.ExternalID)] = append(byUID[types.UID(t.ExternalID)], t)
		}
	}
	for _, tok := range live {
		name := tok.Namespace + "/" + tok.Name
		deleting := !tok.DeletionTimestamp.IsZero()
		named := map[string]bool{}
		for _, p := range tok.Status.PendingDeactivation {
			named[p.TokenID] = true
		}
		retireAt := map[string]time.Time{}
		for _, p := range tok.Status.PreviousTokens {
			named[p.TokenID] = true
			retireAt[p.TokenID] = p.RetireAt.Time
		}
		if tok.Status.Phase == tokensv1alpha1.PhaseActive || deleting {
			named[tok.Status.TokenID] = true
		}
		active := byUID[tok.UID]
		for _, t := range active {
			switch at, draining := retireAt[t.ID]; {
			case !named[t.ID]:
				out = append(out, Finding{"unnamed/" + t.ID, fmt.Sprintf("APIToken %s (%s) has active backend token %s that its status names neither as current, nor as draining, nor as pending deactivation", name, tok.Status.Phase, t.ID)})
			case draining && s.At.After(at):
				out = append(out, Finding{"past-grace/" + t.ID, fmt.Sprintf("APIToken %s: predecessor %s is still active after its retireAt %s", name, t.ID, at.UTC().Format(time.RFC3339))})
			}
		}
		if tok.Status.Phase == tokensv1alpha1.PhaseActive && !deleting && !containsID(active, tok.Status.TokenID) {
			out = append(out, Finding{"current-inactive/" + string(tok.UID) + "/" + tok.Status.TokenID, fmt.Sprintf("APIToken %s is Active with token %q, which is not active on the backend (active: %s)", name, tok.Status.TokenID, ids(active))})
		}
	}
	for _, t := range s.Active {
		uid := types.UID(t.ExternalID)
		if t.Labels[tokensv1alpha1.LabelManagedBy] == tokensv1alpha1.ManagedByValue && live[uid] == nil && !s.Retain[uid] {
			out = append(out, Finding{"orphan/" + t.ID, fmt.Sprintf("backend token %s (external_id %q) is active but no APIToken owns it", t.ID, t.ExternalID)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Continuous applies the transient rule over a series of samples.
type Continuous struct {
	// Window is how long (of manager time) a finding must persist to be a violation.
	Window time.Duration
	// MinSamples is how many samples in a row must show it.
	MinSamples int

	pending    map[string]*persisting
	reported   map[string]bool
	last       time.Time
	Samples    int
	Violations []string
}

type persisting struct {
	first   time.Time
	age     time.Duration
	samples int
}

// DefaultWindow is long enough for a pass (a create, the Secret write, the status patch and
// the write expectations' wait for the cache) on a loaded two-core machine, and for the 3 s
// inventory interval of the scenarios' managers to notice a hand-made change.
const DefaultWindow = 15 * time.Second

// NewContinuous returns a Continuous with DefaultWindow and 3 samples.
func NewContinuous() *Continuous {
	return &Continuous{Window: DefaultWindow, MinSamples: 3}
}

// Observe adds a sample. managerRunning says whether a manager ran since the previous
// sample: only then does the time between them count towards Window.
func (c *Continuous) Observe(s Sample, managerRunning bool) {
	if c.pending == nil {
		c.pending, c.reported = map[string]*persisting{}, map[string]bool{}
	}
	elapsed := time.Duration(0)
	if !c.last.IsZero() && managerRunning {
		elapsed = s.At.Sub(c.last)
	}
	c.last = s.At
	c.Samples++
	seen := map[string]bool{}
	for _, f := range Judge(s) {
		seen[f.Key] = true
		p := c.pending[f.Key]
		if p == nil {
			p = &persisting{first: s.At}
			c.pending[f.Key] = p
		} else {
			p.age += elapsed
		}
		p.samples++
		if p.age >= c.Window && p.samples >= c.MinSamples && !c.reported[f.Key] {
			c.reported[f.Key] = true
			c.Violations = append(c.Violations, fmt.Sprintf("%s (seen from %s for %s of manager time, %d samples)",
				f.Message, p.first.UTC().Format("15:04:05.000"), p.age.Round(time.Millisecond), p.samples))
		}
	}
	for k := range c.pending {
		if !seen[k] {
			delete(c.pending, k)
		}
	}
}
