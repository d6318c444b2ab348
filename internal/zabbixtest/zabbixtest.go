// Package zabbixtest starts a real Zabbix 6.0 API server for tests: PHP's built-in web server
// on a free 127.0.0.1 port over a private PostgreSQL cluster, from Debian packages (no
// container engine). hack/zabbix's scripts do the work; this package runs them, reads what they
// wrote and makes sure every process stops.
//
// Each server starts from a copy of a pristine database cached under bin/zabbix (built on the
// first start, 15-30 s), which already holds a Super-admin API token for Admin and the two users
// tokens are minted for (see hack/zabbix/bootstrap.php). A start then costs 2-5 s.
//
// Use Start for a server of the test's own, or Shared for one server per test binary, which
// tests that only create their own objects can share; stop it from TestMain:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		_ = zabbixtest.StopShared()
//		os.Exit(code)
//	}
//
// A test binary that dies without stopping them (a -timeout panic, SIGKILL) does not leak the
// processes: start.sh leaves a watcher that stops them, and removes their directory, within a
// second of the binary's exit.
//
// The packages must be installed first (`make zabbix`, as root). When they are not, or Zabbix
// cannot start, the test is skipped with the reason, or fails when CI=true.
//
// This package imports no Kubernetes package.
package zabbixtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds start.sh. A first start builds the cached database (15-30 s, more on a
// busy machine); later ones take seconds.
const startTimeout = 5 * time.Minute

// User is a Zabbix user that bootstrap.php made (or Admin).
type User struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Password string `json:"password"`
	// RoleID and UserGroupID are empty for Admin.
	RoleID      string `json:"roleId"`
	UserGroupID string `json:"userGroupId"`
}

// Server is a running Zabbix, as start.sh described it in Dir/zabbix.json.
type Server struct {
	// URL is the frontend's base URL (http://127.0.0.1:<port>); the API is URL/api_jsonrpc.php.
	URL    string `json:"url"`
	APIURL string `json:"apiUrl"`
	// Version is what apiinfo.version answered, e.g. 6.0.14.
	Version string `json:"version"`
	// AdminUser is Admin (a Super admin); AdminToken is its API token, the operator's credential.
	AdminUser    User   `json:"adminUser"`
	AdminToken   string `json:"adminToken"`
	AdminTokenID string `json:"adminTokenId"`
	HostGroup    struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"hostGroup"`
	// ReadOnlyUser's role (type User) may call only *.get, and its group may read HostGroup.
	ReadOnlyUser User `json:"readOnlyUser"`
	// FullAccessUser's role (type Admin) may call everything but token.*, user.*, role.* and
	// usergroup.*, and its group may write HostGroup.
	FullAccessUser User `json:"fullAccessUser"`

	// Dir holds the cluster, the frontend copy, the logs (php.log, pg/postgres.log) and
	// zabbix.json / zabbix.env. It is removed by Stop.
	Dir string `json:"-"`

	client   *http.Client
	stopOnce sync.Once
	stopErr  error
}

// ErrNotInstalled is wrapped by StartServer's error when the Debian packages or the SQL cache
// are missing.
var ErrNotInstalled = errors.New("zabbix is not installed: run `make zabbix` (as root)")

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func script(name string) string { return filepath.Join(RepoRoot(), "hack", "zabbix", name) }

// Start starts a server of the test's own and stops it when the test ends. When it cannot
// start, the test is skipped (or fails, when CI=true).
func Start(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := StartServer(ctx)
	if err != nil {
		unavailable(tb, err)
		return nil
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stopping Zabbix: %v", err)
		}
	})
	return s
}

var shared struct {
	sync.Mutex
	server *Server
	err    error
}

// Shared returns the test binary's shared server, started on the first call. Tests that use it
// must not depend on what other tests do there (create objects with names of their own). Stop
// it with StopShared from TestMain; without that, the watcher stops it after the binary exits.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.server == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		shared.server, shared.err = StartServer(ctx)
		cancel()
	}
	if shared.err != nil {
		unavailable(tb, shared.err)
		return nil
	}
	return shared.server
}

// StopShared stops the shared server, if Shared started one.
func StopShared() error {
	shared.Lock()
	defer shared.Unlock()
	if shared.server == nil {
		return nil
	}
	return shared.server.Stop()
}

// unavailable skips the test, or fails it when CI=true: on CI a missing Zabbix is a broken
// machine, not a reason to pass.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("Zabbix is required on CI (CI=true) but cannot start: %v", err)
		return
	}
	tb.Skipf("Zabbix cannot start, skipping: %v", err)
}

// StartServer starts a server in a new directory under the system's temporary directory (short:
// PostgreSQL's socket path is limited to 107 bytes). Call Stop when done.
func StartServer(ctx context.Context) (*Server, error) {
	dir, err := os.MkdirTemp("", "zabbix-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, client: &http.Client{Timeout: time.Minute}}
	if err := s.start(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, script("start.sh"), s.Dir)
	// The watcher start.sh leaves stops everything, and removes Dir, when this process exits.
	cmd.Env = append(os.Environ(),
		"ZABBIX_STOP_WITH_PID="+strconv.Itoa(os.Getpid()),
		"ZABBIX_STOP_REMOVES_DIR=1",
	)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// SIGTERM (not SIGKILL) on a timeout or when this process dies, so that start.sh's exit
	// trap stops what it started; WaitDelay covers a child that keeps the output pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	begin := time.Now()
	err := cmd.Run()
	out := strings.TrimSpace(stderr.String())
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 2 {
			return fmt.Errorf("%w: %s", ErrNotInstalled, out)
		}
		return fmt.Errorf("hack/zabbix/start.sh %s failed after %s: %v: %s", s.Dir, time.Since(begin).Round(time.Millisecond), err, out)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, "zabbix.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, s); err != nil {
		return fmt.Errorf("reading %s/zabbix.json: %w", s.Dir, err)
	}
	return nil
}

// Stop stops PHP and PostgreSQL and removes Dir. Calling it again returns the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, script("stop.sh"), "--remove", s.Dir).CombinedOutput()
		if err != nil {
			s.stopErr = fmt.Errorf("hack/zabbix/stop.sh %s: %v: %s", s.Dir, err, strings.TrimSpace(string(out)))
		}
	})
	return s.stopErr
}

// Error is an error answer of the Zabbix API. Message is JSON-RPC's general text (e.g.
// "Invalid params."), Data says what went wrong (e.g. "Not authorized.").
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("zabbix API error %d: %s %s", e.Code, e.Message, e.Data)
}

// Call calls a JSON-RPC method of the API with params (nil sends {}) and, unless auth is empty,
// "auth": auth in the body (how Zabbix 6.0 takes a session id or API token). It returns the
// result, or an *Error when Zabbix answered with an error.
func (s *Server) Call(ctx context.Context, method string, params any, auth string) (json.RawMessage, error) {
	if params == nil {
		params = struct{}{}
	}
	request := map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
	if auth != "" {
		request["auth"] = auth
	}
	body, err := json.Marshal(request)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.APIURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json-rpc")
	return s.Do(req)
}

// Do sends a prepared request to the API (for headers of the caller's own) and decodes the
// JSON-RPC answer as Call does.
func (s *Server) Do(req *http.Request) (json.RawMessage, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var reply struct {
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d, not a JSON-RPC answer: %w", req.URL, resp.StatusCode, err)
	}
	if reply.Error != nil {
		return nil, reply.Error
	}
	return reply.Result, nil
}
