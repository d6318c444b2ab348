package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// queueState is what a manager's own metrics say about one controller: reconciles
// finished, items ready in its queue, workers busy.
type queueState struct {
	reconciles, depth, active float64
}

var metricLine = regexp.MustCompile(`^(\w+)\{([^}]*)\} (\S+)$`)

// readQueueState scrapes the manager of e (plain HTTP on loopback, as make dev runs it).
func readQueueState(e *devenv.Env, controller string) (queueState, error) {
	var q queueState
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", e.Ports.ManagerMetrics))
	if err != nil {
		return q, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return q, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		switch {
		case m[1] == "controller_runtime_reconcile_total" && hasLabel(m[2], "controller", controller):
			q.reconciles += v
		case m[1] == "workqueue_depth" && hasLabel(m[2], "name", controller):
			q.depth += v
		case m[1] == "controller_runtime_active_workers" && hasLabel(m[2], "controller", controller):
			q.active += v
		}
	}
	return q, sc.Err()
}

func hasLabel(labels, name, value string) bool {
	return regexp.MustCompile(`(^|,)` + name + `="` + regexp.QuoteMeta(value) + `"`).MatchString(labels)
}

// waitReconciled waits, instead of sleeping, until the (freshly started) manager of e has
// finished at least n reconciles of each controller named and has nothing queued or running
// for it: every object has been handled once, so "it wrote nothing" is a statement about
// passes that ran.
func waitReconciled(t *testing.T, e *devenv.Env, n map[string]int) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		for controller, want := range n {
			q, err := readQueueState(e, controller)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(q.reconciles).To(BeNumerically(">=", want), "%s reconciles", controller)
			g.Expect(q.depth).To(BeZero(), "items in the %s queue", controller)
			g.Expect(q.active).To(BeZero(), "%s reconciles running", controller)
		}
	}).WithTimeout(time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
}
