package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/statusserver"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// backendUnderTest is what the manager issues tokens from: the reference backend served by
// this process (harness.Backend), or a real Zabbix behind a counting proxy (-backend zabbix).
// Stats counts requests as the backend sees them.
type backendUnderTest interface {
	Stats() statusserver.Stats
	Stop() error
}

// zabbixBackend is a real Zabbix 6.0 API server started by hack/zabbix/start.sh in the bench's
// directory, and a proxy on 127.0.0.1 in front of it that counts every JSON-RPC call by method:
// what the operator costs Zabbix, read from Zabbix's side of the wire.
type zabbixBackend struct {
	// URL is the proxy's base URL, the ClusterStatusBackend's spec.url (the API is
	// URL/api_jsonrpc.php); AdminToken the Super admin's API token; the users are the two
	// that bootstrap.php made.
	URL, AdminToken, Version     string
	ReadOnlyUser, FullAccessUser string

	dir       string
	zabbixURL *url.URL
	srv       *http.Server
	stopOnce  sync.Once
	stopErr   error

	mu       sync.Mutex
	stats    statusserver.Stats
	byMethod map[string]int64
}

// zabbixStartTimeout bounds start.sh: a first start builds the cached database (15-30 s).
const zabbixStartTimeout = 5 * time.Minute

// startZabbix runs hack/zabbix/start.sh on a directory of its own under the system's temporary
// directory (PostgreSQL runs as the postgres user, which cannot enter the run's 0700
// directory; Stop removes it unless BENCH_KEEP is set; a watcher start.sh leaves stops Zabbix
// when this process exits, however it exits) and starts the counting proxy.
func startZabbix(ctx context.Context) (*zabbixBackend, error) {
	dir, err := os.MkdirTemp("", "bench-zabbix-")
	if err != nil {
		return nil, err
	}
	z := &zabbixBackend{dir: dir, byMethod: map[string]int64{}}
	ctx, cancel := context.WithTimeout(ctx, zabbixStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "hack", "zabbix", "start.sh"), z.dir)
	cmd.Env = append(os.Environ(), "ZABBIX_STOP_WITH_PID="+strconv.Itoa(os.Getpid()))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// SIGTERM, not SIGKILL, on a timeout: start.sh's exit trap stops what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		_ = z.Stop()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 2 {
			return nil, fmt.Errorf("zabbix is not installed (run `make zabbix` as root): %s", strings.TrimSpace(out.String()))
		}
		return nil, fmt.Errorf("hack/zabbix/start.sh %s: %v: %s", z.dir, err, strings.TrimSpace(out.String()))
	}
	data, err := os.ReadFile(filepath.Join(z.dir, "zabbix.json"))
	if err != nil {
		_ = z.Stop()
		return nil, err
	}
	var desc struct {
		URL          string `json:"url"`
		Version      string `json:"version"`
		AdminToken   string `json:"adminToken"`
		ReadOnlyUser struct {
			Name string `json:"name"`
		} `json:"readOnlyUser"`
		FullAccessUser struct {
			Name string `json:"name"`
		} `json:"fullAccessUser"`
	}
	if err := json.Unmarshal(data, &desc); err != nil {
		_ = z.Stop()
		return nil, fmt.Errorf("%s/zabbix.json: %w", z.dir, err)
	}
	z.AdminToken, z.Version = desc.AdminToken, desc.Version
	z.ReadOnlyUser, z.FullAccessUser = desc.ReadOnlyUser.Name, desc.FullAccessUser.Name
	if z.zabbixURL, err = url.Parse(desc.URL); err != nil {
		_ = z.Stop()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = z.Stop()
		return nil, err
	}
	z.URL = "http://" + ln.Addr().String()
	rp := httputil.NewSingleHostReverseProxy(z.zabbixURL)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	z.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		z.count(body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = z.srv.Serve(ln) }()
	return z, nil
}

// cpuSeconds is the CPU time of Zabbix's two parts so far: PHP's web server (the frontend that
// answers every call, one request at a time) and PostgreSQL.
func (z *zabbixBackend) cpuSeconds() map[string]float64 {
	out := map[string]float64{}
	for name, pidFile := range map[string]string{"zabbix php": filepath.Join(z.dir, "php.pid"), "zabbix postgres": filepath.Join(z.dir, "pg", "data", "postmaster.pid")} {
		data, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
			out[name] = procTreeSeconds(pid)
		}
	}
	return out
}

// provider is the ClusterStatusBackend's spec.provider for this Zabbix.
func (z *zabbixBackend) provider() *tokensv1alpha1.BackendProvider {
	return &tokensv1alpha1.BackendProvider{Zabbix: &tokensv1alpha1.ZabbixProvider{ReadOnlyUser: z.ReadOnlyUser, FullAccessUser: z.FullAccessUser}}
}

// count records one JSON-RPC request: by method (token.get by what it asks for: one token by
// id, by name or by value, one APIToken's tokens by owner, or a listing of every token), and
// in the reference backend's Stats terms: writes are the calls that change Zabbix (every
// method but *.get, apiinfo.version and user.checkAuthentication), a token.get by owner or
// of every token is a list call, the credential check (user.checkAuthentication) a self call.
func (z *zabbixBackend) count(body []byte) {
	var req struct {
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	_ = json.Unmarshal(body, &req) // token.generate sends an array: Params stays empty
	key := req.Method
	z.mu.Lock()
	defer z.mu.Unlock()
	z.stats.Requests++
	switch {
	case req.Method == "token.get":
		switch {
		case req.Params["tokenids"] != nil:
			key += " by id"
			z.stats.GetCalls++
		case req.Params["token"] != nil:
			key += " by value"
		case req.Params["filter"] != nil:
			key += " by name"
		case req.Params["search"] != nil:
			// One APIToken's tokens (a name search for its UID): the ownership check of a sweep.
			key += " by owner"
			z.stats.ListCalls++
		default:
			key += " list"
			z.stats.ListCalls++
		}
	case req.Method == "user.checkAuthentication":
		z.stats.SelfCalls++
	case req.Method == "apiinfo.version" || strings.HasSuffix(req.Method, ".get"):
	default:
		z.stats.WriteRequests++
		switch {
		case req.Method == "token.create":
			z.stats.TokensCreated++
		case req.Method == "token.update" && fmt.Sprint(req.Params["status"]) == "1":
			z.stats.Deactivations++
		}
	}
	z.byMethod[key]++
}

// Stats implements backendUnderTest.
func (z *zabbixBackend) Stats() statusserver.Stats {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.stats
}

// ByMethod is the number of calls so far by method (see count).
func (z *zabbixBackend) ByMethod() map[string]int64 {
	z.mu.Lock()
	defer z.mu.Unlock()
	return maps.Clone(z.byMethod)
}

// Stop stops the proxy and runs hack/zabbix/stop.sh.
func (z *zabbixBackend) Stop() error {
	z.stopOnce.Do(func() {
		if z.srv != nil {
			_ = z.srv.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args := []string{z.dir}
		if os.Getenv("BENCH_KEEP") == "" {
			args = append([]string{"--remove"}, args...)
		}
		out, err := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "hack", "zabbix", "stop.sh"), args...).CombinedOutput()
		if err != nil {
			z.stopErr = fmt.Errorf("hack/zabbix/stop.sh %s: %v: %s", z.dir, err, strings.TrimSpace(string(out)))
		}
	})
	return z.stopErr
}

// subtractCounts is a - b by key, without the zeros.
func subtractCounts(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
