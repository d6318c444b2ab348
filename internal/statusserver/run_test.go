package statusserver_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listeningLine = regexp.MustCompile(`status-backend listening on (http://\S+/api/v3)`)

// startRun runs statusserver.Run until stop is called or the test ends and
// returns its base URL and output.
func startRun(t *testing.T, cfg statusserver.Config) (base string, out *syncBuffer, stop func()) {
	t.Helper()
	g := NewWithT(t)
	out = &syncBuffer{}
	cfg.Listen = "127.0.0.1:0"
	cfg.Stdout = out
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- statusserver.Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			g.Expect(<-done).To(Succeed())
		})
	}
	t.Cleanup(stop)
	g.Eventually(func() string {
		if m := listeningLine.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		return base
	}, 5*time.Second, 10*time.Millisecond).NotTo(BeEmpty())
	return base, out, stop
}

func ping(t *testing.T, base, token string) error {
	c, err := native.New(native.Options{BaseURL: base, Token: backend.SecretValue(token)})
	if err != nil {
		return err
	}
	return c.Ping(context.Background())
}

// isAdmin reads the credential's own token object and reports its role.
func isAdmin(t *testing.T, base, token string) bool {
	t.Helper()
	c, err := native.New(native.Options{BaseURL: base, Token: backend.SecretValue(token)})
	if err != nil {
		t.Fatal(err)
	}
	self, err := c.Self(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return self.IsAdmin()
}

func TestRunBootstrapsAdminToken(t *testing.T) {
	valueLine := regexp.MustCompile(`admin token \(shown once\): (sgt_\S+)`)

	t.Run("without a file the first start prints a token once", func(t *testing.T) {
		g := NewWithT(t)
		data := filepath.Join(t.TempDir(), "db")
		var value string
		base, out, stop := startRun(t, statusserver.Config{DataPath: data})
		m := valueLine.FindStringSubmatch(out.String())
		g.Expect(m).To(HaveLen(2))
		value = m[1]
		g.Expect(ping(t, base, value)).To(Succeed())
		g.Expect(isAdmin(t, base, value)).To(BeTrue())
		stop()

		base, out, _ = startRun(t, statusserver.Config{DataPath: data})
		g.Expect(out.String()).NotTo(ContainSubstring("admin token"))
		g.Expect(ping(t, base, value)).To(Succeed())
	})

	t.Run("a missing file is created with mode 0600", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		file := filepath.Join(dir, "admin-token")
		base, out, _ := startRun(t, statusserver.Config{DataPath: filepath.Join(dir, "db"), AdminTokenFile: file})
		st, err := os.Stat(file)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(st.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		raw, err := os.ReadFile(file)
		g.Expect(err).NotTo(HaveOccurred())
		value := strings.TrimSpace(string(raw))
		g.Expect(value).To(MatchRegexp(`^sgt_[0-9A-Za-z]{40}$`))
		g.Expect(out.String()).NotTo(ContainSubstring(value))
		g.Expect(ping(t, base, value)).To(Succeed())
	})

	t.Run("an existing file is imported", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		file := filepath.Join(dir, "admin-token")
		const value = "my-chosen-admin-token-0123456789"
		g.Expect(os.WriteFile(file, []byte(value+"\n"), 0o600)).To(Succeed())
		base, out, _ := startRun(t, statusserver.Config{DataPath: filepath.Join(dir, "db"), AdminTokenFile: file})
		g.Expect(out.String()).NotTo(ContainSubstring(value))
		g.Expect(ping(t, base, value)).To(Succeed())
		c, err := native.New(native.Options{BaseURL: base, Token: value})
		g.Expect(err).NotTo(HaveOccurred())
		self, err := c.Self(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(self.Permission).To(Equal(backend.PermissionFullAccess))
		g.Expect(self.IsAdmin()).To(BeTrue(), "an imported credential has the admin role")
	})
}

func TestStatsCountRequests(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	srv := servertest.Start(t)
	c := srv.Client(t)
	ro := srv.IssueToken(t, native.CreateRequest{Name: "ro", Permission: backend.PermissionReadOnly})
	g.Expect(c.Ping(ctx)).To(Succeed())
	req := native.CreateRequest{Name: "x", Permission: backend.PermissionReadOnly}
	_, err := c.CreateToken(ctx, "k", req)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.CreateToken(ctx, "k", req)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.GetToken(ctx, ro.ID)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.ListTokens(ctx, native.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.DeactivateToken(ctx, ro.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(backend.IsUnauthorized(srv.ClientFor(t, ro.Value).Ping(ctx))).To(BeTrue())

	g.Expect(srv.Server.Stats()).To(Equal(statusserver.Stats{
		Requests: 8, WriteRequests: 4, TokensCreated: 2, Replays: 1, Deactivations: 1,
		ListCalls: 1, GetCalls: 1, PingCalls: 1, Unauthorized: 1,
	}))
}

func TestRequestLogsHoldNoSecrets(t *testing.T) {
	g := NewWithT(t)
	var logs syncBuffer
	srv := servertest.Start(t, servertest.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	tok := srv.IssueToken(t, native.CreateRequest{Name: "n", Permission: backend.PermissionReadOnly})
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api_tokens", strings.NewReader(`{"name":"`+tok.Value.Reveal()+`"}`))
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	g.Expect(srv.ClientFor(t, tok.Value).Ping(context.Background())).To(Succeed())
	g.Expect(logs.String()).To(ContainSubstring(`"msg":"Served request"`))
	g.Expect(logs.String()).To(ContainSubstring(`"status":201`))
	g.Expect(logs.String()).NotTo(ContainSubstring(tok.Value.Reveal()))
	g.Expect(logs.String()).NotTo(ContainSubstring(srv.AdminToken))
	g.Expect(logs.String()).NotTo(ContainSubstring("sgt_"))
}
