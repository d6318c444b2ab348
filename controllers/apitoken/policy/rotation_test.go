package policy

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

func rotating(lifetime, renewBefore time.Duration) *tokensv1alpha1.APIToken {
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}}
	tok.Spec.Rotation = &tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: lifetime}}
	if renewBefore > 0 {
		tok.Spec.Rotation.RenewBefore = &metav1.Duration{Duration: renewBefore}
	}
	return tok
}

// TestRenewalIsSpreadDeterministically: 1000 tokens issued in the same second renew at
// times fixed by UID and serial (the same on every pass), spread so that no second sees
// more than a handful of renewals; each renewal is before the expiry by at least
// renewBefore and after the issue.
func TestRenewalIsSpreadDeterministically(t *testing.T) {
	g := NewWithT(t)
	issued := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	perSecond := map[int64]int{}
	for i := range 1000 {
		tok := rotating(720*time.Hour, 240*time.Hour)
		tok.UID = types.UID(fmt.Sprintf("uid-%d", i))
		exp := metav1.NewTime(issued.Add(720 * time.Hour))
		at := RenewalTimeFor(tok, &exp, issued, 1)
		g.Expect(at).NotTo(BeNil())
		g.Expect(RenewalTimeFor(tok, &exp, issued, 1).Time).To(Equal(at.Time), "deterministic: never a new random time per pass")
		g.Expect(at.Time).To(BeTemporally("<=", exp.Add(-240*time.Hour)))
		g.Expect(at.Time).To(BeTemporally(">", issued))
		perSecond[at.Unix()]++
	}
	peak := 0
	for _, n := range perSecond {
		peak = max(peak, n)
	}
	t.Logf("1000 tokens issued together renew in %d distinct seconds, at most %d in one second", len(perSecond), peak)
	g.Expect(peak).To(BeNumerically("<=", 3))
	g.Expect(len(perSecond)).To(BeNumerically(">", 990))
}

// TestRenewalTime covers the edges: no lifetime, the expiry being spec.expiresAt, and a
// renewBefore close to the lifetime (each token still lives a tenth of its life).
func TestRenewalTime(t *testing.T) {
	g := NewWithT(t)
	issued := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	exp := metav1.NewTime(issued.Add(time.Hour))
	g.Expect(RenewalTimeFor(&tokensv1alpha1.APIToken{}, &exp, issued, 1)).To(BeNil(), "no lifetime, no renewal")
	capped := rotating(2*time.Hour, 0)
	capped.Spec.ExpiresAt = &exp
	g.Expect(RenewalTimeFor(capped, &exp, issued, 1)).To(BeNil(), "spec.expiresAt is the end of life, not a renewal")
	tight := rotating(time.Hour, 59*time.Minute)
	at := RenewalTimeFor(tight, &exp, issued, 1)
	g.Expect(at.Time).To(BeTemporally(">=", issued.Add(6*time.Minute)))
	def := rotating(time.Hour, 0)
	g.Expect(renewBeforeOf(def)).To(Equal(20 * time.Minute))
}

// TestRequestedBackendExpiry: issue time (rounded to a tenth of the lifetime, so a retry
// replays) plus lifetime, never past spec.expiresAt.
func TestRequestedBackendExpiry(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 10, 0, 7, 0, time.UTC)
	tok := rotating(time.Hour, 0)
	g.Expect(*RequestedBackendExpiry(tok, now)).To(Equal(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)))
	g.Expect(*RequestedBackendExpiry(tok, now.Add(20*time.Second))).To(Equal(*RequestedBackendExpiry(tok, now)), "same grid step, same body")
	soon := metav1.NewTime(now.Add(10 * time.Minute))
	tok.Spec.ExpiresAt = &soon
	g.Expect(*RequestedBackendExpiry(tok, now)).To(Equal(soon.UTC()))
	g.Expect(RequestedBackendExpiry(&tokensv1alpha1.APIToken{}, now)).To(BeNil())
}

// TestRetirementsDue: grace over, still in use, unused with retireWhenUnused, and waiting.
func TestRetirementsDue(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(now.Add(d)); return &m }
	prev := func(superseded, retire time.Duration, lastUsed *metav1.Time) tokensv1alpha1.PreviousToken {
		return tokensv1alpha1.PreviousToken{TokenID: "old", SupersededAt: *at(superseded), RetireAt: *at(retire), LastUsedAt: lastUsed}
	}
	cases := []struct {
		name       string
		p          tokensv1alpha1.PreviousToken
		quiet      time.Duration
		successor  *metav1.Time
		due        bool
		stillInUse bool
		why        string
	}{
		{name: "grace not over", p: prev(-time.Minute, time.Minute, nil)},
		{name: "grace over, unused", p: prev(-2*time.Hour, 0, nil), due: true, why: "grace period is over"},
		{name: "grace over, used just after the swap", p: prev(-2*time.Hour, 0, at(-2*time.Hour+time.Second)), due: true},
		{name: "grace over, used lately", p: prev(-2*time.Hour, 0, at(-time.Minute)), due: true, stillInUse: true, why: "still used"},
		{name: "quiet and successor used", p: prev(-time.Hour, time.Hour, at(-10*time.Minute)), quiet: 5 * time.Minute, successor: at(-time.Minute), due: true, why: "has not been used"},
		{name: "successor used in the second of its issue", p: prev(-time.Hour, time.Hour, at(-10*time.Minute)), quiet: 5 * time.Minute, successor: at(-time.Hour), due: true, why: "has not been used"},
		{name: "quiet but successor idle", p: prev(-time.Hour, time.Hour, at(-10*time.Minute)), quiet: 5 * time.Minute},
		{name: "successor used but predecessor busy", p: prev(-time.Hour, time.Hour, at(-time.Minute)), quiet: 5 * time.Minute, successor: at(-time.Minute)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := &tokensv1alpha1.APIToken{}
			tok.Spec.Rotation = &tokensv1alpha1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}}
			if tc.quiet > 0 {
				tok.Spec.Rotation.RetireWhenUnused = &tokensv1alpha1.RetireWhenUnused{QuietPeriod: metav1.Duration{Duration: tc.quiet}}
			}
			tok.Status.IssuedAt = at(-time.Hour)
			tok.Status.LastUsedAt = tc.successor
			tok.Status.PreviousTokens = []tokensv1alpha1.PreviousToken{tc.p}
			due := retirementsDue(Inputs{Now: now, Token: tok})
			if !tc.due {
				g.Expect(due).To(BeEmpty())
				return
			}
			g.Expect(due).To(HaveLen(1))
			g.Expect(due[0].StillInUse).To(Equal(tc.stillInUse))
			g.Expect(due[0].Why).To(ContainSubstring(tc.why))
		})
	}
}
