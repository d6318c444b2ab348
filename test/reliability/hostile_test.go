package reliability

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// hostileValue looks like a token value; hostile replies carry it so that the leak check
// notices if the operator copies a reply into a status, an event or a log.
const hostileValue = "sgt_HOSTILEreplyVALUEthatMustNeverBeEchoed01"

// TestHostileManifests: invalid APITokens and backends are rejected by the API server,
// and the error names the field.
func TestHostileManifests(t *testing.T) {
	ctx := context.Background()
	ns := "rel-manifests"
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	token := func(spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tokens.statusops.dev/v1alpha1", "kind": "APIToken",
			"metadata": map[string]any{"generateName": "bad-", "namespace": ns}, "spec": spec}}
		return u
	}
	cases := []struct {
		name  string
		obj   *unstructured.Unstructured
		field string
	}{
		{"permission outside the enum", token(map[string]any{"permission": "Admin"}), "spec.permission"},
		{"permission missing", token(map[string]any{}), "spec.permission"},
		{"expiresAt not RFC 3339", token(map[string]any{"permission": "ReadOnly", "expiresAt": "next tuesday"}), "spec.expiresAt"},
		{"secretName not DNS-1123", token(map[string]any{"permission": "ReadOnly", "secretName": "Bad_Name!"}), "spec.secretName"},
		{"backendRef.kind outside the enum", token(map[string]any{"permission": "ReadOnly", "backendRef": map[string]any{"kind": "Vault", "name": "x"}}), "spec.backendRef.kind"},
		{"backendRef.name empty", token(map[string]any{"permission": "ReadOnly", "backendRef": map[string]any{"name": ""}}), "spec.backendRef.name"},
		{"deletionPolicy outside the enum", token(map[string]any{"permission": "ReadOnly", "deletionPolicy": "Orphan"}), "spec.deletionPolicy"},
		{"unknown field", token(map[string]any{"permission": "ReadOnly", "tokenValue": "x"}), "tokenValue"},
		{"description too long", token(map[string]any{"permission": "ReadOnly", "description": strings.Repeat("d", 300)}), "spec.description"},
		{"ClusterStatusBackend url not http(s)", &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tokens.statusops.dev/v1alpha1", "kind": "ClusterStatusBackend",
			"metadata": map[string]any{"generateName": "bad-"},
			"spec":     map[string]any{"url": "ftp://status.example.com", "credentialsSecretRef": map[string]any{"name": "x", "namespace": ns}}}}, "spec.url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := cp.Client.Create(ctx, c.obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("the API server accepted it")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("the error does not name %s: %v", c.field, err)
			}
		})
	}
}

// hostileCase is one APIToken (and what it refers to) that cannot be issued.
type hostileCase struct {
	name string
	// setup creates what the token refers to and returns the backendRef name ("" = the
	// scenario's own backend) and adjusts the token.
	setup func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken)
	// reason is the one Ready reason the case must end with. BackendError and
	// BackendNotReady are transient (phase Pending, Reconciling, kstatus InProgress); every
	// other reason is permanent: phase Failed and Stalled=True, so kstatus says Failed.
	reason string
}

// refusedCreatesAllowed is how many creates a permanently refused APIToken may cost: one.
// (It was 3 while a pass right after the refusal could run on a cached APIToken that did not
// yet show its Failed status; the write expectations now cover every status write.)
const refusedCreatesAllowed = 1

// permanent reports whether a reason needs a person (phase Failed, Stalled=True).
func permanent(reason string) bool {
	return reason != tokensv1alpha1.ReasonBackendError && reason != tokensv1alpha1.ReasonBackendNotReady
}

