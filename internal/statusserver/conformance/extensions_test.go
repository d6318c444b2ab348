package conformance_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

const (
	featureUsage        = "usage"
	featureClaim        = "claim"
	featureUpdatedSince = "updated_since"
)

var allFeatures = []string{featureUsage, featureClaim, featureUpdatedSince}

// variants runs check against a server with every extension and, in process,
// against one without feature, so each check also shows the server keeps
// the plain protocol when the feature is off.
func variants(t *testing.T, feature string, check func(t *testing.T, tg *target)) {
	t.Run("with "+feature, func(t *testing.T) {
		tg := newTarget(t)
		tg.needsFeature(t, feature)
		check(t, tg)
	})
	t.Run("without "+feature, func(t *testing.T) {
		tg := newTarget(t, feature)
		NewWithT(t).Expect(tg.has(feature)).To(BeFalse())
		check(t, tg)
	})
}

// TestPingFeatures checks data.features: an array of the extensions switched on.
func TestPingFeatures(t *testing.T) {
	cases := [][]string{nil, {featureUsage}, {featureClaim}, {featureUpdatedSince}, allFeatures}
	for _, disabled := range cases {
		t.Run(fmt.Sprintf("without %v", disabled), func(t *testing.T) {
			g := NewWithT(t)
			tg := newTarget(t, disabled...)
			r := tg.do(t, http.MethodGet, "/ping", tg.admin, nil)
			g.Expect(r.Status).To(Equal(http.StatusOK))
			var data struct {
				Features []string `json:"features"`
			}
			g.Expect(decodeJSON(r.Env.Data, &data)).To(Succeed())
			if tg.external {
				g.Expect(data.Features).To(HaveEach(BeElementOf(allFeatures)), "unknown feature names")
				return
			}
			want := []string{}
			for _, f := range allFeatures {
				if !contains(disabled, f) {
					want = append(want, f)
				}
			}
			g.Expect(data.Features).NotTo(BeNil(), "features is an array, even when empty: %s", r.Env.Data)
			g.Expect(data.Features).To(Equal(want))
		})
	}
}

// TestUsage checks last_write_at (successful writes) and last_denied_at
// (read-only refusals), and that they are absent without the feature.
func TestUsage(t *testing.T) {
	variants(t, featureUsage, func(t *testing.T, tg *target) {
		g := NewWithT(t)
		f := newFixture(t, tg)
		ro, fa := tg.getToken(t, f.readOnly.ID), tg.getToken(t, f.fullAccess.ID)
		g.Expect(ro.LastWriteAt).To(BeNil())
		g.Expect(ro.LastDeniedAt).To(BeNil())
		g.Expect(fa.LastWriteAt).To(BeNil())

		tick := func() time.Time {
			if tg.clock != nil {
				tg.clock.Advance(time.Minute)
			} else {
				time.Sleep(1100 * time.Millisecond)
			}
			return tg.now().Add(-time.Second)
		}
		before := tick()
		g.Expect(tg.do(t, http.MethodGet, "/boards", f.readOnly.Token, nil).Status).To(Equal(http.StatusOK))
		g.Expect(tg.do(t, http.MethodPost, "/boards", f.readOnly.Token, map[string]any{"name": "x"}).Status).To(Equal(http.StatusForbidden))
		g.Expect(tg.do(t, http.MethodPost, "/boards", f.fullAccess.Token, map[string]any{"name": "by-fa"}).Status).To(Equal(http.StatusCreated))
		ro, fa = tg.getToken(t, f.readOnly.ID), tg.getToken(t, f.fullAccess.ID)
		if !tg.has(featureUsage) {
			return // decodeToken already checked the keys are absent
		}
		g.Expect(ro.LastWriteAt).To(BeNil(), "a refused write is no write")
		g.Expect(ro.LastDeniedAt).NotTo(BeNil())
		g.Expect(ro.LastDeniedAt.After(before)).To(BeTrue())
		g.Expect(fa.LastWriteAt).NotTo(BeNil())
		g.Expect(fa.LastWriteAt.After(before)).To(BeTrue())
		g.Expect(fa.LastDeniedAt).To(BeNil())

		// Failed writes and refusals for another reason than read-only change neither stamp.
		firstWrite := *fa.LastWriteAt
		tick()
		g.Expect(tg.do(t, http.MethodPost, "/boards", f.fullAccess.Token, map[string]any{"name": ""}).Status).To(Equal(http.StatusUnprocessableEntity))
		g.Expect(tg.do(t, http.MethodPost, "/api_tokens", f.fullAccess.Token, map[string]any{"name": "x", "permission": "read_only"}).Status).To(Equal(http.StatusForbidden))
		fa = tg.getToken(t, f.fullAccess.ID)
		g.Expect(fa.LastWriteAt.Equal(firstWrite)).To(BeTrue(), "last_write_at moved on a failed write")
		g.Expect(fa.LastDeniedAt).To(BeNil(), "an admin-role refusal is not a read-only denial")
		g.Expect(fa.LastUsedAt.After(firstWrite)).To(BeTrue())

		if tg.external {
			return
		}
		// Batched like last_used_at, the stamps survive a restart.
		tg.inst.Restart(t)
		tg.base = tg.inst.URL
		after := tg.getToken(t, f.readOnly.ID)
		g.Expect(after.LastDeniedAt).To(HaveValue(BeTemporally("==", *ro.LastDeniedAt)))
		g.Expect(tg.getToken(t, f.fullAccess.ID).LastWriteAt).To(HaveValue(BeTemporally("==", firstWrite)))
	})
}

