package monitoring

import (
	"context"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

var rulesFile = repoPath("config", "prometheus", "prometheusrule.yaml")

// TestRulesParse: Prometheus accepts the rule file, and every alert says how serious it is,
// what happened and what to do, and waits (for) before firing.
func TestRulesParse(t *testing.T) {
	groups := loadRuleGroups(t, rulesFile)
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("rule %q is not an alert; recording rules need a test of their own", r.Record)
				continue
			}
			n++
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if r.For == 0 {
				t.Errorf("%s: fires on the first evaluation; give it a for:", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts parsed")
	}
}

// alertCase is synthetic series in promqltest's load syntax (one sample per minute from
// time 0) and the alerts expected to fire at given minutes, as label sets.
type alertCase struct {
	series string
	firing map[int][]string
}

// alertCases covers every alert: when it fires, when it must not, and for whom.
var alertCases = map[string]alertCase{
	"APITokenExpiringWithoutRotation": {
		// Times are seconds from 0, like time() in the test engine. "soon" expires at day 3;
		// "far" at day 30; "rotated" expired at day 6 until a renewal at minute 30 moved it.
		series: `
			apitoken_token_expiration_timestamp_seconds{namespace="a", name="soon"} 259200x120
			apitoken_token_expiration_timestamp_seconds{namespace="a", name="far"} 2592000x120
			apitoken_token_expiration_timestamp_seconds{namespace="a", name="rotated"} 518400x30 3110400x90`,
		firing: map[int][]string{
			30: nil, // pending for 30 minutes is not enough
			59: nil,
			61: {`{name="soon", namespace="a"}`},
			90: {`{name="soon", namespace="a"}`},
		},
	},
	"StatusBackendNotReady": {
		// A ping failing every minute for 40 minutes, then succeeding; create errors are not pings.
		series: `
			apitoken_backend_request_errors_total{operation="ping", code="401"} 0+1x40 40x80
			apitoken_backend_request_errors_total{operation="create", code="500"} 0+5x120`,
		firing: map[int][]string{
			5:  nil,
			15: {`{code="401"}`},
			45: {`{code="401"}`}, // the 10m window still holds failures
			55: nil,
		},
	},
	"APITokensPending": {
		series: `
			apitoken_tokens{phase="Pending", permission="ReadOnly"} 0x10 2x110
			apitoken_tokens{phase="Active", permission="ReadOnly"} 5x120`,
		firing: map[int][]string{
			20: nil,
			26: {`{}`},
		},
	},
	"APITokensFailed": {
		series: `
			apitoken_tokens{phase="Failed", permission="FullAccess"} 1x120
			apitoken_tokens{phase="Failed", permission="ReadOnly"} 0x120
			apitoken_tokens{phase="Active", permission="ReadOnly"} 3x120`,
		firing: map[int][]string{
			10: nil,
			16: {`{permission="FullAccess"}`},
		},
	},
	"APITokenLeastPrivilegeFinding": {
		series: `
			apitoken_least_privilege_finding{namespace="team-a", apitoken="bot", finding="UnusedWritePermission"} 1x120
			apitoken_least_privilege_finding{namespace="team-a", apitoken="bot", finding="WritesDenied"} 0x120
			apitoken_least_privilege_finding{namespace="team-b", apitoken="panel", finding="UnusedWritePermission"} 0x120`,
		firing: map[int][]string{
			30: nil,
			61: {`{apitoken="bot", finding="UnusedWritePermission", namespace="team-a"}`},
		},
	},
	"APITokenPredecessorStillInUse": {
		series: `
			apitoken_predecessor_used_after_grace_total{namespace="team-a", apitoken="bot"} 0x30 1x90
			apitoken_predecessor_used_after_grace_total{namespace="team-b", apitoken="panel"} 0x120`,
		firing: map[int][]string{
			20:  nil,
			40:  {`{apitoken="bot", namespace="team-a"}`},
			100: nil,
		},
	},
	"APITokenReconcileErrors": {
		// Another operator's controller in the same Prometheus is not ours.
		series: `
			controller_runtime_reconcile_errors_total{controller="apitoken"} 0+1x120
			controller_runtime_reconcile_errors_total{controller="apitoken-other"} 0+5x120
			controller_runtime_reconcile_errors_total{controller="statusbackend"} 0x120`,
		firing: map[int][]string{
			20: nil,
			45: {`{controller="apitoken"}`},
		},
	},
	"StatusBackendRequestErrors": {
		// 10 create errors a minute is over 0.1/s; 1 list error a minute is not; pings have their own alert.
		series: `
			apitoken_backend_request_errors_total{operation="create", code="500"} 0+10x120
			apitoken_backend_request_errors_total{operation="list", code="0"} 0+1x120
			apitoken_backend_request_errors_total{operation="ping", code="0"} 0+60x120`,
		firing: map[int][]string{
			5:  nil,
			25: {`{code="500", operation="create"}`},
		},
	},
	"APITokenMetricsUnavailable": {
		series: `
			apitoken_token_collector_success 1x10 0x20 1x90`,
		firing: map[int][]string{
			15: nil,
			25: {`{}`},
			40: nil,
		},
	},
}

// TestRulesFireOnSyntheticSeries evaluates each alert, with Prometheus' rule evaluation and
// PromQL engine, once a minute over the synthetic series, and compares the firing alerts at
// the checked minutes; their annotations must expand without template errors.
func TestRulesFireOnSyntheticSeries(t *testing.T) {
	groups := loadRuleGroups(t, rulesFile)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			tc, ok := alertCases[r.Alert]
			if !ok {
				t.Errorf("alert %s has no case in alertCases", r.Alert)
				continue
			}
			t.Run(r.Alert, func(t *testing.T) { checkAlert(t, r, tc) })
		}
	}
	for name := range alertCases {
		if !seen[name] {
			t.Errorf("alertCases has %s, which the rule file does not define", name)
		}
	}
}

func checkAlert(t *testing.T, r rulefmt.Rule, tc alertCase) {
	load := "load 1m\n"
	for _, line := range strings.Split(tc.series, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			load += "  " + line + "\n"
		}
	}
	storage := promqltest.LoadedStorage(t, load)
	engine := promqltest.NewTestEngine(t, false, 0, 100000)
	expr, err := promqlParser.ParseExpr(r.Expr)
	if err != nil {
		t.Fatal(err)
	}
	rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
		labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false, slog.New(slog.DiscardHandler))
	query := rules.EngineQueryFunc(engine, storage)
	last := 0
	for m := range tc.firing {
		last = max(last, m)
	}
	base := time.Unix(0, 0).UTC()
	for minute := 0; minute <= last; minute++ {
		if _, err := rule.Eval(context.Background(), 0, base.Add(time.Duration(minute)*time.Minute), query, &url.URL{}, 0); err != nil {
			t.Fatalf("minute %d: %v", minute, err)
		}
		want, check := tc.firing[minute]
		if !check {
			continue
		}
		var got []string
		for _, a := range rule.ActiveAlerts() {
			if a.State != rules.StateFiring {
				continue
			}
			got = append(got, a.Labels.DropMetricName().MatchLabels(false, "alertname", "severity").String())
			a.Annotations.Range(func(l labels.Label) {
				if strings.Contains(l.Value, "error expanding template") || strings.Contains(l.Value, "<no value>") {
					t.Errorf("minute %d: annotation %s did not expand: %s", minute, l.Name, l.Value)
				}
			})
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("minute %d: firing %v, want %v", minute, got, want)
		}
	}
}
