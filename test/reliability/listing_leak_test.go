package reliability

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statusops/apitoken-operator/internal/reliability/oracle"

	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// TestLeakCheckWithListing is the leak check with informers listing instead of streaming
// (KUBE_FEATURE_WatchListClient=false) and --log-level=10 (issue 11, finding 4): the manager
// is restarted once the tokens are issued, so its caches list every token Secret, and the
// SecretList responses would carry every value were any logger above V(5). The oracle looks
// for plain and base64 values; client-go dumps protobuf bodies in hex, 16 bytes a line,
// so this test also reads the dumps back and looks in every encoding.
func TestLeakCheckWithListing(t *testing.T) {
	s := newScenario(t, 0)
	ctx := context.Background()
	n := max(sz.tokens/4, 3)
	m, err := s.NewManager("--metrics-secure=false", "--log-level=10")
	if err != nil {
		t.Fatal(err)
	}
	m.Env = []string{"KUBE_FEATURE_WatchListClient=false"}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTokens(ctx, "listing", n, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAll(ctx, 2*time.Minute, "every APIToken issued", n, harness.IsIssued); err != nil {
		t.Fatal(err)
	}
	s.CollectNow(ctx)
	m.Stop()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Workers start once the caches, the Secrets' included, have listed: three controllers.
	if err := harness.WaitFor(ctx, time.Minute, "the restarted manager's workers", func() (bool, string, error) {
		data, err := os.ReadFile(m.LogPath)
		return strings.Count(string(data), "Starting workers") >= 6, "", err
	}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(m.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	values := s.Values()
	if len(values) < n {
		t.Fatalf("only %d token values collected for %d APITokens", len(values), n)
	}
	logs, dumped := string(data), oracle.HexDumpBytes(string(data))
	for v := range values {
		for form, enc := range encodings(v) {
			if strings.Contains(logs, enc) {
				t.Errorf("a token value (ending %q) appears %s in the manager's log %s", v[len(v)-4:], form, m.LogPath)
			}
			if strings.Contains(dumped, enc) {
				t.Errorf("a token value (ending %q) appears %s in a hex dump in the manager's log %s", v[len(v)-4:], form, m.LogPath)
			}
		}
	}
	if !regexp.MustCompile(`(?i)level\(-[2-5]\)`).MatchString(logs) {
		t.Errorf("no debug line in the manager's log: the check proves nothing")
	}
	checkOracle(t, s, "after a listing restart at --log-level=10")
}

// encodings are the forms in which a value can show up in a log.
func encodings(v string) map[string]string {
	b := []byte(v)
	return map[string]string{
		"plain": v, "hex": hex.EncodeToString(b),
		"base64": base64.StdEncoding.EncodeToString(b), "base64 url": base64.URLEncoding.EncodeToString(b),
		"base64 raw": base64.RawStdEncoding.EncodeToString(b), "base64 rawurl": base64.RawURLEncoding.EncodeToString(b),
	}
}
