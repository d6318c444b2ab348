// Package reliability holds the reliability scenarios of docs/reliability.md: the manager
// runs as a real process (built from ./cmd/manager) against a real API server and the
// reference backend behind a fault proxy, and every scenario ends with the invariant oracle.
//
// `go test ./...` runs a shortened version (20 tokens, 5 kill points, 5 s outages);
// RELIABILITY_FULL=1 (make test-reliability) runs the full one (200 tokens, 24 kill points,
// 60 s outages).
package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/reliability/harness"
	"github.com/statusops/apitoken-operator/internal/reliability/oracle"
)

// size is how big the scenarios are.
type size struct {
	full   bool
	tokens int
	outage time.Duration
}

var (
	cp          *harness.ControlPlane
	managerBin  string
	workDir     string
	scenarioSeq atomic.Int32
	sz          = size{tokens: 20, outage: 5 * time.Second}
)

func TestMain(m *testing.M) {
	if os.Getenv("RELIABILITY_FULL") == "1" {
		sz = size{full: true, tokens: 200, outage: 60 * time.Second}
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if workDir, err = os.MkdirTemp("", "reliability-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := os.Getenv("RELIABILITY_KEEP") != ""
	defer func() {
		if !keep {
			_ = os.RemoveAll(workDir)
		}
	}()
	start := time.Now()
	var pkg string
	if managerBin, pkg, err = harness.BuildManager(workDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("reliability: manager built from %s in %s; size %+v; work dir %s\n", pkg, time.Since(start).Round(time.Millisecond), sz, workDir)
	if cp, err = harness.StartControlPlane(workDir); err != nil {
		fmt.Fprintf(os.Stderr, "starting the control plane: %v\n", err)
		return 1
	}
	defer func() { _ = cp.Stop() }()
	return m.Run()
}

// newScenario starts a scenario in a fresh namespace and closes it when the test ends.
func newScenario(t *testing.T, latency time.Duration) *harness.Scenario {
	t.Helper()
	name := fmt.Sprintf("rel-%02d-%s", scenarioSeq.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-")
	dir := filepath.Join(workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := harness.NewScenario(context.Background(), cp, managerBin, dir, name, latency)
	if err != nil {
		t.Fatalf("starting scenario: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			for _, m := range s.Managers {
				t.Logf("manager log: %s (RELIABILITY_KEEP=1 keeps it)", m.LogPath)
			}
		}
	})
	return s
}

// startManager adds and starts a manager.
func startManager(t *testing.T, s *harness.Scenario, args ...string) *harness.Manager {
	t.Helper()
	// The scenarios scrape the metrics plainly, on loopback (Scenario.Scrape).
	m, err := s.NewManager(append([]string{"--metrics-secure=false"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// watch starts the continuous oracle (harness.Scenario.Watch): its violations fail every
// oracle check after them, and the test at its end (those after the last check).
func watch(t *testing.T, s *harness.Scenario) {
	t.Helper()
	watchCounting(t, s, nil)
}

// watchCounting is watch where manager time is what counts says (nil: a manager runs).
func watchCounting(t *testing.T, s *harness.Scenario, counts func() bool) {
	t.Helper()
	var err error
	if counts == nil {
		err = s.Watch(context.Background())
	} else {
		err = s.WatchCounting(context.Background(), counts)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v, summary := s.Watcher().Violations()
		t.Log(summary)
		if s.Watcher().Samples() < 2 {
			t.Errorf("the continuous oracle judged %d samples: it watched nothing", s.Watcher().Samples())
		}
		if n := reportedContinuous[s]; len(v) > n {
			t.Errorf("the continuous oracle saw %d violations after the last check:\n  %s", len(v)-n, strings.Join(v[n:], "\n  "))
		}
	})
}

// reportedContinuous is how many continuous violations a scenario's checks have reported.
var reportedContinuous = map[*harness.Scenario]int{}

// checkOracle runs the oracle and fails the test on any violation.
func checkOracle(t *testing.T, s *harness.Scenario, phase string) *oracle.Report {
	t.Helper()
	return checkOracleCreates(t, s, phase, nil)
}

// checkOracleCreates is checkOracle that also wants the backend to have created exactly
// *creates tokens (nil: not judged).
func checkOracleCreates(t *testing.T, s *harness.Scenario, phase string, creates *int) *oracle.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := s.CheckCreates(ctx, creates)
	if err != nil {
		t.Fatalf("%s: oracle could not check: %v", phase, err)
	}
	t.Logf("%s: %s", phase, rep)
	if w := s.Watcher(); w != nil {
		v, summary := w.Violations()
		reportedContinuous[s] = len(v)
		t.Logf("%s: %s", phase, summary)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("%s: %v", phase, err)
	}
	return rep
}

func pick(short, full int) int {
	if sz.full {
		return full
	}
	return short
}

// isDead reports whether value no longer authenticates on the scenario's backend.
func isDead(ctx context.Context, s *harness.Scenario, value string) (bool, error) {
	return oracle.IsDead(ctx, s.Backend.URL, value)
}
