// Package oracle checks the operator's promises after a reliability scenario, from the
// outside: what the API server and the backend hold, and what was captured on the way
// (logs, events, statuses, metrics). Every scenario ends with Check; its Report lists each
// broken invariant in a sentence that names the APIToken, the backend token and the rule.
//
// The invariants (docs/reliability.md):
//  1. No live APIToken has an active backend token (external_id = its UID) that its status
//     names neither as current (status.tokenID, while Active), nor as a draining
//     predecessor (status.previousTokens), nor in status.pendingDeactivation. An Active one has its current token active, and when
//     Ready (Issued) exactly that one; the Secret's value authenticates as that token
//     (GET /api_tokens/self answers with the same id).
//  2. So a live APIToken in any other phase has no active backend token but listed ones.
//  3. No active backend token labelled managed-by=apitoken-operator belongs to no live
//     APIToken, unless its APIToken was deleted with deletionPolicy Retain.
//  4. Every token value ever seen that is not the current value of a live Active APIToken
//     (or of a Retain one, or a predecessor its status lists as draining) is dead: the
//     backend answers 401.
//  5. No token value appears in any captured text: logs, events, APIToken statuses,
//     metrics scrapes; in no encoding (raw, hex, URL-escaped, base64 in either alphabet,
//     padded or not, at any alignment), nor inside a hex dump (HexDumpBytes).
//
// Invariants 1 to 3 are also judged while a scenario runs, by Judge and Continuous
// (continuous.go), with the transient rule written there.
package oracle

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
)

// Input is what Check looks at.
type Input struct {
	// Kube reads APITokens, Secrets and Events (uncached).
	Kube client.Client
	// Namespace limits the check to one namespace's APITokens, Secrets and Events.
	Namespace string
	// BackendURL is the backend's base URL, reached directly (not through a fault proxy).
	BackendURL string
	// AdminToken is a FullAccess token of the backend.
	AdminToken string
	// Values are token values seen during the scenario (by the fault proxy, by a Secret
	// collector), mapped to the APIToken UID they were issued for ("" if unknown).
	Values map[string]string
	// Texts are captured texts by name: log files, metrics scrapes.
	Texts map[string][]byte
	// DeletedUIDs are APITokens the scenario deleted.
	DeletedUIDs []types.UID
	// RetainUIDs are APITokens deleted with deletionPolicy Retain: their token stays active.
	RetainUIDs map[types.UID]bool
	// Writes, when set, are backend write counts to report per token.
	Writes *Writes
	// ExpectCreates, when set (with Writes), is the number of tokens the scenario should
	// have made the backend create: the controller's own cleanup deactivates a duplicate,
	// so no other invariant sees one, and only this count does.
	ExpectCreates *int
}

// Writes are backend write counters of a scenario.
type Writes struct {
	Creates, Replays, Deactivations, Other int
}

// Report is the outcome of Check.
type Report struct {
	APITokens     int
	Active        int
	ValuesChecked int
	TextBytes     int
	// Violations are broken invariants, one sentence each.
	Violations []string
	// WritesPerToken is (creates + deactivations + other writes) / APITokens seen, when Writes was given.
	WritesPerToken float64
	Writes         *Writes
}

// Err returns nil when no invariant is broken, else an error listing (the first 30) violations.
func (r *Report) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	v := r.Violations
	more := ""
	if len(v) > 30 {
		more = fmt.Sprintf("\n  ... and %d more", len(v)-30)
		v = v[:30]
	}
	return fmt.Errorf("%d invariant violations:\n  %s%s", len(r.Violations), strings.Join(v, "\n  "), more)
}

// String summarises the report in one line.
func (r *Report) String() string {
	s := fmt.Sprintf("oracle: %d APITokens (%d Active), %d token values checked dead/alive, %d bytes of text scanned, %d violations",
		r.APITokens, r.Active, r.ValuesChecked, r.TextBytes, len(r.Violations))
	if r.Writes != nil {
		s += fmt.Sprintf("; backend writes: %d creates, %d replays, %d deactivations, %d other (%.2f per APIToken)",
			r.Writes.Creates, r.Writes.Replays, r.Writes.Deactivations, r.Writes.Other, r.WritesPerToken)
	}
	return s
}

