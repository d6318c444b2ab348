package conformance_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// fixture is the state the endpoint table works on.
type fixture struct {
	// fullAccess is a full_access token made through the API: it has no admin role.
	readOnly, fullAccess, victim, deactivated tokenObj
	board, doomedBoard                        boardObj
}

func newFixture(t *testing.T, tg *target) fixture {
	t.Helper()
	g := NewWithT(t)
	s := uniq()
	f := fixture{
		readOnly:    tg.createToken(t, map[string]any{"name": "ro-" + s, "permission": "read_only"}),
		fullAccess:  tg.createToken(t, map[string]any{"name": "fa-" + s, "permission": "full_access"}),
		victim:      tg.createToken(t, map[string]any{"name": "victim-" + s, "permission": "read_only"}),
		deactivated: tg.createToken(t, map[string]any{"name": "gone-" + s, "permission": "full_access"}),
	}
	r := tg.do(t, http.MethodPost, "/api_tokens/"+f.deactivated.ID+"/deactivate", tg.admin, nil)
	g.Expect(r.Status).To(Equal(http.StatusOK), "%s", r.Raw)
	for _, b := range []*boardObj{&f.board, &f.doomedBoard} {
		r := tg.do(t, http.MethodPost, "/boards", tg.admin, map[string]any{"name": "board-" + s})
		g.Expect(r.Status).To(Equal(http.StatusCreated), "%s", r.Raw)
		g.Expect(json.Unmarshal(r.Env.Data, b)).To(Succeed())
		g.Expect(b.ID).To(HavePrefix("brd_"))
	}
	return f
}

