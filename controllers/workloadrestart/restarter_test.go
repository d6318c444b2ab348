package workloadrestart

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

var slotEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNamespaceShare(t *testing.T) {
	for capacity, want := range map[int]int{1: 1, 2: 1, 4: 1, 5: 2, 8: 2, 10: 3, 40: 10} {
		if got := namespaceShare(capacity); got != want {
			t.Errorf("namespaceShare(%d) = %d, want %d", capacity, got, want)
		}
	}
}

// TestRolloutLimitNamespaceShare: one namespace holds its share of the cap and no more; the
// others take the rest, up to the cap; a refused workload gets a slot once one is given back.
func TestRolloutLimitNamespaceShare(t *testing.T) {
	g := NewWithT(t)
	l := NewRolloutLimit(5, time.Hour, func() time.Time { return slotEpoch }) // share: 2
	g.Expect(l.take("Deployment/a/1", "a")).To(BeTrue())
	g.Expect(l.take("Deployment/a/2", "a")).To(BeTrue())
	g.Expect(l.take("StatefulSet/a/3", "a")).To(BeFalse(), "over namespace a's share, whatever the kind")
	g.Expect(l.take("Deployment/a/1", "a")).To(BeTrue(), "a workload that holds a slot keeps it")
	g.Expect(l.take("Deployment/b/1", "b")).To(BeTrue())
	g.Expect(l.take("Deployment/b/2", "b")).To(BeTrue())
	g.Expect(l.take("Deployment/c/1", "c")).To(BeTrue())
	g.Expect(l.take("Deployment/c/2", "c")).To(BeFalse(), "over the cap")
	l.done("Deployment/a/2")
	g.Expect(l.take("Deployment/a/3", "a")).To(BeTrue(), "refused for the share, then given the slot a gave back")
	g.Expect(l.take("Deployment/c/2", "c")).To(BeFalse(), "the cap is full again")
}

// TestRolloutLimitBound: a slot is given back when it has been held for the bound, counted
// from its first take, and only then.
func TestRolloutLimitBound(t *testing.T) {
	g := NewWithT(t)
	now := slotEpoch
	l := NewRolloutLimit(1, 10*time.Minute, func() time.Time { return now })
	g.Expect(l.take("Deployment/a/stuck", "a")).To(BeTrue())
	now = now.Add(6 * time.Minute)
	g.Expect(l.take("Deployment/a/stuck", "a")).To(BeTrue(), "taken again by a second rotation")
	now = now.Add(4*time.Minute - time.Nanosecond)
	g.Expect(l.holds("Deployment/a/stuck")).To(BeTrue())
	g.Expect(l.take("Deployment/b/next", "b")).To(BeFalse())
	now = now.Add(time.Nanosecond)
	g.Expect(l.holds("Deployment/a/stuck")).To(BeFalse(), "ten minutes after the first take, not after the second")
	g.Expect(l.take("Deployment/b/next", "b")).To(BeTrue())
}

// TestRolloutLimitDoneIsIdempotent: giving a slot back twice, or one never held, frees no
// other slot.
func TestRolloutLimitDoneIsIdempotent(t *testing.T) {
	g := NewWithT(t)
	l := NewRolloutLimit(2, time.Hour, func() time.Time { return slotEpoch }) // share: 1
	g.Expect(l.take("Deployment/a/1", "a")).To(BeTrue())
	g.Expect(l.take("Deployment/b/1", "b")).To(BeTrue())
	l.done("Deployment/a/1")
	l.done("Deployment/a/1")
	l.done("Deployment/x/never")
	g.Expect(l.holds("Deployment/b/1")).To(BeTrue())
	g.Expect(l.take("Deployment/a/2", "a")).To(BeTrue())
	g.Expect(l.take("Deployment/c/1", "c")).To(BeFalse(), "still two in flight: the cap holds")
}

