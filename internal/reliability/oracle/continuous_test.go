package oracle

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func activeAPIToken(uid types.UID, current string) tokensv1alpha1.APIToken {
	tok := tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok-" + string(uid), UID: uid}}
	tok.Status.Phase = tokensv1alpha1.PhaseActive
	tok.Status.TokenID = current
	return tok
}

func managedToken(id string, uid types.UID) native.Token {
	return native.Token{ID: id, ExternalID: string(uid), Labels: map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}}
}

func keys(fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Key)
	}
	return out
}

// TestJudgeFindsEachViolation plants each finding in one sample, beside the states that
// the status explains and that must not be found.
func TestJudgeFindsEachViolation(t *testing.T) {
	deleting := activeAPIToken("u-del", "d1")
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	deleting.Finalizers = []string{"x"}
	draining := activeAPIToken("u-drain", "n2")
	draining.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "o1", RetireAt: metav1.NewTime(t0.Add(time.Minute))}}
	pastGrace := activeAPIToken("u-past", "n3")
	pastGrace.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{{TokenID: "o3", RetireAt: metav1.NewTime(t0.Add(-time.Second))}}
	pending := activeAPIToken("u-pend", "n4")
	pending.Status.PendingDeactivation = []tokensv1alpha1.RetiringToken{{TokenID: "o4"}}
	failed := activeAPIToken("u-failed", "f1")
	failed.Status.Phase = tokensv1alpha1.PhaseFailed
	cases := map[string]struct {
		apiTokens []tokensv1alpha1.APIToken
		active    []native.Token
		retain    map[types.UID]bool
		want      []string
	}{
		"one current token": {
			apiTokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
			active:    []native.Token{managedToken("a1", "u1"), {ID: "admin"}},
			want:      []string{},
		},
		"a second token status does not name": {
			apiTokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
			active:    []native.Token{managedToken("a1", "u1"), managedToken("a2", "u1")},
			want:      []string{"unnamed/a2"},
		},
		"an unlabelled token with the UID counts too": {
			apiTokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
			active:    []native.Token{managedToken("a1", "u1"), {ID: "a2", ExternalID: "u1"}},
			want:      []string{"unnamed/a2"},
		},
		"the current token is not active": {
			apiTokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
			active:    nil,
			want:      []string{"current-inactive/u1/a1"},
		},
		"a Failed APIToken with an active token": {
			apiTokens: []tokensv1alpha1.APIToken{failed},
			active:    []native.Token{managedToken("f1", "u-failed")},
			want:      []string{"unnamed/f1"},
		},
		"being deleted: the current token is named whatever the phase": {
			apiTokens: []tokensv1alpha1.APIToken{deleting},
			active:    []native.Token{managedToken("d1", "u-del")},
			want:      []string{},
		},
		"being deleted: another token is not": {
			apiTokens: []tokensv1alpha1.APIToken{deleting},
			active:    []native.Token{managedToken("d1", "u-del"), managedToken("d2", "u-del")},
			want:      []string{"unnamed/d2"},
		},
		"a predecessor draining within its grace": {
			apiTokens: []tokensv1alpha1.APIToken{draining},
			active:    []native.Token{managedToken("n2", "u-drain"), managedToken("o1", "u-drain")},
			want:      []string{},
		},
		"a predecessor past its retireAt": {
			apiTokens: []tokensv1alpha1.APIToken{pastGrace},
			active:    []native.Token{managedToken("n3", "u-past"), managedToken("o3", "u-past")},
			want:      []string{"past-grace/o3"},
		},
		"a token pending deactivation": {
			apiTokens: []tokensv1alpha1.APIToken{pending},
			active:    []native.Token{managedToken("n4", "u-pend"), managedToken("o4", "u-pend")},
			want:      []string{},
		},
		"a managed token of a gone APIToken": {
			active: []native.Token{managedToken("g1", "u-gone")},
			want:   []string{"orphan/g1"},
		},
		"a managed token of a gone Retain APIToken": {
			active: []native.Token{managedToken("g1", "u-gone")},
			retain: map[types.UID]bool{"u-gone": true},
			want:   []string{},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			got := Judge(Sample{At: t0, APITokens: c.apiTokens, Active: c.active, Retain: c.retain})
			g.Expect(keys(got)).To(Equal(c.want))
		})
	}
}