// TestEndpoints walks every row of the protocol's endpoint table with each kind of caller.
func TestEndpoints(t *testing.T) {
	tg := newTarget(t)
	f := newFixture(t, tg)
	const (
		admin = "admin"
		fa    = "full_access"
		ro    = "read_only"
		none  = "none"
		bad   = "unknown"
		gone  = "deactivated"
	)
	callers := map[string]string{
		admin: tg.admin,
		fa:    f.fullAccess.Token,
		ro:    f.readOnly.Token,
		none:  "",
		bad:   "sgt_" + strings.Repeat("x", 40),
		gone:  f.deactivated.Token,
	}
	type row struct {
		method, path, caller string
		body                 any
		status               int
		check                func(g *WithT, r reply)
	}
	isToken := func(id string) func(g *WithT, r reply) {
		return func(g *WithT, r reply) { g.Expect(tg.decodeToken(g, r.Env.Data, false).ID).To(Equal(id)) }
	}
	isList := func(g *WithT, r reply) {
		g.Expect(r.Env.Pagination).NotTo(BeNil())
		g.Expect(r.Env.Pagination.PerPage).To(BeNumerically("<=", 100))
		var items []json.RawMessage
		g.Expect(json.Unmarshal(r.Env.Data, &items)).To(Succeed())
	}
	message := func(want string) func(g *WithT, r reply) {
		return func(g *WithT, r reply) { g.Expect(r.Env.Message).To(ContainSubstring(want)) }
	}
	needsAdmin := message("token management needs the admin role")
	errorsMention := func(field string) func(g *WithT, r reply) {
		return func(g *WithT, r reply) {
			g.Expect(r.Env.Message + " " + strings.Join(r.Env.Errors, "; ")).To(ContainSubstring(field))
		}
	}
	rows := []row{
		{method: "GET", path: "/ping", caller: admin, status: 200},
		{method: "GET", path: "/ping", caller: ro, status: 200},
		{method: "GET", path: "/ping", caller: none, status: 401},
		{method: "GET", path: "/ping", caller: bad, status: 401},
		{method: "GET", path: "/ping", caller: gone, status: 401},
		{method: "GET", path: "/boards", caller: none, status: 401},

		{method: "POST", path: "/api_tokens", caller: admin, body: map[string]any{"name": "made-" + uniq(), "permission": "read_only", "labels": map[string]string{"a": "b"}}, status: 201,
			check: func(g *WithT, r reply) {
				tok := tg.decodeToken(g, r.Env.Data, true)
				g.Expect(tok.Status).To(Equal("active"))
				g.Expect(tok.Labels).To(Equal(map[string]string{"a": "b"}))
				g.Expect(tok.ExternalID).To(BeNil())
				g.Expect(tok.LastUsedAt).To(BeNil())
				g.Expect(tok.DeactivatedAt).To(BeNil())
				g.Expect(tok.Role).To(BeNil(), "POST /api_tokens never creates an admin token")
			}},
		{method: "POST", path: "/api_tokens", caller: fa, body: map[string]any{"name": "x", "permission": "read_only"}, status: 403, check: needsAdmin},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"full_access","role":"admin"}`, status: 400, check: message("role")},
		{method: "POST", path: "/api_tokens", caller: ro, body: map[string]any{"name": "x", "permission": "read_only"}, status: 403, check: message("token is read-only")},
		{method: "POST", path: "/api_tokens", caller: none, body: map[string]any{"name": "x", "permission": "read_only"}, status: 401},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","root":true}`, status: 400, check: message("root")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":5,"permission":"read_only"}`, status: 400, check: message("name")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","labels":[]}`, status: 400, check: message("labels")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x",`, status: 400},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"","permission":"read_only"}`, status: 422},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"root"}`, status: 422},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","expires_at":"next week"}`, status: 422},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","expires_at":"9000-01-01T00:00:00Z"}`, status: 422, check: message("invalid token request")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","description":"` + strings.Repeat("x", 2<<20) + `"}`, status: 413},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","description":"` + strings.Repeat("é", 128) + `"}`, status: 422, check: errorsMention("description")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"x","permission":"read_only","description":"two\nlines"}`, status: 422, check: errorsMention("description")},
		{method: "POST", path: "/api_tokens", caller: admin, body: `{"name":"d-` + uniq() + `","permission":"read_only","description":"` + strings.Repeat("é", 127) + `x"}`, status: 201, check: func(g *WithT, r reply) {
			g.Expect(tg.decodeToken(g, r.Env.Data, true).Description).To(HaveLen(255))
		}},

		{method: "GET", path: "/api_tokens/" + f.victim.ID, caller: admin, status: 200, check: isToken(f.victim.ID)},
		{method: "HEAD", path: "/api_tokens/" + f.victim.ID, caller: admin, status: 200},
		{method: "GET", path: "/api_tokens/tok_00000000000000000000", caller: admin, status: 404},
		{method: "GET", path: "/api_tokens/" + f.victim.ID, caller: ro, status: 403, check: needsAdmin},
		{method: "GET", path: "/api_tokens/" + f.victim.ID, caller: fa, status: 403, check: needsAdmin},
		{method: "HEAD", path: "/api_tokens/" + f.victim.ID, caller: fa, status: 403},
		{method: "GET", path: "/api_tokens/tok_00000000000000000000", caller: fa, status: 403, check: needsAdmin},

		{method: "GET", path: "/api_tokens", caller: admin, status: 200, check: isList},
		{method: "GET", path: "/api_tokens?status=bogus", caller: admin, status: 400},
		{method: "GET", path: "/api_tokens?page=0", caller: admin, status: 400},
		{method: "GET", path: "/api_tokens", caller: ro, status: 403, check: needsAdmin},
		{method: "GET", path: "/api_tokens", caller: fa, status: 403, check: needsAdmin},
		{method: "GET", path: "/api_tokens?external_id=x", caller: fa, status: 403, check: needsAdmin},

		{method: "GET", path: "/api_tokens/self", caller: ro, status: 200, check: isToken(f.readOnly.ID)},
		{method: "GET", path: "/api_tokens/self", caller: admin, status: 200, check: func(g *WithT, r reply) {
			tok := tg.decodeToken(g, r.Env.Data, false)
			g.Expect(tok.Permission).To(Equal("full_access"))
			g.Expect(tok.Role).To(HaveValue(Equal("admin")))
		}},
		{method: "GET", path: "/api_tokens/self", caller: fa, status: 200, check: func(g *WithT, r reply) {
			tok := tg.decodeToken(g, r.Env.Data, false)
			g.Expect(tok.ID).To(Equal(f.fullAccess.ID))
			g.Expect(tok.Role).To(BeNil())
		}},
		{method: "GET", path: "/api_tokens/self", caller: gone, status: 401},

		{method: "POST", path: "/api_tokens/" + f.victim.ID + "/deactivate", caller: ro, status: 403, check: message("token is read-only")},
		{method: "POST", path: "/api_tokens/" + f.victim.ID + "/deactivate", caller: fa, status: 403, check: needsAdmin},
		{method: "POST", path: "/api_tokens/" + f.fullAccess.ID + "/deactivate", caller: fa, status: 403, check: needsAdmin},
		{method: "GET", path: "/api_tokens/" + f.victim.ID, caller: admin, status: 200, check: func(g *WithT, r reply) {
			g.Expect(tg.decodeToken(g, r.Env.Data, false).Status).To(Equal("active"), "refused deactivations changed nothing")
		}},
		{method: "POST", path: "/api_tokens/" + f.victim.ID + "/deactivate", caller: admin, status: 200, check: func(g *WithT, r reply) {
			tok := tg.decodeToken(g, r.Env.Data, false)
			g.Expect(tok.Status).To(Equal("inactive"))
			g.Expect(tok.DeactivatedAt).NotTo(BeNil())
		}},
		{method: "POST", path: "/api_tokens/" + f.victim.ID + "/deactivate", caller: admin, status: 200, check: isToken(f.victim.ID)},
		{method: "POST", path: "/api_tokens/tok_00000000000000000000/deactivate", caller: admin, status: 404},

		{method: "GET", path: "/boards", caller: ro, status: 200, check: isList},
		{method: "HEAD", path: "/boards", caller: ro, status: 200},
		{method: "OPTIONS", path: "/boards", caller: ro, status: 204},
		{method: "GET", path: "/boards", caller: admin, status: 200, check: isList},
		{method: "POST", path: "/boards", caller: admin, body: map[string]any{"name": "new"}, status: 201},
		{method: "POST", path: "/boards", caller: admin, body: map[string]any{"name": ""}, status: 422},
		{method: "POST", path: "/boards", caller: ro, body: map[string]any{"name": "new"}, status: 403},
		{method: "GET", path: "/boards/" + f.board.ID, caller: ro, status: 200, check: func(g *WithT, r reply) {
			var b boardObj
			g.Expect(json.Unmarshal(r.Env.Data, &b)).To(Succeed())
			g.Expect(b).To(Equal(f.board))
		}},
		{method: "GET", path: "/boards/brd_00000000000000000000", caller: ro, status: 404},
		{method: "DELETE", path: "/boards/" + f.doomedBoard.ID, caller: ro, status: 403},
		{method: "DELETE", path: "/boards/" + f.doomedBoard.ID, caller: admin, status: 200},
		{method: "GET", path: "/boards/" + f.doomedBoard.ID, caller: admin, status: 404},
		{method: "DELETE", path: "/boards/" + f.doomedBoard.ID, caller: admin, status: 404},
		{method: "PUT", path: "/boards/" + f.board.ID, caller: admin, body: map[string]any{"name": "x"}, status: 405},
		{method: "PATCH", path: "/api_tokens/" + f.readOnly.ID, caller: admin, body: map[string]any{"name": "x"}, status: 405},
		{method: "PATCH", path: "/api_tokens/" + f.readOnly.ID, caller: fa, body: map[string]any{"name": "x"}, status: 403, check: needsAdmin},
		{method: "GET", path: "/boards", caller: fa, status: 200, check: isList},
		{method: "POST", path: "/boards", caller: fa, body: map[string]any{"name": "by-full-access"}, status: 201},
		{method: "GET", path: "/no_such_resource", caller: admin, status: 404},
	}
	for _, rw := range rows {
		// Rows run in order: later rows depend on earlier deactivations and deletes.
		t.Run(fmt.Sprintf("%s %s as %s -> %d", rw.method, truncate(rw.path), rw.caller, rw.status), func(t *testing.T) {
			g := NewWithT(t)
			r := tg.do(t, rw.method, rw.path, callers[rw.caller], rw.body)
			g.Expect(r.Status).To(Equal(rw.status), "%.300s", r.Raw)
			if rw.method != http.MethodHead && r.Status != http.StatusNoContent {
				expectEnvelope(g, r)
				g.Expect(r.Header.Get("Content-Type")).To(HavePrefix("application/json"))
			}
			if rw.check != nil {
				rw.check(g, r)
			}
		})
	}
}

