// Package e2e drives the built binaries like a user would: the manager and the reference
// status backend run as separate processes against etcd, kube-apiserver and
// kube-controller-manager (all started by internal/devenv, the same code as `make dev`),
// tokens are applied with kubectl, and their Secrets are used over HTTP like a workload uses
// them.
//
// The control-plane binaries come from KUBEBUILDER_ASSETS or bin/controlplane (`make
// controlplane`). Without them the tests skip, except when CI=true, where they fail.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/devenv"
	"github.com/statusops/apitoken-operator/internal/testenv"
	"github.com/statusops/apitoken-operator/internal/zabbixtest"
)

var (
	// env is the environment shared by the tests of this package.
	env *devenv.Env
	// binDir holds the manager and backend built for this test binary.
	binDir string
	// assetsDir holds the control-plane binaries.
	assetsDir string
	// kubectlPath is the kubectl the tests drive the cluster with.
	kubectlPath string
	// skipReason, when set, makes every test skip (prerequisites missing outside CI).
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testing.Short() {
		skipReason = "end-to-end tests start a whole environment; skipped with -short"
		return m.Run()
	}
	if missing := findPrerequisites(); missing != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e: prerequisites missing in CI:", missing)
			return 1
		}
		skipReason = missing
		return m.Run()
	}

	tmp, err := os.MkdirTemp("", "apitoken-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir = filepath.Join(tmp, "bin")
	if err := buildBinaries(binDir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err = devenv.Start(ctx, envOptions(filepath.Join(tmp, "env")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the environment:", err)
		return 1
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping the environment:", err)
		if code == 0 {
			code = 1
		}
	}
	// The Zabbix tests share one server; without this its watcher stops it after the binary exits.
	if err := zabbixtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping Zabbix:", err)
	}
	return code
}

// envOptions are the options of every environment the tests start: a directory of its
// own, free ports, and no samples (each test applies its own manifests).
func envOptions(dir string) devenv.Options {
	opts := devenv.Options{
		Dir:           dir,
		AssetsDir:     assetsDir,
		RepoRoot:      testenv.RepoRoot(),
		ManagerBinary: filepath.Join(binDir, "manager"),
		BackendBinary: filepath.Join(binDir, "status-backend"),
		UnsafeNoFsync: true,
		ManagerArgs:   []string{"--log-level=debug"},
	}
	if testing.Verbose() {
		opts.Progress = os.Stderr
	}
	return opts
}

// findPrerequisites returns what is missing to run the tests, or "".
func findPrerequisites() string {
	var err error
	if assetsDir, err = devenv.FindAssetsDir(testenv.RepoRoot()); err != nil {
		return err.Error()
	}
	if kubectlPath, err = exec.LookPath("kubectl"); err != nil {
		return "kubectl is not on PATH"
	}
	return ""
}

// buildBinaries builds the manager and the reference backend from this checkout.
func buildBinaries(dir string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for name, pkg := range map[string]string{"manager": "./cmd/manager", "status-backend": "./cmd/status-backend"} {
		cmd := exec.Command(goTool, "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}
