// Package harness runs the pieces of a reliability scenario or a benchmark as the real
// thing: a control plane (kube-apiserver and etcd from bin/controlplane, through envtest),
// the reference status backend over real HTTP (in this process, so its counters can be
// read), the fault proxy in front of it, and the manager as a separate process built from
// ./cmd/manager, which the scenario can SIGKILL and restart.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/statusops/apitoken-operator/internal/statusserver"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// ControlPlane is a running kube-apiserver and etcd with the CRDs installed, and a
// kubeconfig file for manager processes.
type ControlPlane struct {
	Env        *testenv.Env
	Config     *rest.Config
	Client     client.Client
	Kubeconfig string
}

// StartControlPlane starts the API server and writes dir/kubeconfig (a system:masters user).
func StartControlPlane(dir string) (*ControlPlane, error) {
	env, err := testenv.StartEnv()
	if err != nil {
		return nil, err
	}
	user, err := env.Environment.AddUser(envtest.User{Name: "apitoken-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &ControlPlane{Env: env, Config: cfg, Client: c, Kubeconfig: path}, nil
}

// Stop stops the API server and etcd.
func (cp *ControlPlane) Stop() error { return cp.Env.Stop() }

// Backend is the reference status backend served from this process on 127.0.0.1, so that
// its request counters can be read; it can be stopped and started again on the same data
// file and port (the data persists, the idempotency cache does not).
type Backend struct {
	URL, AdminToken, DataPath string
	Latency                   time.Duration

	mu      sync.Mutex
	addr    string
	store   *statusserver.Store
	server  *statusserver.Server
	httpSrv *http.Server
	base    statusserver.Stats // counters of earlier runs
	running bool
}

// StartBackend starts a backend with a fresh data file in dir.
func StartBackend(dir string, latency time.Duration) (*Backend, error) {
	b := &Backend{DataPath: filepath.Join(dir, "backend.db"), Latency: latency, addr: "127.0.0.1:0"}
	store, err := statusserver.OpenStore(b.DataPath)
	if err != nil {
		return nil, err
	}
	_, value, err := store.CreateAdminToken(statusserver.AdminTokenName, time.Now())
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	b.AdminToken = value
	if err := b.serve(store); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Backend) serve(store *statusserver.Store) error {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		_ = store.Close()
		return err
	}
	b.addr = ln.Addr().String()
	b.URL = "http://" + b.addr + statusserver.PathPrefix
	b.store = store
	b.server = statusserver.New(statusserver.Options{Store: store, Logger: slog.New(slog.DiscardHandler), Latency: b.Latency})
	b.httpSrv = &http.Server{Handler: b.server, ReadHeaderTimeout: 10 * time.Second}
	go func(s *http.Server) { _ = s.Serve(ln) }(b.httpSrv)
	b.running = true
	return nil
}

// Stop shuts the backend down (connections are refused until Start).
func (b *Backend) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return nil
	}
	b.running = false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.httpSrv.Shutdown(ctx)
	b.base = addStats(b.base, b.server.Stats())
	return errors.Join(err, b.store.Close())
}

// Start starts a stopped backend again on the same port and data file.
func (b *Backend) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return nil
	}
	store, err := statusserver.OpenStore(b.DataPath)
	if err != nil {
		return err
	}
	return b.serve(store)
}

// Stats are the backend's counters summed over every run.
func (b *Backend) Stats() statusserver.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return b.base
	}
	return addStats(b.base, b.server.Stats())
}

func addStats(a, b statusserver.Stats) statusserver.Stats {
	return statusserver.Stats{
		Requests: a.Requests + b.Requests, WriteRequests: a.WriteRequests + b.WriteRequests,
		TokensCreated: a.TokensCreated + b.TokensCreated, Replays: a.Replays + b.Replays,
		Deactivations: a.Deactivations + b.Deactivations, ListCalls: a.ListCalls + b.ListCalls,
		GetCalls: a.GetCalls + b.GetCalls, SelfCalls: a.SelfCalls + b.SelfCalls, PingCalls: a.PingCalls + b.PingCalls,
		Unauthorized: a.Unauthorized + b.Unauthorized, Forbidden: a.Forbidden + b.Forbidden,
	}
}

// BuildManager builds ./cmd/manager into dir and returns its path and the package it was
// built from. RELIABILITY_MANAGER_BIN, when set, names a prebuilt binary instead.
func BuildManager(dir string) (path, pkg string, err error) {
	if bin := os.Getenv("RELIABILITY_MANAGER_BIN"); bin != "" {
		return bin, "RELIABILITY_MANAGER_BIN", nil
	}
	path = filepath.Join(dir, "manager")
	cmd := exec.Command("go", "build", "-o", path, "./cmd/manager")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building the manager: %v\n%s", err, out)
	}
	return path, "./cmd/manager", nil
}

// FreePort returns a port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Manager is one manager process; Start may be called again after Kill or Stop.
type Manager struct {
	Name, Binary, Kubeconfig, LogPath string
	Args                              []string
	// Env is added to the process environment (e.g. GOMEMLIMIT=80MiB).
	Env                     []string
	MetricsPort, HealthPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// NewManager prepares a manager process with free metrics and health ports; args are added
// to the flags the harness sets (kubeconfig, ports).
func NewManager(name, binary, kubeconfig, logPath string, args ...string) (*Manager, error) {
	mp, err := FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &Manager{Name: name, Binary: binary, Kubeconfig: kubeconfig, LogPath: logPath, Args: args, MetricsPort: mp, HealthPort: hp}, nil
}

// Start starts the process and waits until it answers /readyz.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.cmd != nil {
		m.mu.Unlock()
		return fmt.Errorf("%s is already running", m.Name)
	}
	logf, err := os.OpenFile(m.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	args := append([]string{
		"--kubeconfig=" + m.Kubeconfig,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(m.MetricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(m.HealthPort),
	}, m.Args...)
	fmt.Fprintf(logf, "\n===== %s start %s\n", time.Now().Format(time.RFC3339Nano), m.Name)
	cmd := exec.Command(m.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(m.Env) > 0 {
		cmd.Env = append(os.Environ(), m.Env...)
	}
	// Pdeathsig: if the test binary dies, the kernel kills the manager too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		m.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	m.cmd, m.done, m.log = cmd, done, logf
	m.mu.Unlock()

	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", m.HealthPort)
	return WaitFor(ctx, 60*time.Second, m.Name+" to answer /readyz", func() (bool, string, error) {
		select {
		case <-done:
			return false, "", fmt.Errorf("%s exited during start; see %s", m.Name, m.LogPath)
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error(), nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status, nil
	})
}

// Pid is the running process's id, or 0.
func (m *Manager) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (m *Manager) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits until the process is gone. Harmless when not running.
func (m *Manager) Kill() { m.signal(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM, waits up to 15 s, then SIGKILL.
func (m *Manager) Stop() {
	if !m.signal(syscall.SIGTERM, 15*time.Second) {
		m.Kill()
	}
}

func (m *Manager) signal(sig syscall.Signal, wait time.Duration) bool {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(wait):
		return false
	}
	m.mu.Lock()
	if m.cmd == cmd {
		m.cmd = nil
	}
	m.mu.Unlock()
	return true
}

// Scrape reads the manager's metrics endpoint.
func (m *Manager) Scrape() ([]byte, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.MetricsPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// WaitFor polls cond every 200 ms until it is true, it fails, ctx ends or timeout passes;
// the timeout error includes cond's last progress note.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	note := ""
	for {
		ok, n, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		note = n
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for %s (last: %s)", timeout, what, note)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
