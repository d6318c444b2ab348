package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// requireEnv skips the test when the prerequisites are missing (outside CI), and on
// failure prints the end of the manager's log.
func requireEnv(t *testing.T) *devenv.Env {
	t.Helper()
	requirePrerequisites(t)
	dumpLogOnFailure(t, env)
	return env
}

// requirePrerequisites skips the test when the prerequisites are missing (outside CI), for
// tests that start an environment of their own.
func requirePrerequisites(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func dumpLogOnFailure(t *testing.T, e *devenv.Env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		data, err := os.ReadFile(e.ManagerLog())
		if err != nil {
			return
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		t.Logf("last lines of %s:\n%s", e.ManagerLog(), strings.Join(lines, "\n"))
	})
}

// kubectl runs kubectl against e and returns its stdout; it fails the test on error.
func kubectl(t *testing.T, e *devenv.Env, args ...string) string {
	t.Helper()
	out, err := kubectlErr(e, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// kubectlErr runs kubectl against e; the error includes kubectl's stderr.
func kubectlErr(e *devenv.Env, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlPath, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// applyManifest writes manifest to a file and runs `kubectl apply -f` on it, as a user or a
// GitOps tool would.
func applyManifest(t *testing.T, e *devenv.Env, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, e, "apply", "-f", path)
}

// createNamespace creates a namespace that is deleted (without waiting) when the test ends.
func createNamespace(t *testing.T, e *devenv.Env, name string) {
	t.Helper()
	kubectl(t, e, "create", "namespace", name)
	t.Cleanup(func() { _, _ = kubectlErr(e, "delete", "namespace", name, "--wait=false", "--ignore-not-found") })
}

// waitReady runs `kubectl wait --for=condition=Ready` on APITokens.
func waitReady(t *testing.T, e *devenv.Env, namespace string, names ...string) {
	t.Helper()
	args := []string{"wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace}
	for _, n := range names {
		args = append(args, "apitoken/"+n)
	}
	kubectl(t, e, args...)
}

// apiToken is the part of an APIToken the tests read.
type apiToken struct {
	Status struct {
		Phase      string `json:"phase"`
		TokenID    string `json:"tokenID"`
		TokenHint  string `json:"tokenHint"`
		SecretName string `json:"secretName"`
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

func (a apiToken) readyReason() string {
	for _, c := range a.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status + "/" + c.Reason
		}
	}
	return ""
}

func getAPIToken(t *testing.T, e *devenv.Env, namespace, name string) apiToken {
	t.Helper()
	var tok apiToken
	if err := json.Unmarshal([]byte(kubectl(t, e, "get", "apitoken", name, "-n", namespace, "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// secret is a Secret as kubectl prints it, with the data decoded.
type secret struct {
	Metadata struct {
		Labels          map[string]string `json:"labels"`
		OwnerReferences []struct {
			Kind       string `json:"kind"`
			Name       string `json:"name"`
			Controller bool   `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
}

// readSecret reads a Secret with kubectl and decodes its data.
func readSecret(t *testing.T, e *devenv.Env, namespace, name string) secret {
	t.Helper()
	var s secret
	if err := json.Unmarshal([]byte(kubectl(t, e, "get", "secret", name, "-n", namespace, "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	for k, v := range s.Data {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("secret %s/%s key %s: %v", namespace, name, k, err)
		}
		s.Data[k] = string(raw)
	}
	return s
}

// callBackend sends one request with a bearer token, like a workload, and returns the
// status code and body.
func callBackend(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, reader)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// backendToken is a token object as the backend's admin API returns it.
type backendToken struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Permission string `json:"permission"`
	ExternalID string `json:"external_id"`
	Last4      string `json:"last4"`
	// DeactivatedAt is when the backend deactivated it (nanosecond precision), if it did.
	DeactivatedAt *time.Time `json:"deactivated_at"`
}

// getBackendToken reads a token's object with the admin token (GET /api_tokens/{id}).
func getBackendToken(t *testing.T, e *devenv.Env, id string) backendToken {
	t.Helper()
	code, body := callBackend(t, http.MethodGet, e.BackendURL+"/api_tokens/"+id, e.AdminToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api_tokens/%s: %d %s", id, code, body)
	}
	var envelope struct {
		Data backendToken `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &envelope); err != nil {
		t.Fatal(err)
	}
	return envelope.Data
}

// countBackendTokens returns how many tokens the backend holds in total (any status).
func countBackendTokens(t *testing.T, e *devenv.Env) int {
	t.Helper()
	code, body := callBackend(t, http.MethodGet, e.BackendURL+"/api_tokens?per_page=1", e.AdminToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api_tokens: %d %s", code, body)
	}
	var envelope struct {
		Pagination struct {
			TotalCount int `json:"total_count"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal([]byte(body), &envelope); err != nil {
		t.Fatal(err)
	}
	return envelope.Pagination.TotalCount
}

// tokenManifest is an APIToken as a platform team writes it.
func tokenManifest(namespace, name, permission, extraSpec string) string {
	return fmt.Sprintf(`apiVersion: tokens.statusops.dev/v1alpha1
kind: APIToken
metadata:
  name: %s
  namespace: %s
spec:
  permission: %s
  description: e2e %s
%s`, name, namespace, permission, name, extraSpec)
}