// run feeds samples every 250 ms from start for d; state says what each sample holds and
// whether a manager runs.
func run(c *Continuous, start time.Time, d time.Duration, state func(at time.Time) (Sample, bool)) time.Time {
	at := start
	for ; at.Sub(start) < d; at = at.Add(250 * time.Millisecond) {
		s, running := state(at)
		s.At = at
		c.Observe(s, running)
	}
	return at
}

var (
	oneToken = Sample{APITokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
		Active: []native.Token{managedToken("a1", "u1")}}
	// extra is the state between a backend create and the status patch: a2 exists, status
	// still names a1 only.
	extra = Sample{APITokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a1")},
		Active: []native.Token{managedToken("a1", "u1"), managedToken("a2", "u1")}}
	replaced = Sample{APITokens: []tokensv1alpha1.APIToken{activeAPIToken("u1", "a2")},
		Active: []native.Token{managedToken("a2", "u1")}}
)

func TestContinuousCatchesAPersistentViolation(t *testing.T) {
	g := NewWithT(t)
	c := NewContinuous()
	run(c, t0, DefaultWindow+time.Second, func(time.Time) (Sample, bool) { return extra, true })
	g.Expect(c.Violations).To(HaveLen(1), "reported once, however long it lasts")
	g.Expect(c.Violations[0]).To(ContainSubstring("active backend token a2 that its status names neither"))
}

func TestContinuousAllowsTheCreateToStatusWindow(t *testing.T) {
	g := NewWithT(t)
	c := NewContinuous()
	// Steady, then a pass creates a2 and patches status 3 s later, then retires a1.
	at := run(c, t0, 2*time.Second, func(time.Time) (Sample, bool) { return oneToken, true })
	at = run(c, at, 3*time.Second, func(time.Time) (Sample, bool) { return extra, true })
	run(c, at, 20*time.Second, func(time.Time) (Sample, bool) { return replaced, true })
	g.Expect(c.Violations).To(BeEmpty())
	g.Expect(c.Samples).To(Equal(100))
}

func TestContinuousDoesNotCountTimeWithoutAManager(t *testing.T) {
	g := NewWithT(t)
	c := NewContinuous()
	// Killed right after the create: a2 stays unnamed for a minute with no manager, then
	// the restarted one names it 5 s later.
	at := run(c, t0, time.Minute, func(time.Time) (Sample, bool) { return extra, false })
	at = run(c, at, 5*time.Second, func(time.Time) (Sample, bool) { return extra, true })
	run(c, at, 5*time.Second, func(time.Time) (Sample, bool) { return replaced, true })
	g.Expect(c.Violations).To(BeEmpty())

	// But with a manager running, the same minute is a violation.
	c = NewContinuous()
	run(c, t0, time.Minute, func(time.Time) (Sample, bool) { return extra, true })
	g.Expect(c.Violations).To(HaveLen(1))
}

func TestContinuousWantsTheViolationInEverySample(t *testing.T) {
	g := NewWithT(t)
	c := NewContinuous()
	// Two separate 10 s episodes: neither lasts a window.
	at := run(c, t0, 10*time.Second, func(time.Time) (Sample, bool) { return extra, true })
	at = run(c, at, time.Second, func(time.Time) (Sample, bool) { return oneToken, true })
	run(c, at, 10*time.Second, func(time.Time) (Sample, bool) { return extra, true })
	g.Expect(c.Violations).To(BeEmpty())
}