func truncate(p string) string {
	if len(p) > 60 {
		return p[:60]
	}
	return p
}

// TestReadOnlyEnforcement sends every write method to every resource with a
// read_only token: each is refused with the documented 403 and changes nothing.
func TestReadOnlyEnforcement(t *testing.T) {
	tg := newTarget(t)
	f := newFixture(t, tg)
	paths := []string{
		"/api_tokens", "/api_tokens/" + f.victim.ID, "/api_tokens/" + f.victim.ID + "/deactivate",
		"/api_tokens/" + f.readOnly.ID + "/deactivate", "/api_tokens/self",
		"/boards", "/boards/" + f.board.ID, "/ping", "/no_such_resource",
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		for _, p := range paths {
			t.Run(method+" "+p, func(t *testing.T) {
				g := NewWithT(t)
				r := tg.do(t, method, p, f.readOnly.Token, map[string]any{"name": "x", "permission": "full_access"})
				g.Expect(r.Status).To(Equal(http.StatusForbidden), "%s", r.Raw)
				g.Expect(*r.Env.Success).To(BeFalse())
				g.Expect(r.Env.Message).To(Equal("token is read-only"))
			})
		}
	}
	g := NewWithT(t)
	g.Expect(tg.getToken(t, f.victim.ID).Status).To(Equal("active"))
	g.Expect(tg.getToken(t, f.readOnly.ID).Status).To(Equal("active"))
	g.Expect(tg.do(t, http.MethodGet, "/boards/"+f.board.ID, f.readOnly.Token, nil).Status).To(Equal(http.StatusOK))
}