// TestHostileInput creates one APIToken per hostile case, all at once, with one manager:
// each must end with Ready=False, its one reason and a message, Stalled exactly when the
// reason is permanent, stay there, make one create when the reply is permanent (a bounded
// number when it is transient), issue nothing that survives its deletion, and leak no value.
func TestHostileInput(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	past := metav1.NewTime(time.Now().Add(-time.Hour))
	notRunning := closedPort(t)
	garbage := garbageServer(t)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body><h1>Welcome to nginx!</h1></body></html>"))
	}))
	t.Cleanup(html.Close)
	readOnly := issueBackendToken(t, s, backend.PermissionReadOnly)
	// proxies are the per-case proxies of the reply and refuse cases, to count creates.
	proxies := map[string]*faultproxy.Proxy{}

	// backendWith makes a ClusterStatusBackend named after the case at url with credentials
	// Secret secret/key (created with value when value != "").
	backendWith := func(t *testing.T, tok *tokensv1alpha1.APIToken, url, secret, key, value string) {
		name := tok.Name
		if value != "" {
			if err := s.Kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: s.Namespace},
				StringData: map[string]string{"token": value}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateBackend(ctx, name, url, secret, key, nil); err != nil {
			t.Fatal(err)
		}
		tok.Spec.BackendRef.Name = name
	}
	// reply makes a proxy whose create replies are replaced by body (the backend still
	// creates the token), and a backend through it.
	reply := func(code int, contentType string, body []byte) func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
		return func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			p, err := faultproxy.Start(s.Backend.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			p.Add(faultproxy.Fault{Kind: faultproxy.Body, Match: faultproxy.MatchClass("create"), Status: code, ContentType: contentType, Body: body})
			proxies[tok.Name] = p
			backendWith(t, tok, p.URL, "backend-admin", "token", "")
		}
	}
	// refuse answers creates with code and body without forwarding: the backend refused.
	refuse := func(code int, contentType string, body []byte) func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
		return func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			p, err := faultproxy.Start(s.Backend.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			p.Add(faultproxy.Fault{Kind: faultproxy.Status, Match: faultproxy.MatchClass("create"), Status: code, ContentType: contentType, Body: body})
			proxies[tok.Name] = p
			backendWith(t, tok, p.URL, "backend-admin", "token", "")
		}
	}
	envelope := func(data string) []byte { return []byte(`{"success":true,"data":` + data + `}`) }
	rejected, transient, notReady := tokensv1alpha1.ReasonBackendRejected, tokensv1alpha1.ReasonBackendError, tokensv1alpha1.ReasonBackendNotReady

	cases := []hostileCase{
		{"past-expiresat", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) { tok.Spec.ExpiresAt = &past },
			tokensv1alpha1.ReasonExpiresAtInPast},
		{"foreign-secret", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			if err := s.Kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: s.Namespace},
				StringData: map[string]string{"token": "theirs"}}); err != nil {
				t.Fatal(err)
			}
			tok.Spec.SecretName = "someone-elses"
		}, tokensv1alpha1.ReasonSecretConflict},
		{"missing-clusterbackend", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			tok.Spec.BackendRef.Name = "does-not-exist"
		},
			tokensv1alpha1.ReasonBackendNotFound},
		{"missing-statusbackend", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			tok.Spec.BackendRef = &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindStatusBackend, Name: "nope"}
		}, tokensv1alpha1.ReasonBackendNotFound},
		{"namespace-not-allowed", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			if err := s.CreateBackend(ctx, tok.Name, s.Proxy.URL, "backend-admin", "token",
				&metav1.LabelSelector{MatchLabels: map[string]string{"tokens-allowed": "yes"}}); err != nil {
				t.Fatal(err)
			}
			tok.Spec.BackendRef.Name = tok.Name
		}, tokensv1alpha1.ReasonNamespaceNotAllowed},
		{"credentials-secret-missing", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, s.Proxy.URL, "no-such-secret", "token", "")
		}, notReady},
		{"credentials-wrong-key", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, s.Proxy.URL, "backend-admin", "password", "")
		}, notReady},
		{"credentials-read-only", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, s.Proxy.URL, "read-only-cred", "token", readOnly)
		}, notReady},
		{"credentials-unknown-token", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, s.Proxy.URL, "unknown-cred", "token", "sgt_thisTokenWasNeverIssuedByTheBackend000")
		}, notReady},
		{"credentials-empty-value", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			if err := s.Kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "empty-cred", Namespace: s.Namespace},
				Data: map[string][]byte{"token": {}}}); err != nil {
				t.Fatal(err)
			}
			backendWith(t, tok, s.Proxy.URL, "empty-cred", "token", "")
		}, notReady},
		{"unreachable-url", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, "http://"+notRunning+"/api/v3", "backend-admin", "token", "")
		}, notReady},
		{"non-http-url", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, "http://"+garbage+"/api/v3", "backend-admin", "token", "")
		}, notReady},
		{"html-server-url", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, html.URL+"/api/v3", "backend-admin", "token", "")
		}, notReady},
		{"https-to-http-server", func(t *testing.T, s *harness.Scenario, tok *tokensv1alpha1.APIToken) {
			backendWith(t, tok, strings.Replace(s.Proxy.URL, "http://", "https://", 1), "backend-admin", "token", "")
		}, notReady},
		{"reply-oversized", reply(201, "", append(append([]byte(`{"success":true,"data":{"id":"tok_big","token":"`+hostileValue+`","pad":"`), []byte(strings.Repeat("x", 3<<20))...), []byte(`"}}`)...)), rejected},
		{"reply-malformed-json", reply(201, "", []byte(`{"success":true,"data":{"id":"tok_x","token":"`+hostileValue+`"`)), rejected},
		{"reply-wrong-types", reply(201, "", envelope(`{"id":12345,"token":["`+hostileValue+`"],"permission":true,"status":7,"created_at":"yesterday"}`)), rejected},
		{"reply-token-without-id", reply(201, "", envelope(`{"token":"`+hostileValue+`","permission":"read_only","status":"active","created_at":"2026-01-01T00:00:00Z","last4":"ed01"}`)), rejected},
		{"reply-without-token-value", reply(201, "", envelope(`{"id":"tok_novalue","permission":"read_only","status":"active","created_at":"2026-01-01T00:00:00Z"}`)), rejected},
		{"reply-html-500", refuse(500, "text/html", []byte(`<html><body><h1>502 Bad Gateway</h1><pre>`+hostileValue+`</pre></body></html>`)), transient},
		{"reply-html-200", reply(200, "text/html", []byte(`<!doctype html><html><body>Login required</body></html>`)), rejected},
		{"reply-success-false", reply(201, "", []byte(`{"success":false,"message":"nope `+hostileValue+`","errors":["`+hostileValue+`"]}`)), rejected},
		{"reply-null-data", reply(201, "", envelope(`null`)), rejected},
		{"reply-array-data", reply(201, "", envelope(`[{"id":"tok_a","token":"`+hostileValue+`"}]`)), rejected},
		{"reply-empty-body", reply(201, "", []byte{}), rejected},
		{"reply-401", refuse(401, "", []byte(`{"success":false,"message":"token `+hostileValue+` is invalid"}`)), transient},
		{"reply-403-read-only", refuse(403, "", []byte(`{"success":false,"message":"token is read-only"}`)), rejected},
		{"reply-422", refuse(422, "", []byte(`{"success":false,"message":"expires_at is invalid","errors":["expires_at"]}`)), rejected},
	}
	startManager(t, s)
	watch(t, s)
	createdAt := time.Now()
	for _, c := range cases {
		tok := s.TokenSpec(c.name, tokensv1alpha1.PermissionReadOnly)
		c.setup(t, s, tok)
		if err := s.Kube.Create(ctx, tok); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	// One well-formed token beside them must still be issued: hostile neighbours do not
	// block the queue.
	if err := s.Kube.Create(ctx, s.TokenSpec("healthy-neighbour", tokensv1alpha1.PermissionReadOnly)); err != nil {
		t.Fatal(err)
	}

	settled := func(c hostileCase, tok *tokensv1alpha1.APIToken) (bool, string) {
		cond := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
		if cond == nil {
			return false, "no Ready condition"
		}
		stalled := meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1alpha1.ConditionStalled)
		now := fmt.Sprintf("phase %s Ready=%s reason %s Stalled=%t: %q", tok.Status.Phase, cond.Status, cond.Reason, stalled, cond.Message)
		wantPhase := tokensv1alpha1.PhasePending
		if permanent(c.reason) {
			wantPhase = tokensv1alpha1.PhaseFailed
		}
		switch {
		case cond.Status != metav1.ConditionFalse || cond.Reason != c.reason || cond.Message == "":
			return false, now + " (want Ready=False reason " + c.reason + " with a message)"
		case tok.Status.Phase != wantPhase:
			return false, now + " (want phase " + string(wantPhase) + ")"
		case stalled != permanent(c.reason):
			return false, now + fmt.Sprintf(" (want Stalled=%t)", permanent(c.reason))
		}
		return true, ""
	}
	get := func(name string) (*tokensv1alpha1.APIToken, error) {
		var tok tokensv1alpha1.APIToken
		err := s.Kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: name}, &tok)
		return &tok, err
	}
	if err := harness.WaitFor(ctx, 90*time.Second, "every hostile case settled", func() (bool, string, error) {
		var pending []string
		for _, c := range cases {
			tok, err := get(c.name)
			if err != nil {
				return false, err.Error(), nil
			}
			if ok, why := settled(c, tok); !ok {
				pending = append(pending, c.name+": "+why)
			}
		}
		return len(pending) == 0, strings.Join(pending, "; "), nil
	}); err != nil {
		t.Error(err)
	}
	if err := harness.WaitFor(ctx, 60*time.Second, "the healthy neighbour issued", func() (bool, string, error) {
		healthy, err := get("healthy-neighbour")
		if err != nil {
			return false, err.Error(), nil
		}
		return harness.IsIssued(healthy), readyOf(healthy), nil
	}); err != nil {
		t.Error(err)
	}
	// They stay there (no flapping to Active) for a few more seconds.
	time.Sleep(3 * time.Second)
	for _, c := range cases {
		tok, err := get(c.name)
		if err != nil {
			t.Fatal(err)
		}
		ok, why := settled(c, tok)
		t.Logf("%-28s %s", c.name, readyOf(tok))
		if !ok {
			t.Errorf("%s: %s", c.name, why)
		}
		// A permanent refusal is not retried: one create, but see refusedCreatesAllowed. A
		// transient one is retried with the per-token backoff (100 ms doubling, so 9 retries
		// in the first 51 s, then one per 30 s), plus one for another wake-up: not one per pass.
		transientCreatesAllowed := 11 + int(time.Since(createdAt)/(30*time.Second))
		if p := proxies[c.name]; p != nil {
			creates := p.Counts()["POST create"]
			switch {
			case permanent(c.reason) && (creates < 1 || creates > refusedCreatesAllowed):
				t.Errorf("%s: %d creates, want 1 to %d (a permanent refusal is not retried)", c.name, creates, refusedCreatesAllowed)
			case !permanent(c.reason) && (creates < 1 || creates > transientCreatesAllowed):
				t.Errorf("%s: %d creates, want 1 to %d (retried with backoff)", c.name, creates, transientCreatesAllowed)
			}
		}
	}
	var foreign corev1.Secret
	if err := s.Kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: "someone-elses"}, &foreign); err != nil || string(foreign.Data["token"]) != "theirs" {
		t.Errorf("the foreign Secret was changed or removed: %v", err)
	}
	s.AddValue(hostileValue)
	rep, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with every hostile case settled: %s", rep)
	// Every hostile case settled with nothing active that should not be: a create whose 2xx
	// reply could not be read is swept by the controller before it reports Failed.
	for _, v := range rep.Violations {
		t.Errorf("with every hostile case settled: %s", v)
	}

	// Deleting them leaves nothing behind. The finalizer of a token whose backend never
	// became Ready waits for it (a token might exist that only that backend can revoke), and
	// the Deleting condition says so.
	var waitingForBackend []string
	for _, c := range cases {
		if tok, err := get(c.name); err == nil && harness.ReadyReason(tok) == tokensv1alpha1.ReasonBackendNotReady {
			waitingForBackend = append(waitingForBackend, c.name)
		}
	}
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range waitingForBackend {
		if err := harness.WaitFor(ctx, 30*time.Second, name+" Deleting with a message", func() (bool, string, error) {
			tok, err := get(name)
			if err != nil {
				return false, err.Error(), nil
			}
			c := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
			return c != nil && c.Reason == tokensv1alpha1.ReasonDeleting && strings.Contains(c.Message, "finalizer"), readyOf(tok), nil
		}); err != nil {
			t.Error(err)
		}
		// The way out the message gives: delete the backend that never became Ready. It
		// waits for its tokens (InUse), and they release their finalizers because it is
		// being deleted and this operator never had a working client for it.
		tok, err := get(name)
		if err != nil {
			t.Fatal(err)
		}
		ref := tok.BackendRefOrDefault()
		var backendObj client.Object = &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}}
		if ref.Kind == tokensv1alpha1.BackendKindStatusBackend {
			backendObj = &tokensv1alpha1.StatusBackend{ObjectMeta: metav1.ObjectMeta{Namespace: tok.Namespace, Name: ref.Name}}
		}
		if err := s.Kube.Delete(ctx, backendObj); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	if err := s.WaitGone(ctx, 90*time.Second); err != nil {
		t.Error(err)
	}
	checkOracle(t, s, "after deleting every hostile case")
	recordFigure("hostile", map[string]any{"cases": len(cases)})
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// garbageServer answers every connection with non-HTTP bytes and closes it.
func garbageServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage"))
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

// issueBackendToken creates a backend token directly (not through the operator).
func issueBackendToken(t *testing.T, s *harness.Scenario, perm backend.Permission) string {
	c, err := native.New(native.Options{BaseURL: s.Backend.URL, Token: backend.SecretValue(s.Backend.AdminToken)})
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateToken(context.Background(), "", native.CreateRequest{Name: "read-only-credential", Permission: perm})
	if err != nil {
		t.Fatal(err)
	}
	return created.Value.Reveal()
}
