package native_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

func TestClientFeatures(t *testing.T) {
	all := native.Features{native.FeatureUsage, native.FeatureClaim, native.FeatureUpdatedSince}
	cases := map[string]struct {
		disabled []string
		want     native.Features
	}{
		"all":         {want: all},
		"without one": {disabled: []string{statusserver.FeatureClaim}, want: native.Features{native.FeatureUsage, native.FeatureUpdatedSince}},
		"without any": {disabled: statusserver.AllFeatures, want: native.Features{}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			srv := servertest.Start(t, servertest.WithoutFeatures(tc.disabled...))
			got, err := srv.Client(t).Features(context.Background())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
			g.Expect(got.Has(native.FeatureClaim)).To(Equal(!strings.Contains(name, "without")))
		})
	}
}

func TestClientFeaturesFromOtherServers(t *testing.T) {
	cases := map[string]struct {
		data string
		want native.Features
		kind backend.ErrorKind
	}{
		"plain server":      {data: `{"message":"pong"}`, want: native.Features{}},
		"null data":         {data: `null`, want: native.Features{}},
		"unknown and dups":  {data: `{"features":["usage","teleport","usage","claim"]}`, want: native.Features{native.FeatureUsage, native.FeatureClaim}},
		"features a string": {data: `{"features":"usage"}`, kind: backend.KindProtocol},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			hs := httptest.NewServer(reply(200, "application/json", `{"success":true,"data":`+tc.data+`}`))
			defer hs.Close()
			c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
			g.Expect(err).NotTo(HaveOccurred())
			got, err := c.Features(context.Background())
			if tc.kind != "" {
				g.Expect(kindOf(err)).To(Equal(tc.kind), "%v", err)
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestClientClaimToken(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	srv := servertest.Start(t)
	c := srv.Client(t)
	tok := srv.IssueToken(t, native.CreateRequest{Name: "orphan", Permission: backend.PermissionReadOnly})
	for range 2 {
		got, err := c.ClaimToken(ctx, tok.ID, "uid-1")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.ExternalID).To(Equal("uid-1"))
	}
	_, err := c.ClaimToken(ctx, tok.ID, "uid-2")
	g.Expect(backend.IsClaimed(err)).To(BeTrue(), "%v", err)
	g.Expect(backend.IsConflict(err)).To(BeFalse())
	g.Expect(backend.IsTransient(err)).To(BeFalse(), "another owner does not go away by retrying")
	_, err = c.ClaimToken(ctx, "tok_doesnotexist", "uid-1")
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "%v", err)
	fa := srv.IssueToken(t, native.CreateRequest{Name: "fa", Permission: backend.PermissionFullAccess})
	_, err = srv.ClientFor(t, fa.Value).ClaimToken(ctx, tok.ID, "uid-1")
	g.Expect(backend.IsAdminRequired(err)).To(BeTrue(), "%v", err)
	for _, bad := range []struct{ id, ext string }{{"tok 1", "uid-1"}, {tok.ID, ""}} {
		_, err = c.ClaimToken(ctx, bad.id, bad.ext)
		g.Expect(kindOf(err)).To(Equal(backend.KindInvalid))
	}

	plain := servertest.Start(t, servertest.WithoutFeatures(statusserver.FeatureClaim))
	other := plain.IssueToken(t, native.CreateRequest{Name: "orphan", Permission: backend.PermissionReadOnly})
	_, err = plain.Client(t).ClaimToken(ctx, other.ID, "uid-1")
	g.Expect(backend.IsNotFound(err)).To(BeTrue(), "no claim route without the feature: %v", err)
}

func TestClientClaimHostileReplies(t *testing.T) {
	cases := map[string]hostileCase{
		"other external_id in the reply": {
			handler: reply(200, "application/json", `{"success":true,"data":`+strings.Replace(goodToken, `"external_id":null`, `"external_id":"someone-else"`, 1)+`}`),
			kind:    backend.KindProtocol, status: 200, contains: "does not carry",
		},
		"409": {
			handler: reply(409, "application/json", `{"success":false,"message":"token is claimed by another external_id","errors":[]}`),
			kind:    backend.KindClaimed, status: 409, contains: "claimed",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
			g.Expect(err).NotTo(HaveOccurred())
			_, err = c.ClaimToken(context.Background(), "tok_1", "mine")
			g.Expect(kindOf(err)).To(Equal(tc.kind), "%v", err)
			g.Expect(err.(*backend.Error).StatusCode).To(Equal(tc.status))
			g.Expect(err.Error()).To(ContainSubstring(tc.contains))
		})
	}
}