func (r *Report) fail(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// Check evaluates every invariant. It returns an error only when it could not look (API
// server or backend unreachable); broken invariants are in the Report.
func Check(ctx context.Context, in Input) (*Report, error) {
	rep := &Report{Writes: in.Writes}
	admin, err := native.New(native.Options{BaseURL: in.BackendURL, Token: backend.SecretValue(in.AdminToken)})
	if err != nil {
		return nil, err
	}
	var toks tokensv1alpha1.APITokenList
	ns := client.InNamespace(in.Namespace)
	if err := in.Kube.List(ctx, &toks, ns); err != nil {
		return nil, fmt.Errorf("listing APITokens: %w", err)
	}
	var secrets corev1.SecretList
	if err := in.Kube.List(ctx, &secrets, ns); err != nil {
		return nil, fmt.Errorf("listing Secrets: %w", err)
	}
	secretByName := map[types.NamespacedName]*corev1.Secret{}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		secretByName[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	values := map[string]types.UID{}
	for v, uid := range in.Values {
		values[v] = types.UID(uid)
	}
	for _, s := range secrets.Items {
		for _, ref := range s.OwnerReferences {
			if ref.Kind == "APIToken" {
				if v := string(s.Data[tokensv1alpha1.SecretKeyToken]); v != "" {
					values[v] = ref.UID
				}
			}
		}
	}

	live := map[types.UID]*tokensv1alpha1.APIToken{}
	alive := map[string]bool{}    // values that must authenticate
	draining := map[string]bool{} // ids of predecessors that may still authenticate
	for i := range toks.Items {
		tok := &toks.Items[i]
		live[tok.UID] = tok
		rep.APITokens++
		name := tok.Namespace + "/" + tok.Name
		active, err := admin.ListTokens(ctx, native.ListOptions{ExternalID: string(tok.UID), Status: backend.StatusActive})
		if err != nil {
			return nil, fmt.Errorf("listing backend tokens of %s: %w", name, err)
		}
		// No active token of an APIToken that its status does not name: the current one
		// (while Active) and those it lists as pending deactivation.
		deleting := !tok.DeletionTimestamp.IsZero()
		state := string(tok.Status.Phase)
		if deleting {
			state += ", being deleted"
		}
		named := map[string]bool{}
		for _, p := range tok.Status.PendingDeactivation {
			named[p.TokenID] = true
		}
		for _, p := range tok.Status.PreviousTokens {
			named[p.TokenID] = true
			draining[p.TokenID] = true
		}
		// While being deleted the finalizer is still deactivating what status names,
		// whatever the phase says; a token it does not name would outlive the APIToken.
		if tok.Status.Phase == tokensv1alpha1.PhaseActive || deleting {
			named[tok.Status.TokenID] = true
		}
		for _, t := range active {
			if !named[t.ID] {
				rep.fail("APIToken %s (%s) has active backend token %s that its status names neither as current nor as pending deactivation", name, state, t.ID)
			}
		}
		if deleting {
			continue // the rest is judged once it is gone, through DeletedUIDs
		}
		if tok.Status.Phase != tokensv1alpha1.PhaseActive {
			continue
		}
		rep.Active++
		if c := readyOf(tok); c == tokensv1alpha1.ReasonIssued && len(active) > 1+len(tok.Status.PreviousTokens) {
			rep.fail("APIToken %s is Ready (Issued) with %d active backend tokens with its UID, want 1 plus at most %d draining: %s", name, len(active), len(tok.Status.PreviousTokens), ids(active))
		}
		if !containsID(active, tok.Status.TokenID) {
			rep.fail("APIToken %s names token %q in status, but its active backend tokens are %s", name, tok.Status.TokenID, ids(active))
		}
		sec := secretByName[types.NamespacedName{Namespace: tok.Namespace, Name: tok.SecretNameOrDefault()}]
		if sec == nil {
			rep.fail("APIToken %s is Active but its Secret %s does not exist", name, tok.SecretNameOrDefault())
			continue
		}
		value := string(sec.Data[tokensv1alpha1.SecretKeyToken])
		if value == "" {
			rep.fail("APIToken %s is Active but Secret %s has no token", name, sec.Name)
			continue
		}
		alive[value] = true
		self, err := selfOf(ctx, in.BackendURL, value)
		switch {
		case err != nil:
			rep.fail("APIToken %s: the value in Secret %s does not authenticate: %v", name, sec.Name, err)
		case self.ID != tok.Status.TokenID:
			rep.fail("APIToken %s: the value in Secret %s is token %s, status says %s", name, sec.Name, self.ID, tok.Status.TokenID)
		case self.ExternalID != string(tok.UID):
			rep.fail("APIToken %s: the value in Secret %s is token %s of external_id %q, not this UID", name, sec.Name, self.ID, self.ExternalID)
		}
	}

	// 3. No orphan: every active managed token belongs to a live APIToken or a Retain one.
	managed, err := admin.ListTokens(ctx, native.ListOptions{Labels: map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}, Status: backend.StatusActive})
	if err != nil {
		return nil, fmt.Errorf("listing managed backend tokens: %w", err)
	}
	for _, t := range managed {
		uid := types.UID(t.ExternalID)
		if live[uid] == nil && !in.RetainUIDs[uid] {
			rep.fail("backend token %s (%s, external_id %q) is active but no APIToken owns it", t.ID, t.Name, t.ExternalID)
		}
	}
	for _, uid := range in.DeletedUIDs {
		if in.RetainUIDs[uid] || live[uid] != nil {
			continue
		}
		active, err := admin.ListTokens(ctx, native.ListOptions{ExternalID: string(uid), Status: backend.StatusActive})
		if err != nil {
			return nil, err
		}
		if len(active) > 0 {
			rep.fail("deleted APIToken %s still has active backend token(s) %s", uid, ids(active))
		}
	}

	// 4. Every other value is dead.
	for v, uid := range values {
		if alive[v] || in.RetainUIDs[uid] {
			continue
		}
		rep.ValuesChecked++
		self, err := selfOf(ctx, in.BackendURL, v)
		switch {
		case err == nil && draining[self.ID]:
			// A predecessor draining within its grace period (status.previousTokens).
		case err == nil:
			rep.fail("a superseded token value (%s, token %s of external_id %q) still authenticates", hint(v), self.ID, self.ExternalID)
		case !backend.IsUnauthorized(err):
			return nil, fmt.Errorf("checking a superseded value: %w", err)
		}
	}

	// 5. No value in any text.
	texts := map[string][]byte{}
	for k, t := range in.Texts {
		texts[k] = t
	}
	if err := collectTexts(ctx, in.Kube, in.Namespace, &toks, texts); err != nil {
		return nil, err
	}
	scan := newScanner(values)
	for _, name := range sortedKeys(texts) {
		rep.TextBytes += len(texts[name])
		for _, leak := range scan.scan(texts[name]) {
			rep.fail("a token value (%s) appears in %s", leak, name)
		}
	}

	if in.ExpectCreates != nil {
		switch {
		case in.Writes == nil:
			return nil, fmt.Errorf("ExpectCreates given without Writes")
		case in.Writes.Creates != *in.ExpectCreates:
			rep.fail("the backend created %d tokens, the scenario expected %d issuances (a duplicate create was cleaned up, or an issue is missing)", in.Writes.Creates, *in.ExpectCreates)
		}
	}
	if in.Writes != nil && rep.APITokens+len(in.DeletedUIDs) > 0 {
		w := in.Writes
		rep.WritesPerToken = float64(w.Creates+w.Deactivations+w.Other) / float64(rep.APITokens+len(in.DeletedUIDs))
	}
	return rep, nil
}

// readyOf is the reason of the Ready condition, or "".
func readyOf(tok *tokensv1alpha1.APIToken) string {
	for _, c := range tok.Status.Conditions {
		if c.Type == tokensv1alpha1.ConditionReady {
			return c.Reason
		}
	}
	return ""
}

// collectTexts adds the Events (both APIs) and the APITokens' statuses.
func collectTexts(ctx context.Context, kube client.Client, namespace string, toks *tokensv1alpha1.APITokenList, texts map[string][]byte) error {
	var ev eventsv1.EventList
	if err := kube.List(ctx, &ev, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	var core corev1.EventList
	if err := kube.List(ctx, &core, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing core events: %w", err)
	}
	statuses := make([]tokensv1alpha1.APITokenStatus, 0, len(toks.Items))
	for _, t := range toks.Items {
		statuses = append(statuses, t.Status)
	}
	for name, obj := range map[string]any{"events (events.k8s.io)": ev.Items, "events (core)": core.Items, "APIToken statuses": statuses} {
		data, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		texts[name] = data
	}
	return nil
}

func selfOf(ctx context.Context, baseURL, value string) (*native.Token, error) {
	c, err := native.New(native.Options{BaseURL: baseURL, Token: backend.SecretValue(value)})
	if err != nil {
		return nil, err
	}
	return c.Self(ctx)
}

// IsDead reports whether value no longer authenticates (401).
func IsDead(ctx context.Context, baseURL, value string) (bool, error) {
	_, err := selfOf(ctx, baseURL, value)
	if err == nil {
		return false, nil
	}
	if backend.IsUnauthorized(err) {
		return true, nil
	}
	return false, err
}

func ids(ts []native.Token) string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

func containsID(ts []native.Token, id string) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// hint shows the last 4 characters only, like status.tokenHint.
func hint(v string) string {
	if len(v) <= 4 {
		return "..."
	}
	return "..." + v[len(v)-4:]
}

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// scanner finds any of many values, in every encoding a value can take on its way into a
// text, in one pass: it looks up every window of keyLen bytes in a map of form prefixes,
// then confirms the whole form.
type scanner struct {
	keyLen int
	byKey  map[string][]string
	hints  map[string]string
}

const scanKeyLen = 12

// encodedForms are the texts a value v can appear as, each with its name: raw; hex (either
// case); URL (query and path) escaped; and base64 in the standard and URL alphabets, padded
// or not, at each of the three byte alignments it can have inside a longer encoded blob
// (there only the characters that depend on v alone are searched for).
func encodedForms(v string) map[string]string {
	forms := map[string]string{v: ""}
	add := func(form, how string) {
		if _, ok := forms[form]; !ok {
			forms[form] = how
		}
	}
	add(hex.EncodeToString([]byte(v)), "hex-encoded")
	add(strings.ToUpper(hex.EncodeToString([]byte(v))), "hex-encoded")
	add(url.QueryEscape(v), "URL-encoded")
	add(url.PathEscape(v), "URL-encoded")
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64-encoded", base64.StdEncoding}, {"base64url-encoded", base64.URLEncoding}} {
		add(enc.e.EncodeToString([]byte(v)), enc.name)
		for shift := 0; shift < 3; shift++ {
			// shift bytes of something else before v: the first 4 characters mix them with v,
			// and the last group mixes v with what follows; the rest is v's alone.
			b := append(make([]byte, shift), v...)
			b = b[:len(b)/3*3]
			e := enc.e.EncodeToString(b)
			if shift > 0 {
				e = e[4:]
			}
			add(e, enc.name+" (unpadded)")
		}
	}
	return forms
}

func newScanner(values map[string]types.UID) *scanner {
	s := &scanner{keyLen: scanKeyLen, byKey: map[string][]string{}, hints: map[string]string{}}
	for v := range values {
		for form, how := range encodedForms(v) {
			if len(form) < s.keyLen {
				continue // too short to search for without false alarms
			}
			k := form[:s.keyLen]
			s.byKey[k] = append(s.byKey[k], form)
			s.hints[form] = strings.TrimSpace(hint(v) + " " + how)
		}
	}
	return s
}

// scan finds the values in text, and in the bytes of any hex dump in it (HexDumpBytes:
// client-go logs a binary body as one).
func (s *scanner) scan(text []byte) []string {
	found := s.find(text)
	if dumped := HexDumpBytes(string(text)); dumped != "" {
		for _, f := range s.find([]byte(dumped)) {
			found = append(found, f+" (in a hex dump)")
		}
	}
	return found
}

func (s *scanner) find(text []byte) []string {
	var found []string
	seen := map[string]bool{}
	for i := 0; i+s.keyLen <= len(text); i++ {
		cands, ok := s.byKey[string(text[i:i+s.keyLen])]
		if !ok {
			continue
		}
		for _, c := range cands {
			if i+len(c) <= len(text) && string(text[i:i+len(c)]) == c && !seen[c] {
				seen[c] = true
				found = append(found, s.hints[c])
			}
		}
	}
	return found
}