// TestIdempotency covers replay, body mismatch and the in-flight conflict.
func TestIdempotency(t *testing.T) {
	tg := newTarget(t)
	body := map[string]any{"name": "idem-" + uniq(), "permission": "read_only", "labels": map[string]string{"x": "1", "y": "2"}}

	t.Run("same key and body replays the first reply", func(t *testing.T) {
		g := NewWithT(t)
		key := "key-" + uniq()
		first := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key)
		g.Expect(first.Status).To(Equal(http.StatusCreated))
		g.Expect(first.Header.Get("Idempotent-Replayed")).To(BeEmpty())
		tok := tg.decodeToken(g, first.Env.Data, true)
		// The same JSON with other whitespace and key order is the same body.
		again := tg.do(t, http.MethodPost, "/api_tokens", tg.admin,
			fmt.Sprintf(`{ "labels": {"y":"2","x":"1"}, "permission": "read_only", "name": %q }`, body["name"]), "Idempotency-Key", key)
		g.Expect(again.Status).To(Equal(http.StatusCreated), "%s", again.Raw)
		g.Expect(again.Header.Get("Idempotent-Replayed")).To(Equal("true"))
		replayed := tg.decodeToken(g, again.Env.Data, true)
		g.Expect(replayed.ID).To(Equal(tok.ID))
		g.Expect(replayed.Token).To(Equal(tok.Token))

		other := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key+"-other")
		g.Expect(other.Status).To(Equal(http.StatusCreated))
		g.Expect(tg.decodeToken(g, other.Env.Data, true).ID).NotTo(Equal(tok.ID))
		if tg.inst != nil {
			g.Expect(tg.inst.Server.Stats().Replays).To(Equal(int64(1)))
		}
	})

	t.Run("same key with another body is 422", func(t *testing.T) {
		g := NewWithT(t)
		key := "key-" + uniq()
		g.Expect(tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key).Status).To(Equal(http.StatusCreated))
		changed := map[string]any{"name": body["name"], "permission": "full_access"}
		r := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, changed, "Idempotency-Key", key)
		g.Expect(r.Status).To(Equal(http.StatusUnprocessableEntity), "%s", r.Raw)
		expectEnvelope(g, r)
	})

	t.Run("while the first is in flight is 409", func(t *testing.T) {
		tg.needsInProcess(t, "holding a create in flight needs the server hook")
		g := NewWithT(t)
		key := "key-" + uniq()
		entered, release := tg.gate.arm()
		firstDone := make(chan reply, 1)
		go func() { firstDone <- tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key) }()
		<-entered
		second := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key)
		close(release)
		first := <-firstDone
		g.Expect(second.Status).To(Equal(http.StatusConflict), "%s", second.Raw)
		expectEnvelope(g, second)
		g.Expect(first.Status).To(Equal(http.StatusCreated))
		third := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, body, "Idempotency-Key", key)
		g.Expect(third.Header.Get("Idempotent-Replayed")).To(Equal("true"))
	})

	t.Run("a burst with one key issues one token", func(t *testing.T) {
		g := NewWithT(t)
		key, ext := "key-"+uniq(), "burst-"+uniq()
		b := map[string]any{"name": "burst", "permission": "read_only", "external_id": ext}
		var wg sync.WaitGroup
		statuses := make([]int, 20)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = tg.do(t, http.MethodPost, "/api_tokens", tg.admin, b, "Idempotency-Key", key).Status
			}()
		}
		wg.Wait()
		for _, s := range statuses {
			g.Expect(s).To(BeElementOf(http.StatusCreated, http.StatusConflict))
		}
		list := tg.do(t, http.MethodGet, "/api_tokens?external_id="+url.QueryEscape(ext), tg.admin, nil)
		g.Expect(tg.decodeTokens(g, list.Env.Data)).To(HaveLen(1))
	})
}