// TestDeploymentRolloutFailed: a Deployment's rollout has failed when the Deployment controller
// set Progressing=False with ProgressDeadlineExceeded for the current generation.
func TestDeploymentRolloutFailed(t *testing.T) {
	var failed func(client.Object) bool
	for _, k := range Kinds {
		if k.Name == "Deployment" {
			failed = k.failed
		}
	}
	for name, tc := range map[string]struct {
		observed int64
		cond     *appsv1.DeploymentCondition
		want     bool
	}{
		"deadline exceeded":               {observed: 2, cond: &appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: reasonProgressDeadlineExceeded}, want: true},
		"deadline exceeded, older spec":   {observed: 1, cond: &appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: reasonProgressDeadlineExceeded}},
		"progressing":                     {observed: 2, cond: &appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated"}},
		"unavailable, but not given up":   {observed: 2, cond: &appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable"}},
		"no conditions (envtest, or new)": {observed: 2},
	} {
		t.Run(name, func(t *testing.T) {
			d := &appsv1.Deployment{}
			d.Generation = 2
			d.Status.ObservedGeneration = tc.observed
			if tc.cond != nil {
				d.Status.Conditions = []appsv1.DeploymentCondition{*tc.cond}
			}
			NewWithT(t).Expect(failed(d)).To(Equal(tc.want))
		})
	}
}

// issued is the APITokens of the names with these token ids ("": not issued yet; a name
// left out: no such APIToken).
func issued(ids map[string]string) map[string]*tokensv1alpha1.APIToken {
	out := map[string]*tokensv1alpha1.APIToken{}
	for n, id := range ids {
		t := &tokensv1alpha1.APIToken{}
		t.Status.TokenID = id
		out[n] = t
	}
	return out
}

// TestFirstIssuesOnly: a hash recorded while some named APITokens had no token (or did not
// exist) matches their first issue, and nothing else.
func TestFirstIssuesOnly(t *testing.T) {
	ab := []string{"a", "b"}
	many := make([]string, maxFirstIssueNames+1)
	manyIDs := map[string]string{}
	for i := range many {
		many[i] = fmt.Sprintf("t%02d", i)
		manyIDs[many[i]] = "tok_" + many[i]
	}
	for name, tc := range map[string]struct {
		names       []string
		before, now map[string]string
		want        bool
	}{
		"first issue":                        {names: []string{"a"}, before: map[string]string{"a": ""}, now: map[string]string{"a": "tok_1"}, want: true},
		"created and issued since":           {names: []string{"a"}, before: map[string]string{}, now: map[string]string{"a": "tok_1"}, want: true},
		"both issued their first":            {names: ab, before: map[string]string{}, now: map[string]string{"a": "tok_1", "b": "tok_2"}, want: true},
		"one first issue, the other as was":  {names: ab, before: map[string]string{"a": "", "b": "tok_2"}, now: map[string]string{"a": "tok_1", "b": "tok_2"}, want: true},
		"rotation":                           {names: []string{"a"}, before: map[string]string{"a": "tok_1"}, now: map[string]string{"a": "tok_2"}},
		"one first issue, the other rotated": {names: ab, before: map[string]string{"a": "", "b": "tok_2"}, now: map[string]string{"a": "tok_1", "b": "tok_3"}},
		"a token gone":                       {names: []string{"a"}, before: map[string]string{"a": "tok_1"}, now: map[string]string{"a": ""}},
		"no change":                          {names: ab, before: map[string]string{"a": "tok_1", "b": "tok_2"}, now: map[string]string{"a": "tok_1", "b": "tok_2"}},
		"more names than the search covers":  {names: many, before: map[string]string{}, now: manyIDs},
	} {
		t.Run(name, func(t *testing.T) {
			recorded, _ := TokensHash(issued(tc.before), tc.names)
			NewWithT(t).Expect(FirstIssuesOnly(recorded, issued(tc.now), tc.names)).To(Equal(tc.want))
		})
	}
}