// TestClaim checks the compare-and-set of external_id, and that the route
// does not exist without the feature.
func TestClaim(t *testing.T) {
	variants(t, featureClaim, func(t *testing.T, tg *target) {
		g := NewWithT(t)
		f := newFixture(t, tg)
		claim := func(id, token string, body any) reply {
			return tg.do(t, http.MethodPost, "/api_tokens/"+id+"/claim", token, body)
		}
		ext := "uid-" + uniq()
		if !tg.has(featureClaim) {
			r := claim(f.victim.ID, tg.admin, map[string]any{"external_id": ext})
			g.Expect(r.Status).To(Equal(http.StatusNotFound), "%s", r.Raw)
			g.Expect(tg.getToken(t, f.victim.ID).ExternalID).To(BeNil())
			return
		}
		if tg.clock != nil {
			tg.clock.Advance(time.Minute)
		}
		claimedAt := tg.now()
		for range 2 { // repeatable
			r := claim(f.victim.ID, tg.admin, map[string]any{"external_id": ext})
			g.Expect(r.Status).To(Equal(http.StatusOK), "%s", r.Raw)
			expectEnvelope(g, r)
			tok := tg.decodeToken(g, r.Env.Data, false)
			g.Expect(tok.ID).To(Equal(f.victim.ID))
			g.Expect(tok.ExternalID).To(HaveValue(Equal(ext)))
			if tg.has(featureUpdatedSince) && tg.clock != nil {
				g.Expect(tok.UpdatedAt).To(HaveValue(BeTemporally("==", claimedAt)), "a claim is a change")
			}
		}
		r := claim(f.victim.ID, tg.admin, map[string]any{"external_id": "other-" + ext})
		g.Expect(r.Status).To(Equal(http.StatusConflict), "%s", r.Raw)
		expectEnvelope(g, r)
		g.Expect(tg.getToken(t, f.victim.ID).ExternalID).To(HaveValue(Equal(ext)))
		list := tg.do(t, http.MethodGet, "/api_tokens?external_id="+url.QueryEscape(ext), tg.admin, nil)
		g.Expect(tg.decodeTokens(g, list.Env.Data)).To(ConsistOf(HaveField("ID", f.victim.ID)))

		refusals := []struct {
			name, id, token string
			body            any
			status          int
			message         string
		}{
			{"unknown id", "tok_00000000000000000000", tg.admin, map[string]any{"external_id": ext}, http.StatusNotFound, ""},
			{"full_access without admin role", f.readOnly.ID, f.fullAccess.Token, map[string]any{"external_id": ext}, http.StatusForbidden, "token management needs the admin role"},
			{"read_only", f.readOnly.ID, f.readOnly.Token, map[string]any{"external_id": ext}, http.StatusForbidden, "token is read-only"},
			{"empty external_id", f.readOnly.ID, tg.admin, map[string]any{"external_id": ""}, http.StatusUnprocessableEntity, ""},
			{"missing external_id", f.readOnly.ID, tg.admin, map[string]any{}, http.StatusUnprocessableEntity, ""},
			{"unknown field", f.readOnly.ID, tg.admin, map[string]any{"external_id": ext, "force": true}, http.StatusBadRequest, "force"},
		}
		for _, rf := range refusals {
			r := claim(rf.id, rf.token, rf.body)
			g.Expect(r.Status).To(Equal(rf.status), "%s: %s", rf.name, r.Raw)
			expectEnvelope(g, r)
			g.Expect(r.Env.Message).To(ContainSubstring(rf.message), rf.name)
		}
		g.Expect(tg.getToken(t, f.readOnly.ID).ExternalID).To(BeNil(), "refused claims changed nothing")

		// Racing claims with different values: exactly one wins.
		racers := make([]int, 10)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				racers[i] = claim(f.readOnly.ID, tg.admin, map[string]any{"external_id": fmt.Sprintf("%s-%d", ext, i)}).Status
			}()
		}
		wg.Wait()
		sort.Ints(racers)
		g.Expect(racers[0]).To(Equal(http.StatusOK))
		g.Expect(racers[1:]).To(HaveEach(Equal(http.StatusConflict)))
	})
}