// TestExpiry moves the server clock past expires_at.
func TestExpiry(t *testing.T) {
	tg := newTarget(t)
	tg.needsInProcess(t, "expiry needs the injectable clock")
	g := NewWithT(t)
	exp := tg.now().Add(time.Hour)
	tok := tg.createToken(t, map[string]any{"name": "short-lived", "permission": "read_only", "expires_at": exp.Format(time.RFC3339)})
	g.Expect(tok.ExpiresAt.Equal(exp.Truncate(time.Second))).To(BeTrue())
	g.Expect(tg.do(t, http.MethodGet, "/ping", tok.Token, nil).Status).To(Equal(http.StatusOK))

	tg.clock.Advance(time.Hour - time.Second)
	g.Expect(tg.do(t, http.MethodGet, "/ping", tok.Token, nil).Status).To(Equal(http.StatusOK))
	tg.clock.Advance(time.Second)
	g.Expect(tg.do(t, http.MethodGet, "/ping", tok.Token, nil).Status).To(Equal(http.StatusUnauthorized))
	got := tg.getToken(t, tok.ID)
	g.Expect(got.Status).To(Equal("inactive"))
	g.Expect(got.DeactivatedAt).To(BeNil())
	inactive := tg.do(t, http.MethodGet, "/api_tokens?status=inactive", tg.admin, nil)
	g.Expect(tg.decodeTokens(g, inactive.Env.Data)).To(ContainElement(HaveField("ID", tok.ID)))
	active := tg.do(t, http.MethodGet, "/api_tokens?status=active", tg.admin, nil)
	g.Expect(tg.decodeTokens(g, active.Env.Data)).NotTo(ContainElement(HaveField("ID", tok.ID)))

	r := tg.do(t, http.MethodPost, "/api_tokens", tg.admin, map[string]any{"name": "past", "permission": "read_only", "expires_at": tg.now().Add(-time.Minute).Format(time.RFC3339)})
	g.Expect(r.Status).To(Equal(http.StatusUnprocessableEntity))
}

// TestPagination lists 250 tokens in pages, newest first, and checks the filters.
func TestPagination(t *testing.T) {
	tg := newTarget(t)
	g := NewWithT(t)
	run := uniq()
	var created []string
	for i := range 250 {
		labels := map[string]string{"run": run, "parity": []string{"even", "odd"}[i%2]}
		tok := tg.createToken(t, map[string]any{"name": fmt.Sprintf("page-%03d", i), "permission": "read_only", "labels": labels, "external_id": fmt.Sprintf("%s-%d", run, i)})
		created = append(created, tok.ID)
		if tg.clock != nil {
			tg.clock.Advance(time.Millisecond)
		}
	}
	var listed []tokenObj
	for page := 1; ; page++ {
		r := tg.do(t, http.MethodGet, fmt.Sprintf("/api_tokens?label=%s&per_page=100&page=%d", url.QueryEscape("run="+run), page), tg.admin, nil)
		g.Expect(r.Status).To(Equal(http.StatusOK))
		p := r.Env.Pagination
		g.Expect(p).NotTo(BeNil())
		g.Expect(*p).To(MatchFields(page, 100, 3, 250))
		items := tg.decodeTokens(g, r.Env.Data)
		listed = append(listed, items...)
		if page < 3 {
			g.Expect(items).To(HaveLen(100))
			g.Expect(p.NextPage).To(HaveValue(Equal(page + 1)))
			continue
		}
		g.Expect(items).To(HaveLen(50))
		g.Expect(p.NextPage).To(BeNil())
		break
	}
	ids := make([]string, 0, len(listed))
	seen := map[string]bool{}
	for _, tok := range listed {
		g.Expect(seen[tok.ID]).To(BeFalse(), "duplicate %s", tok.ID)
		seen[tok.ID] = true
		ids = append(ids, tok.ID)
	}
	want := append([]string(nil), created...)
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	g.Expect(ids).To(Equal(want), "newest first")

	r := tg.do(t, http.MethodGet, "/api_tokens?per_page=500&label="+url.QueryEscape("run="+run), tg.admin, nil)
	g.Expect(r.Env.Pagination.PerPage).To(BeNumerically("<=", 100))
	g.Expect(tg.decodeTokens(g, r.Env.Data)).To(HaveLen(r.Env.Pagination.PerPage))

	r = tg.do(t, http.MethodGet, "/api_tokens?label="+url.QueryEscape("run="+run)+"&label=parity%3Dodd&per_page=100", tg.admin, nil)
	g.Expect(r.Env.Pagination.TotalCount).To(Equal(125))
	for _, tok := range tg.decodeTokens(g, r.Env.Data) {
		g.Expect(tok.Labels).To(HaveKeyWithValue("parity", "odd"))
	}
	r = tg.do(t, http.MethodGet, "/api_tokens?external_id="+url.QueryEscape(run+"-7"), tg.admin, nil)
	got := tg.decodeTokens(g, r.Env.Data)
	g.Expect(got).To(HaveLen(1))
	g.Expect(got[0].ID).To(Equal(created[7]))

	r = tg.do(t, http.MethodGet, "/api_tokens?page=99&label="+url.QueryEscape("run="+run), tg.admin, nil)
	g.Expect(r.Status).To(Equal(http.StatusOK))
	g.Expect(tg.decodeTokens(g, r.Env.Data)).To(BeEmpty())
}

