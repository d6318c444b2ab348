package oracle

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

// The oracle's tests plant each violation in an otherwise healthy world (the reference
// backend over real HTTP, the API server's objects in a fake client) and check that Check
// reports it, and that the healthy world itself reports nothing: an oracle that cannot see
// a broken invariant would let every scenario pass.

const ns = "oracle"

// world is one healthy APIToken ("good", Active and Ready) with its backend token and
// Secret, plus whatever a case plants.
type world struct {
	t       *testing.T
	ctx     context.Context
	be      *servertest.Instance
	admin   *native.Client
	objects []client.Object
	in      Input
	good    *tokensv1alpha1.APIToken
	// value is the good token's value (the one in its Secret).
	value string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), be: servertest.Start(t)}
	w.admin = w.be.Client(t)
	w.good = w.apiToken("good", "uid-good")
	created := w.createBackendToken("uid-good", true)
	w.value = created.Value.Reveal()
	w.good.Status.TokenID = created.ID
	w.objects = append(w.objects, w.good, w.secret("good", "uid-good", w.value))
	w.in = Input{
		Namespace:  ns,
		BackendURL: w.be.URL,
		AdminToken: w.be.AdminToken,
		Values:     map[string]string{},
		Texts:      map[string][]byte{"log of manager": []byte(`{"msg":"Issued token","tokenHint":"...` + w.value[len(w.value)-4:] + `"}`)},
		RetainUIDs: map[types.UID]bool{},
	}
	return w
}

// apiToken is an Active, Ready (Issued) APIToken; its TokenID is set by the caller.
func (w *world) apiToken(name string, uid types.UID) *tokensv1alpha1.APIToken {
	tok := &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid}}
	tok.Spec.Permission = tokensv1alpha1.PermissionReadOnly
	tok.Status.Phase = tokensv1alpha1.PhaseActive
	tok.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1alpha1.ReasonIssued, Message: "Issued.", LastTransitionTime: metav1.Now()}}
	return tok
}

func (w *world) secret(name string, owner types.UID, value string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "APIToken", Name: name, UID: owner, Controller: new(true)}}},
		Data:       map[string][]byte{tokensv1alpha1.SecretKeyToken: []byte(value)},
	}
}

// createBackendToken creates an active token on the backend with externalID ("" for none),
// labelled managed-by the operator when managed.
func (w *world) createBackendToken(externalID types.UID, managed bool) *native.CreatedToken {
	w.t.Helper()
	req := native.CreateRequest{Name: "planted-" + string(externalID), Permission: backend.PermissionReadOnly, ExternalID: string(externalID)}
	if managed {
		req.Labels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}
	}
	created, err := w.admin.CreateToken(w.ctx, "", req)
	if err != nil {
		w.t.Fatalf("creating a backend token: %v", err)
	}
	return created
}

func (w *world) check() *Report {
	w.t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		w.t.Fatal(err)
	}
	if err := tokensv1alpha1.AddToScheme(scheme); err != nil {
		w.t.Fatal(err)
	}
	w.in.Kube = fake.NewClientBuilder().WithScheme(scheme).WithObjects(w.objects...).Build()
	rep, err := Check(w.ctx, w.in)
	if err != nil {
		w.t.Fatalf("oracle could not check: %v", err)
	}
	return rep
}

func TestHealthyWorldHasNoViolation(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t)
	rep := w.check()
	g.Expect(rep.Err()).NotTo(HaveOccurred())
	g.Expect(rep.APITokens).To(Equal(1))
	g.Expect(rep.Active).To(Equal(1))
	g.Expect(rep.TextBytes).To(BeNumerically(">", 0), "the log, the events and the statuses were scanned")
}