// TestUpdatedSince checks updated_at and the updated_since walk, including
// ties and tokens that change while a walk is under way.
func TestUpdatedSince(t *testing.T) {
	variants(t, featureUpdatedSince, func(t *testing.T, tg *target) {
		g := NewWithT(t)
		run := uniq()
		label := url.QueryEscape("run=" + run)
		start := tg.now().Add(-time.Second)
		if !tg.has(featureUpdatedSince) {
			tok := tg.createToken(t, map[string]any{"name": "u", "permission": "read_only"})
			g.Expect(tok.UpdatedAt).To(BeNil())
			if !tg.external {
				r := tg.do(t, http.MethodGet, "/api_tokens?updated_since="+url.QueryEscape(start.Format(time.RFC3339)), tg.admin, nil)
				g.Expect(r.Status).To(Equal(http.StatusBadRequest), "%s", r.Raw)
			}
			return
		}
		// 30 tokens; in process they share one instant, so only the id orders them.
		toks := map[string]tokenObj{}
		for i := range 30 {
			tok := tg.createToken(t, map[string]any{"name": fmt.Sprintf("u-%02d", i), "permission": "read_only", "labels": map[string]string{"run": run}})
			g.Expect(tok.UpdatedAt).To(HaveValue(BeTemporally("==", tok.CreatedAt)))
			toks[tok.ID] = tok
		}
		walked := tg.walkUpdated(t, g, start, label, 7, nil)
		g.Expect(walked).To(HaveLen(30))
		expectAscending(g, walked)

		// A token that is used, deactivated or (in process) expires moves to the end.
		advance := func() {
			if tg.clock != nil {
				tg.clock.Advance(time.Second)
			} else {
				time.Sleep(1100 * time.Millisecond)
			}
		}
		advance()
		mid := tg.now()
		used := walked[3]
		g.Expect(tg.do(t, http.MethodGet, "/ping", toks[used.ID].Token, nil).Status).To(Equal(http.StatusOK))
		advance()
		deact := walked[5]
		g.Expect(tg.do(t, http.MethodPost, "/api_tokens/"+deact.ID+"/deactivate", tg.admin, nil).Status).To(Equal(http.StatusOK))
		changed := tg.walkUpdated(t, g, mid, label, 7, nil)
		g.Expect(changed).To(HaveLen(2))
		g.Expect(changed[0].ID).To(Equal(used.ID))
		g.Expect(changed[1].ID).To(Equal(deact.ID))
		g.Expect(changed[1].UpdatedAt).To(HaveValue(BeTemporally("==", *changed[1].DeactivatedAt)))
		g.Expect(changed[0].UpdatedAt).To(HaveValue(BeTemporally("==", *changed[0].LastUsedAt)))

		// Tokens change while a walk is under way: none is skipped; the changed ones come again.
		var touched []string
		all := tg.walkUpdated(t, g, start, label, 5, func(page int, seen []tokenObj) {
			if page != 1 {
				return
			}
			advance()
			for _, tok := range []tokenObj{seen[0], walked[20], walked[29]} {
				if tok.ID == deact.ID {
					continue
				}
				g.Expect(tg.do(t, http.MethodGet, "/ping", toks[tok.ID].Token, nil).Status).To(Equal(http.StatusOK))
				touched = append(touched, tok.ID)
			}
		})
		ids := map[string]int{}
		for _, tok := range all {
			ids[tok.ID]++
		}
		g.Expect(ids).To(HaveLen(30), "a token was skipped")
		g.Expect(ids[touched[0]]).To(Equal(2), "a token changed after it was listed comes again")

		if tg.clock != nil {
			// Expiry is a status change: updated_at becomes expires_at once it passed.
			exp := tg.now().Add(time.Hour).Truncate(time.Second)
			tok := tg.createToken(t, map[string]any{"name": "exp", "permission": "read_only", "expires_at": exp.Format(time.RFC3339), "labels": map[string]string{"run": run}})
			tg.clock.Advance(2 * time.Hour)
			got := tg.getToken(t, tok.ID)
			g.Expect(got.Status).To(Equal("inactive"))
			g.Expect(got.UpdatedAt).To(HaveValue(BeTemporally("==", exp)))
			r := tg.do(t, http.MethodGet, "/api_tokens?status=inactive&label="+label+"&updated_since="+url.QueryEscape(exp.Format(time.RFC3339)), tg.admin, nil)
			g.Expect(tg.decodeTokens(g, r.Env.Data)).To(ConsistOf(HaveField("ID", tok.ID)))
		}
		r := tg.do(t, http.MethodGet, "/api_tokens?updated_since=yesterday", tg.admin, nil)
		g.Expect(r.Status).To(Equal(http.StatusBadRequest), "%s", r.Raw)
		expectEnvelope(g, r)
	})
}