// MatchFields matches a pagination block on page, per_page, total_pages and total_count.
func MatchFields(page, perPage, totalPages, totalCount int) OmegaMatcher {
	return And(HaveField("CurrentPage", page), HaveField("PerPage", perPage),
		HaveField("TotalPages", totalPages), HaveField("TotalCount", totalCount))
}

// TestConcurrentCreates issues 100 tokens at once: no write may be lost.
func TestConcurrentCreates(t *testing.T) {
	tg := newTarget(t)
	g := NewWithT(t)
	batch := uniq()
	ids := make([]string, 100)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := tg.do(t, http.MethodPost, "/api_tokens", tg.admin,
				map[string]any{"name": fmt.Sprintf("c-%d", i), "permission": "read_only", "labels": map[string]string{"batch": batch}})
			if r.Status != http.StatusCreated {
				t.Errorf("create %d: %d %s", i, r.Status, r.Raw)
				return
			}
			var tok tokenObj
			if err := json.Unmarshal(r.Env.Data, &tok); err != nil {
				t.Errorf("create %d: %v", i, err)
				return
			}
			ids[i] = tok.ID
		}()
	}
	wg.Wait()
	distinct := map[string]bool{}
	for _, id := range ids {
		g.Expect(id).NotTo(BeEmpty())
		distinct[id] = true
	}
	g.Expect(distinct).To(HaveLen(100))
	r := tg.do(t, http.MethodGet, "/api_tokens?per_page=100&label="+url.QueryEscape("batch="+batch), tg.admin, nil)
	g.Expect(r.Env.Pagination.TotalCount).To(Equal(100))
	for _, tok := range tg.decodeTokens(g, r.Env.Data) {
		g.Expect(distinct).To(HaveKey(tok.ID))
	}
}

// TestLastUsedAt checks that each authentication stamps last_used_at.
func TestLastUsedAt(t *testing.T) {
	tg := newTarget(t)
	g := NewWithT(t)
	tok := tg.createToken(t, map[string]any{"name": "lu", "permission": "read_only"})
	g.Expect(tok.LastUsedAt).To(BeNil())
	g.Expect(tg.getToken(t, tok.ID).LastUsedAt).To(BeNil())

	before := tg.now().Add(-time.Second)
	g.Expect(tg.do(t, http.MethodGet, "/boards", tok.Token, nil).Status).To(Equal(http.StatusOK))
	first := tg.getToken(t, tok.ID).LastUsedAt
	g.Expect(first).NotTo(BeNil())
	g.Expect(first.After(before)).To(BeTrue())

	if tg.clock != nil {
		tg.clock.Advance(time.Minute)
	} else {
		time.Sleep(1100 * time.Millisecond)
	}
	// A refused write still authenticates.
	g.Expect(tg.do(t, http.MethodPost, "/boards", tok.Token, map[string]any{"name": "x"}).Status).To(Equal(http.StatusForbidden))
	second := tg.getToken(t, tok.ID).LastUsedAt
	g.Expect(second.After(*first)).To(BeTrue())

	self := tg.do(t, http.MethodGet, "/api_tokens/self", tok.Token, nil)
	g.Expect(tg.decodeToken(g, self.Env.Data, false).LastUsedAt).NotTo(BeNil())
}

