// Package install tests the shipped installation against a real API server: dist/install.yaml
// and the rendered Helm chart apply (CRDs for real, the rest as a server-side dry run), the
// manager's Pod passes the restricted Pod Security level, and the RBAC both suffices and grants
// nothing more than the operator uses (checked statically and by impersonating the
// ServiceAccount).
package install

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/statusops/apitoken-operator/internal/testenv"
)

// env is one API server shared by the tests of this package; each test uses its own
// namespaces or only dry runs, so they do not interfere.
var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.StartEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting envtest: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// warningRecorder collects the warnings the API server sends (deprecated fields, Pod Security
// "would violate" warnings), so a test can fail on any of them.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// adminClientWithWarnings is an admin client whose API warnings land in the returned recorder.
func adminClientWithWarnings(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = rec
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	return c, rec
}