func TestClientUsageFields(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := servertest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := servertest.Start(t, servertest.WithClock(clock.Now))
	ro := srv.IssueToken(t, native.CreateRequest{Name: "ro", Permission: backend.PermissionReadOnly})
	g.Expect(ro.LastWriteAt).To(BeNil())
	g.Expect(ro.UpdatedAt).To(HaveValue(BeTemporally("==", ro.CreatedAt)))
	clock.Advance(time.Minute)
	_, err := srv.ClientFor(t, ro.Value).DeactivateToken(ctx, ro.ID)
	g.Expect(backend.IsForbidden(err)).To(BeTrue())
	got, err := srv.Client(t).GetToken(ctx, ro.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.LastDeniedAt).To(HaveValue(BeTemporally("==", clock.Now())))
	g.Expect(got.UpdatedAt).To(HaveValue(BeTemporally("==", clock.Now())))
	g.Expect(got.LastWriteAt).To(BeNil())

	plain := servertest.Start(t, servertest.WithoutFeatures(statusserver.AllFeatures...))
	self, err := plain.Client(t).Self(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(self.UpdatedAt).To(BeNil())
	g.Expect(self.LastWriteAt).To(BeNil())
}

// TestClientListUpdatedSince walks the updated_since list in small pages
// while tokens change under it: none may be skipped, and each comes once,
// in its latest state, in (updated_at, id) order.
func TestClientListUpdatedSince(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	clock := servertest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := servertest.Start(t, servertest.WithClock(clock.Now))
	start := clock.Now()
	labels := map[string]string{"walk": "1"}
	values := map[string]backend.SecretValue{}
	for i := range 25 { // one instant: only the id orders them
		tok := srv.IssueToken(t, native.CreateRequest{Name: fmt.Sprint(i), Permission: backend.PermissionReadOnly, Labels: labels})
		values[tok.ID] = tok.Value
	}
	c := srv.Client(t)
	ids := func(toks []native.Token) []string {
		out := make([]string, 0, len(toks))
		for _, tok := range toks {
			out = append(out, tok.ID)
		}
		return out
	}
	first, err := c.ListTokens(ctx, native.ListOptions{Labels: labels, UpdatedSince: start, PerPage: 4})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first).To(HaveLen(25))
	g.Expect(sort.StringsAreSorted(ids(first))).To(BeTrue(), "ties ordered by id")

	// After the first page, the token listed first and one not listed yet are
	// used: both move to the end, so page offsets would now skip a token.
	pages := 0
	var changed []string
	walker, err := native.New(native.Options{BaseURL: srv.URL, Token: backend.SecretValue(srv.AdminToken),
		Observer: func(op string, _ int, _ time.Duration, _ error) {
			if op != "list" {
				return
			}
			if pages++; pages == 1 {
				clock.Advance(time.Second)
				for _, i := range []int{0, 20} {
					self, err := srv.ClientFor(t, values[first[i].ID]).Self(ctx)
					g.Expect(err).NotTo(HaveOccurred())
					changed = append(changed, self.ID)
				}
			}
		}})
	g.Expect(err).NotTo(HaveOccurred())
	walked, err := walker.ListTokens(ctx, native.ListOptions{Labels: labels, UpdatedSince: start, PerPage: 4})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pages).To(BeNumerically(">", 5))
	g.Expect(walked).To(HaveLen(25), "each token once")
	g.Expect(ids(walked)).To(ConsistOf(ids(first)), "none skipped")
	tail := walked[len(walked)-2:]
	g.Expect(ids(tail)).To(ConsistOf(changed), "the changed tokens come last, in their latest state")
	for _, tok := range tail {
		g.Expect(tok.LastUsedAt).To(HaveValue(BeTemporally("==", clock.Now())))
	}

	since, err := c.ListTokens(ctx, native.ListOptions{Labels: labels, UpdatedSince: clock.Now()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ids(since)).To(ConsistOf(changed))

	// Keep is applied to every listed token, by cursor and by page.
	keep := func(t native.Token) native.Token { t.Labels, t.Name = nil, "kept"; return t }
	for _, opts := range []native.ListOptions{{Labels: labels, UpdatedSince: start, PerPage: 4, Keep: keep}, {Labels: labels, PerPage: 4, Keep: keep}} {
		kept, err := c.ListTokens(ctx, opts)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kept).To(HaveLen(25))
		for _, tok := range kept {
			g.Expect(tok.Labels).To(BeNil())
			g.Expect(tok.Name).To(Equal("kept"))
		}
	}
}