// TestPlantedViolationsAreCaught: each case breaks one invariant; Check must name it.
func TestPlantedViolationsAreCaught(t *testing.T) {
	cases := map[string]struct {
		plant func(w *world)
		want  string
	}{
		"an extra active token of a Ready APIToken": {
			plant: func(w *world) { w.createBackendToken("uid-good", true) },
			want:  "that its status names neither as current nor as pending deactivation",
		},
		"an extra active token of an APIToken being deleted": {
			plant: func(w *world) {
				tok := w.apiToken("leaving", "uid-leaving")
				tok.Finalizers = []string{tokensv1alpha1.Finalizer}
				tok.DeletionTimestamp = &metav1.Time{Time: time.Now()}
				tok.Status.TokenID = w.createBackendToken("uid-leaving", true).ID
				w.createBackendToken("uid-leaving", true)
				w.objects = append(w.objects, tok)
			},
			want: "being deleted) has active backend token",
		},
		"an orphan: an active managed token of no APIToken": {
			plant: func(w *world) { w.createBackendToken("uid-nobody", true) },
			want:  "is active but no APIToken owns it",
		},
		"a deleted APIToken's token still active": {
			plant: func(w *world) {
				w.createBackendToken("uid-deleted", false)
				w.in.DeletedUIDs = append(w.in.DeletedUIDs, "uid-deleted")
			},
			want: "deleted APIToken uid-deleted still has active backend token",
		},
		"a superseded value still authenticates": {
			plant: func(w *world) { w.in.Values[w.createBackendToken("", false).Value.Reveal()] = "uid-good" },
			want:  "a superseded token value",
		},
		"status names a token that is not active": {
			plant: func(w *world) {
				if _, err := w.admin.DeactivateToken(w.ctx, w.good.Status.TokenID); err != nil {
					w.t.Fatal(err)
				}
			},
			want: "names token",
		},
		"the Secret holds another token's value": {
			plant: func(w *world) {
				other := w.createBackendToken("", false).Value.Reveal()
				w.objects[1] = w.secret("good", "uid-good", other)
			},
			want: "status says",
		},
		"an Active APIToken without its Secret": {
			plant: func(w *world) { w.objects = w.objects[:1] },
			want:  "does not exist",
		},
		"a value in a status": {
			plant: func(w *world) { w.good.Status.Conditions[0].Message = "Issued " + w.value },
			want:  "appears in APIToken statuses",
		},
		"a value in an Event": {
			plant: func(w *world) {
				w.objects = append(w.objects, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e1"}, Reason: "Issued", Note: "value " + w.value, EventTime: metav1.NowMicro()})
			},
			want: "appears in events (events.k8s.io)",
		},
		"a value in a core Event": {
			plant: func(w *world) {
				w.objects = append(w.objects, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e2"}, Reason: "Issued", Message: "value " + base64.StdEncoding.EncodeToString([]byte(w.value))})
			},
			want: "appears in events (core)",
		},
		"more creates than the scenario's issuances": {
			plant: func(w *world) {
				w.in.Writes = &Writes{Creates: 2}
				w.in.ExpectCreates = new(1)
			},
			want: "the backend created 2 tokens, the scenario expected 1",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			w := newWorld(t)
			tc.plant(w)
			rep := w.check()
			g.Expect(rep.Err()).To(HaveOccurred(), "the planted violation went unseen")
			g.Expect(strings.Join(rep.Violations, "\n")).To(ContainSubstring(tc.want))
		})
	}
}

// TestLeakInEveryEncodingIsCaught plants the good token's value (and one with characters
// that URL-escaping changes) in a log, in each form it could take there.
func TestLeakInEveryEncodingIsCaught(t *testing.T) {
	const special = "sgt_with/slash+plus=eq&amp?q"
	std, raw := base64.StdEncoding, base64.RawURLEncoding
	forms := map[string]func(v string) string{
		"plain":                   func(v string) string { return v },
		"base64":                  func(v string) string { return std.EncodeToString([]byte(v)) },
		"base64 URL alphabet":     func(v string) string { return base64.URLEncoding.EncodeToString([]byte(v)) },
		"base64 unpadded":         func(v string) string { return raw.EncodeToString([]byte(v)) },
		"base64 inside a blob +1": func(v string) string { return std.EncodeToString([]byte("{" + v + `"}`)) },
		"base64 inside a blob +2": func(v string) string { return std.EncodeToString([]byte(`{"` + v + `"}`)) },
		"base64 inside a blob +3": func(v string) string { return std.EncodeToString([]byte(`{"t` + v + `"}`)) },
		"hex":                     func(v string) string { return hex.EncodeToString([]byte(v)) },
		"HEX":                     func(v string) string { return strings.ToUpper(hex.EncodeToString([]byte(v))) },
		"URL query-escaped":       url.QueryEscape,
		"URL path-escaped":        url.PathEscape,
		// client-go's logBody prints a binary body as a hexdump -C, inside a JSON log line.
		"hex dump in a log line": func(v string) string {
			dump := hex.Dump([]byte(`{"kind":"Secret","data":{"token":"` + v + `"}}`))
			return `{"msg":"Response Body","body":"` + strings.ReplaceAll(dump, "\n", `\n`) + `"}`
		},
	}
	for name, encode := range forms {
		for _, which := range []string{"token value", "value with URL-special characters"} {
			t.Run(name+"/"+which, func(t *testing.T) {
				g := NewWithT(t)
				w := newWorld(t)
				v := w.value
				if which != "token value" {
					v = special
					w.in.Values[special] = "uid-good" // dead: it never authenticated
				}
				w.in.Texts["log of manager"] = []byte(`{"msg":"Created token","x":"` + encode(v) + `"}` + "\n")
				rep := w.check()
				g.Expect(strings.Join(rep.Violations, "\n")).To(ContainSubstring("appears in log of manager"), "a %s leak went unseen", name)
			})
		}
	}
}

// TestScanHasNoFalseAlarm: the hint (last four characters) and other tokens' values are
// allowed in texts.
func TestScanHasNoFalseAlarm(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t)
	w.in.Texts["log of manager"] = []byte(`{"msg":"Issued","tokenHint":"...` + w.value[len(w.value)-4:] + `","prefix":"` + w.value[:8] + `"}`)
	g.Expect(w.check().Err()).NotTo(HaveOccurred())
}