// TestRestartKeepsData restarts the reference server on its data file.
func TestRestartKeepsData(t *testing.T) {
	tg := newTarget(t)
	tg.needsInProcess(t, "restart needs the in-process server")
	g := NewWithT(t)
	f := newFixture(t, tg)
	g.Expect(tg.do(t, http.MethodGet, "/ping", f.readOnly.Token, nil).Status).To(Equal(http.StatusOK))
	usedAt := tg.getToken(t, f.readOnly.ID).LastUsedAt
	g.Expect(usedAt).NotTo(BeNil())

	tg.inst.Restart(t)
	tg.base = tg.inst.URL

	g.Expect(tg.do(t, http.MethodGet, "/ping", tg.admin, nil).Status).To(Equal(http.StatusOK))
	g.Expect(tg.do(t, http.MethodGet, "/api_tokens/self", f.readOnly.Token, nil).Status).To(Equal(http.StatusOK))
	g.Expect(tg.do(t, http.MethodGet, "/ping", f.deactivated.Token, nil).Status).To(Equal(http.StatusUnauthorized))
	got := tg.getToken(t, f.readOnly.ID)
	g.Expect(got.Name).To(Equal(f.readOnly.Name))
	g.Expect(got.LastUsedAt).NotTo(BeNil())
	g.Expect(got.LastUsedAt.Before(*usedAt)).To(BeFalse())
	g.Expect(tg.getToken(t, f.deactivated.ID).Status).To(Equal("inactive"))
	r := tg.do(t, http.MethodGet, "/boards/"+f.board.ID, tg.admin, nil)
	g.Expect(r.Status).To(Equal(http.StatusOK))
	var b boardObj
	g.Expect(json.Unmarshal(r.Env.Data, &b)).To(Succeed())
	g.Expect(b).To(Equal(f.board))

	// Ids keep being unique and newest-first ordering survives the restart.
	after := tg.createToken(t, map[string]any{"name": "after-restart", "permission": "read_only"})
	list := tg.do(t, http.MethodGet, "/api_tokens?per_page=1", tg.admin, nil)
	g.Expect(tg.decodeTokens(g, list.Env.Data)[0].ID).To(Equal(after.ID))
}

// TestDataFileHoldsNoTokenValues greps the bbolt file for every issued value.
func TestDataFileHoldsNoTokenValues(t *testing.T) {
	tg := newTarget(t)
	tg.needsInProcess(t, "needs the data file")
	g := NewWithT(t)
	values := []string{tg.admin}
	for i := range 20 {
		key := fmt.Sprintf("k-%d", i%5) // replays included
		tok := tg.createToken(t, map[string]any{"name": fmt.Sprintf("v-%d", i%5), "permission": "read_only"}, "Idempotency-Key", key)
		values = append(values, tok.Token)
		g.Expect(tg.do(t, http.MethodGet, "/ping", tok.Token, nil).Status).To(Equal(http.StatusOK))
	}
	f := newFixture(t, tg)
	values = append(values, f.readOnly.Token, f.victim.Token, f.deactivated.Token)
	tg.inst.Restart(t) // flushes last_used_at and closes the file
	tg.base = tg.inst.URL

	data, err := os.ReadFile(tg.inst.DataPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(data)).To(BeNumerically(">", 0))
	for _, v := range values {
		g.Expect(bytes.Contains(data, []byte(v))).To(BeFalse(), "data file holds a token value")
		g.Expect(bytes.Contains(data, []byte(v[4:20]))).To(BeFalse(), "data file holds part of a token value")
	}
	g.Expect(bytes.Contains(data, []byte("sgt_"))).To(BeFalse())
	// The values still authenticate: the file holds what is needed, hashed.
	for _, v := range values[:5] {
		g.Expect(tg.do(t, http.MethodGet, "/ping", v, nil).Status).To(Equal(http.StatusOK))
	}
}
