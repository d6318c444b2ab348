package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/statusops/apitoken-operator/internal/installtest"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// repoPath joins path elements onto the repository root.
func repoPath(elem ...string) string {
	return filepath.Join(append([]string{testenv.RepoRoot()}, elem...)...)
}

// runGo runs the go command in the repository and returns its standard output.
func runGo(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = testenv.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns bin/helm-<version>, building it from hack/tools as `make helm` does
// when it is missing (the first build takes a few minutes; later ones reuse it).
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		mod, err := os.ReadFile(repoPath("hack", "tools", "go.mod"))
		if err != nil {
			helmErr = err
			return
		}
		m := regexp.MustCompile(`(?m)^\s*helm\.sh/helm/v3 (v\S+)`).FindSubmatch(mod)
		if m == nil {
			helmErr = os.ErrNotExist
			return
		}
		helmPath = repoPath("bin", "helm-"+string(m[1]))
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		cmd := exec.Command(repoPath("hack", "tools", "build-helm.sh"), helmPath)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("building helm: %s", out)
			helmErr = err
		}
	})
	if helmErr != nil {
		t.Fatalf("helm binary: %v (run `make helm`)", helmErr)
	}
	return helmPath
}

// helmTemplate renders dist/chart with extra helm arguments (e.g. --set x=y) and decodes it.
func helmTemplate(t *testing.T, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	full := append([]string{"template", release, repoPath("dist", "chart"), "--namespace", namespace, "--include-crds"}, args...)
	cmd := exec.Command(helmBinary(t), full...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", full, err, stderr.String())
	}
	objs, err := installtest.DecodeManifests(out)
	if err != nil {
		t.Fatalf("decoding helm output: %v", err)
	}
	return objs
}

// runtimeConverter converts between unstructured and typed objects.
var runtimeConverter = runtime.DefaultUnstructuredConverter

// installObjects decodes dist/install.yaml.
func installObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := installtest.ReadManifests(installtest.InstallManifestPath())
	if err != nil {
		t.Fatalf("reading dist/install.yaml (run `make build-installer`): %v", err)
	}
	return objs
}

// byKind returns the objects of one kind.
func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	return installtest.Filter(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

// managerDeployment returns the single Deployment of objs, typed.
func managerDeployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	deps := byKind(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want exactly one Deployment, got %d", len(deps))
	}
	var d appsv1.Deployment
	if err := runtimeConverter.FromUnstructured(deps[0].Object, &d); err != nil {
		t.Fatalf("converting Deployment: %v", err)
	}
	return &d
}

// isCRD and isNamespace pick the objects applied for real before the dry run of the rest.
func isCRD(o *unstructured.Unstructured) bool { return o.GetKind() == "CustomResourceDefinition" }
func isNamespace(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Namespace"
}