func TestClientListUpdatedSinceHostileReplies(t *testing.T) {
	tok := func(id, updated string) string {
		return strings.Replace(withID(id), `"last4"`, `"updated_at":"`+updated+`","last4"`, 1)
	}
	next := `"pagination":{"current_page":1,"per_page":2,"total_pages":2,"total_count":3,"next_page":2}`
	cases := map[string]hostileCase{
		"server ignores updated_since": {
			handler:  reply(200, "application/json", `{"success":true,"data":[`+goodToken+`]}`),
			contains: "has no updated_at",
		},
		"descending": {
			handler:  reply(200, "application/json", `{"success":true,"data":[`+tok("tok_1", "2026-01-02T00:00:00Z")+`,`+tok("tok_2", "2026-01-01T00:00:00Z")+`]}`),
			contains: "not in ascending",
		},
		"tie not by id": {
			handler:  reply(200, "application/json", `{"success":true,"data":[`+tok("tok_2", "2026-01-01T00:00:00Z")+`,`+tok("tok_1", "2026-01-01T00:00:00Z")+`]}`),
			contains: "not in ascending",
		},
		"before updated_since": {
			handler:  reply(200, "application/json", `{"success":true,"data":[`+tok("tok_1", "2025-06-01T00:00:00Z")+`]}`),
			contains: "not in ascending",
		},
		"cursor ignored": {
			handler:  reply(200, "application/json", `{"success":true,"data":[`+tok("tok_1", "2026-01-01T00:00:00Z")+`],`+next+`}`),
			contains: "not in ascending",
		},
		"next_page on an empty page": {
			handler:  reply(200, "application/json", `{"success":true,"data":[],`+next+`}`),
			contains: "empty page",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
			g.Expect(err).NotTo(HaveOccurred())
			_, err = c.ListTokens(context.Background(), native.ListOptions{UpdatedSince: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			g.Expect(kindOf(err)).To(Equal(backend.KindProtocol), "%v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.contains))
		})
	}
}

// TestClientListUpdatedSinceSendsCursor checks the wire: the first request
// carries updated_since, the next ones the last key seen as the cursor.
func TestClientListUpdatedSinceSendsCursor(t *testing.T) {
	g := NewWithT(t)
	var queries []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		body := `{"success":true,"data":[` + strings.Replace(withID("tok_a"), `"last4"`, `"updated_at":"2026-01-01T00:00:00.5Z","last4"`, 1) +
			`],"pagination":{"current_page":1,"per_page":1,"total_pages":2,"total_count":2,"next_page":2}}`
		if len(queries) > 1 {
			body = `{"success":true,"data":[],"pagination":{"current_page":1,"per_page":1,"total_pages":1,"total_count":1,"next_page":null}}`
		}
		reply(200, "application/json", body)(w, r)
	}))
	defer hs.Close()
	c, err := native.New(native.Options{BaseURL: hs.URL, Token: clientToken})
	g.Expect(err).NotTo(HaveOccurred())
	got, err := c.ListTokens(context.Background(), native.ListOptions{UpdatedSince: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PerPage: 1})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(HaveLen(1))
	g.Expect(queries).To(Equal([]string{
		"per_page=1&updated_since=2026-01-01T00%3A00%3A00Z",
		"after_id=tok_a&per_page=1&updated_since=2026-01-01T00%3A00%3A00.5Z",
	}))
}