// walkUpdated lists every token with the label since a time, perPage at a
// time, resuming each page after the last (updated_at, id) it saw. between
// runs after each page.
func (tg *target) walkUpdated(t *testing.T, g *WithT, since time.Time, label string, perPage int, between func(page int, seen []tokenObj)) []tokenObj {
	t.Helper()
	var out []tokenObj
	q := url.Values{"updated_since": {since.UTC().Format(time.RFC3339Nano)}, "per_page": {fmt.Sprint(perPage)}}
	for page := 1; page < 100; page++ {
		r := tg.do(t, http.MethodGet, "/api_tokens?label="+label+"&"+q.Encode(), tg.admin, nil)
		g.Expect(r.Status).To(Equal(http.StatusOK), "%s", r.Raw)
		items := tg.decodeTokens(g, r.Env.Data)
		g.Expect(len(items)).To(BeNumerically("<=", perPage))
		for _, it := range items {
			g.Expect(it.UpdatedAt.Before(since)).To(BeFalse(), "listed a token updated before updated_since")
		}
		expectAscending(g, items)
		out = append(out, items...)
		if between != nil {
			between(page, out)
		}
		if r.Env.Pagination.NextPage == nil {
			return out
		}
		last := items[len(items)-1]
		q.Set("updated_since", last.UpdatedAt.UTC().Format(time.RFC3339Nano))
		q.Set("after_id", last.ID)
	}
	t.Fatal("walk did not end")
	return nil
}

// expectAscending checks the (updated_at, id) order of an updated_since list.
func expectAscending(g *WithT, toks []tokenObj) {
	for i := 1; i < len(toks); i++ {
		a, b := toks[i-1], toks[i]
		g.Expect(a.UpdatedAt.After(*b.UpdatedAt)).To(BeFalse(), "not ascending by updated_at at %d", i)
		if a.UpdatedAt.Equal(*b.UpdatedAt) {
			g.Expect(a.ID < b.ID).To(BeTrue(), "equal updated_at not ordered by id at %d", i)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func decodeJSON(data []byte, v any) error { return json.Unmarshal(data, v) }
