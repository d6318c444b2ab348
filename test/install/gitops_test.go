package install

import (
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// argoHealthChecks extracts the resource.customizations.health.* scripts of the argocd-cm
// example in docs/gitops.md.
func argoHealthChecks(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(repoPath("docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		if !strings.Contains(block[1], "name: argocd-cm") {
			continue
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(block[1]), &cm); err != nil {
			t.Fatalf("argocd-cm example in docs/gitops.md: %v", err)
		}
		return cm.Data
	}
	t.Fatal("docs/gitops.md has no argocd-cm example")
	return nil
}

// toLua converts a decoded JSON value to Lua values as Argo CD does (objects and arrays become
// tables, arrays 1-based).
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	panic("unexpected JSON value")
}

// runHealthCheck runs an Argo CD health script on obj and returns status and message.
func runHealthCheck(t *testing.T, script string, obj *unstructured.Unstructured) (string, string) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health script: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health script returned %s, want a table", L.Get(-1).Type())
	}
	return hs.RawGetString("status").String(), hs.RawGetString("message").String()
}

// object builds an object of kind with generation, phase and conditions written as
// "Type=Status/Reason@observedGeneration"; status.observedGeneration is the highest
// observedGeneration of a condition whose pass succeeded (Ready=True or Stalled=True), as the
// controller sets it only then.
func object(kind string, generation int64, phase string, conds ...string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tokens.statusops.dev/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": "x", "namespace": "team-a", "generation": generation},
	}}
	if phase == "" && len(conds) == 0 {
		return u
	}
	var list []any
	for _, c := range conds {
		m := regexp.MustCompile(`^(\w+)=(\w+)/(\w+)@(\d+)$`).FindStringSubmatch(c)
		gen := int64(0)
		for _, d := range m[4] {
			gen = gen*10 + int64(d-'0')
		}
		list = append(list, map[string]any{
			"type": m[1], "status": m[2], "reason": m[3], "observedGeneration": gen,
			"message": "Something a person can act on.", "lastTransitionTime": "2026-01-01T00:00:00Z",
		})
	}
	st := map[string]any{"conditions": list}
	for _, c := range list {
		m := c.(map[string]any)
		if (m["type"] == "Ready" || m["type"] == "Stalled") && m["status"] == "True" {
			st["observedGeneration"] = m["observedGeneration"]
		}
	}
	if phase != "" {
		st["phase"] = phase
	}
	u.Object["status"] = st
	return u
}

// TestArgoCDHealthChecks runs the documented Lua health checks, with the interpreter Argo CD
// embeds, on the condition sets the operator writes, and checks that they agree with kstatus
// (what Flux uses): Current → Healthy, InProgress → Progressing, Failed → Degraded.
func TestArgoCDHealthChecks(t *testing.T) {
	checks := argoHealthChecks(t)
	tokenScript := checks["resource.customizations.health.tokens.statusops.dev_APIToken"]
	backendScripts := map[string]string{
		"StatusBackend":        checks["resource.customizations.health.tokens.statusops.dev_StatusBackend"],
		"ClusterStatusBackend": checks["resource.customizations.health.tokens.statusops.dev_ClusterStatusBackend"],
	}
	NewWithT(t).Expect(tokenScript).NotTo(BeEmpty())

	kstatusToArgo := map[status.Status]string{
		status.CurrentStatus: "Healthy", status.InProgressStatus: "Progressing", status.FailedStatus: "Degraded",
	}
	tokens := map[string]struct {
		obj        *unstructured.Unstructured
		want       string
		wantReason string
		// kstatus calls an object without any status Current; the Argo CD check waits for the
		// operator's first status instead.
		notKstatus bool
	}{
		"new, no status": {object("APIToken", 1, ""), "Progressing", "", true},
		"issued":         {object("APIToken", 2, "Active", "Ready=True/Issued@2"), "Healthy", "", false},
		"deactivated":    {object("APIToken", 3, "Inactive", "Ready=True/Deactivated@3"), "Healthy", "Deactivated", false},
		"issuing": {object("APIToken", 1, "Pending", "Ready=False/Pending@1", "Reconciling=True/Pending@1"),
			"Progressing", "Pending", false},
		"backend not ready": {object("APIToken", 1, "Pending", "Ready=False/BackendNotReady@1", "Reconciling=True/BackendNotReady@1"),
			"Progressing", "BackendNotReady", false},
		"replacing, old token still usable": {object("APIToken", 4, "Active", "Ready=False/BackendError@4", "Reconciling=True/BackendError@4"),
			"Progressing", "BackendError", false},
		"secret conflict": {object("APIToken", 1, "Failed", "Ready=False/SecretConflict@1", "Stalled=True/SecretConflict@1"),
			"Degraded", "SecretConflict", false},
		"backend not found": {object("APIToken", 1, "Failed", "Ready=False/BackendNotFound@1", "Stalled=True/BackendNotFound@1"),
			"Degraded", "BackendNotFound", false},
		"expired": {object("APIToken", 2, "Inactive", "Ready=False/Expired@2", "Stalled=True/Expired@2"),
			"Degraded", "Expired", false},
		"deleting": {object("APIToken", 2, "Active", "Ready=False/Deleting@2", "Reconciling=True/Deleting@2"),
			"Progressing", "Deleting", false},
		"spec changed, not yet observed": {object("APIToken", 5, "Active", "Ready=True/Issued@4"), "Progressing", "", false},
	}
	for name, tc := range tokens {
		t.Run("APIToken/"+name, func(t *testing.T) {
			g := NewWithT(t)
			got, msg := runHealthCheck(t, tokenScript, tc.obj)
			g.Expect(got).To(Equal(tc.want), "message: %s", msg)
			g.Expect(msg).To(ContainSubstring(tc.wantReason))
			if tc.notKstatus {
				return
			}
			res, err := status.Compute(tc.obj)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(kstatusToArgo[res.Status]).To(Equal(tc.want), "kstatus says %s (%s)", res.Status, res.Message)
		})
	}

	backends := map[string]struct {
		obj  func(kind string) *unstructured.Unstructured
		want string
	}{
		"unchecked":           {func(k string) *unstructured.Unstructured { return object(k, 1, "") }, "Progressing"},
		"ready":               {func(k string) *unstructured.Unstructured { return object(k, 1, "", "Ready=True/PingSucceeded@1") }, "Healthy"},
		"credentials invalid": {func(k string) *unstructured.Unstructured { return object(k, 1, "", "Ready=False/CredentialsInvalid@1") }, "Degraded"},
		"stale":               {func(k string) *unstructured.Unstructured { return object(k, 2, "", "Ready=True/PingSucceeded@1") }, "Progressing"},
	}
	for kind, script := range backendScripts {
		for name, tc := range backends {
			t.Run(kind+"/"+name, func(t *testing.T) {
				g := NewWithT(t)
				g.Expect(script).NotTo(BeEmpty())
				got, msg := runHealthCheck(t, script, tc.obj(kind))
				g.Expect(got).To(Equal(tc.want), "message: %s", msg)
			})
		}
	}
}
