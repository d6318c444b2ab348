// Package devenv starts the whole system on one machine: etcd, kube-apiserver and
// kube-controller-manager from the control-plane binaries, the reference status backend (or,
// with Options.Backend zabbix, a real Zabbix API server; see zabbix.go) and the manager, each
// as a separate process on 127.0.0.1. With Options.Workloads it also starts
// kube-scheduler and kwok, which simulates one Node and the Pods on it, so Deployments,
// StatefulSets and DaemonSets roll out with no container runtime (see workloads.go). It is
// the one implementation behind both `make dev` (state under .dev/, reused by the next run)
// and the end-to-end tests (state in a temporary directory, free ports).
//
// Every process runs in its own process group and is stopped by Env.Stop, manager first and
// etcd last, with SIGTERM and then SIGKILL; if the calling process dies, the kernel kills
// them too (Pdeathsig), so nothing outlives it.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/installtest"
)

// startTimeout bounds the wait for each process to become ready. The API server is the
// slowest; on a loaded two-core machine it takes a few seconds.
const startTimeout = 90 * time.Second

// Options say what to start and where.
type Options struct {
	// Dir holds all state: etcd data, certificates, kubeconfig, backend database, admin
	// token, recorded ports and logs. Reusing a directory reuses all of it.
	Dir string
	// AssetsDir holds the etcd, kube-apiserver and kube-controller-manager binaries.
	AssetsDir string
	// RepoRoot is the repository checkout; CRDs come from config/crd/bases and the
	// ClusterStatusBackend and samples from config/samples.
	RepoRoot string
	// ManagerBinary and BackendBinary are the built manager and reference backend.
	ManagerBinary, BackendBinary string
	// Backend chooses what the ClusterStatusBackend "default" points at: "" or
	// tokensv1alpha1.DriverNative for the reference backend (BackendBinary), or
	// tokensv1alpha1.DriverZabbix for a real Zabbix 6.0 API server run by hack/zabbix
	// (`make zabbix` installs it; see zabbix.go), with spec.provider.zabbix.
	Backend string
	// ZabbixDir holds Zabbix's state (database, frontend copy, logs, zabbix.json) with Backend
	// zabbix; reusing it reuses the database. Default Dir/zabbix.
	ZabbixDir string
	// Ports to listen on; zero values are filled in (see Ports).
	Ports Ports
	// ManagerArgs are appended to the manager's command line (later flags win).
	ManagerArgs []string
	// ManagerOutput, when set, receives the manager's logs besides Dir/logs/manager.log.
	ManagerOutput io.Writer
	// Progress, when set, receives one line per started component.
	Progress io.Writer
	// ApplySamples applies the manifests listed in config/samples/kustomization.yaml.
	ApplySamples bool
	// ControlPlaneOnly starts etcd, kube-apiserver and kube-controller-manager and installs
	// the CRDs, but neither the backend nor the manager.
	ControlPlaneOnly bool
	// UnsafeNoFsync makes etcd skip fsync: faster, and fine for throwaway test directories.
	UnsafeNoFsync bool
	// Workloads also starts kube-scheduler (from AssetsDir) and kwok (from KwokDir) and
	// registers one simulated Node (SimulatedNodeName), so that the Pods of Deployments,
	// StatefulSets and DaemonSets are scheduled and become Ready and rollouts complete.
	// Without it those Pods stay Pending. It applies with ControlPlaneOnly too.
	Workloads bool
	// RestartWorkloads runs the manager with --restart-workloads and grants it the opt-in
	// rights of config/restart-workloads (make dev turns it on).
	RestartWorkloads bool
	// KwokDir holds the kwok binary and the stages.yaml it runs with (`make controlplane`
	// builds both into bin/kwok/<version>; FindKwokDir finds them). Needed with Workloads.
	KwokDir string
	// ManagerImpersonation runs the manager as the ServiceAccount dist/install.yaml
	// installs (installtest.ServiceAccountUser) instead of as the admin: the Namespace,
	// ServiceAccount, roles and bindings of dist/install.yaml (not its Deployment) are
	// applied first, and the manager gets Dir/manager.kubeconfig, which has the admin's
	// credentials and impersonates that ServiceAccount, so only the shipped RBAC applies.
	ManagerImpersonation bool
}

// Env is a running environment.
type Env struct {
	// Dir is the absolute state directory; Kubeconfig is Dir/kubeconfig (admin access).
	Dir, Kubeconfig string
	// ManagerKubeconfig is the kubeconfig the manager runs with: Kubeconfig, or with
	// ManagerImpersonation Dir/manager.kubeconfig (acting as the shipped ServiceAccount).
	ManagerKubeconfig string
	// LogDir holds one log file per process.
	LogDir string
	// Ports are the ports actually in use.
	Ports Ports
	// pickedPorts are the ports (by flag) this run picked itself: see retryOnPortTaken.
	pickedPorts map[string]bool
	// RESTConfig and Client reach the API server as the admin user.
	RESTConfig *rest.Config
	Client     client.Client
	// BackendURL is the reference backend's base URL (ending in /api/v3); AdminToken is its
	// FullAccess admin token, also stored in the Secret apitoken-system/status-backend-admin.
	// With Backend zabbix they are Zabbix's frontend URL and Super-admin API token (Secret
	// apitoken-system/zabbix-admin).
	BackendURL, AdminToken string
	// Zabbix is the running Zabbix with Backend zabbix, else nil.
	Zabbix *ZabbixServer
	// Reused is true when Dir already held a cluster (etcd data) from an earlier run.
	Reused bool
	// Samples are the APITokens applied from config/samples (with ApplySamples).
	Samples []client.ObjectKey

	opts     Options
	pki      pki
	procs    []*process // in start order; stopped in reverse
	lock     *os.File
	progress io.Writer
	// zabbixDir is set once start.sh ran there; Stop then runs stop.sh, after the processes.
	zabbixDir string
}

// Start starts everything Options ask for and returns once each process is ready (the
// manager answers /readyz). On error, whatever was started has been stopped again.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	e := &Env{
		Dir:               dir,
		Kubeconfig:        filepath.Join(dir, "kubeconfig"),
		ManagerKubeconfig: filepath.Join(dir, "kubeconfig"),
		LogDir:            filepath.Join(dir, "logs"),
		opts:              opts,
		progress:          opts.Progress,
	}
	if e.progress == nil {
		e.progress = io.Discard
	}
	for _, d := range []string{dir, e.LogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := e.acquireLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if _, statErr := os.Stat(filepath.Join(dir, "etcd", "member")); statErr == nil {
		e.Reused = true
	}
	if e.Ports, e.pickedPorts, err = resolvePorts(dir, opts.Ports); err != nil {
		return nil, err
	}
	if e.pki, err = ensurePKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}

	steps := []step{
		{"etcd", e.retryOnPortTaken(e.startEtcd, "etcd-port", "etcd-peer-port"), func() string {
			return fmt.Sprintf("etcd                     %s (data %s)", localURL("http", e.Ports.Etcd), filepath.Join(dir, "etcd"))
		}},
		{"kube-apiserver", e.retryOnPortTaken(e.startAPIServer, "apiserver-port"), func() string {
			return fmt.Sprintf("kube-apiserver           %s (kubeconfig %s)", e.RESTConfig.Host, e.Kubeconfig)
		}},
		{"kube-controller-manager", e.retryOnPortTaken(e.startControllerManager, "controller-manager-port"), func() string {
			return fmt.Sprintf("kube-controller-manager  %s (%s controllers)", localURL("https", e.Ports.ControllerManager), controllers)
		}},
	}
	if opts.Workloads {
		steps = append(steps, []step{
			{"kube-scheduler", e.retryOnPortTaken(e.startScheduler, "scheduler-port"), func() string {
				return fmt.Sprintf("kube-scheduler           %s", localURL("https", e.Ports.Scheduler))
			}},
			{"kwok", e.startKwok, func() string {
				return fmt.Sprintf("kwok                     Node %s is Ready (simulated: Pods on it run without a container runtime)", SimulatedNodeName)
			}},
		}...)
	}
	steps = append(steps, step{"CRDs", e.installCRDs, func() string { return "CRDs                     installed from config/crd/bases" }})
	if !opts.ControlPlaneOnly {
		steps = append(steps, e.backendSteps()...)
		if opts.ManagerImpersonation {
			steps = append(steps, step{"manager RBAC", e.installManagerRBAC, func() string {
				return "manager RBAC             applied from dist/install.yaml; the manager runs as " + installtest.ServiceAccountUser
			}})
		}
		if opts.ApplySamples {
			steps = append(steps, step{"samples", e.applySamples, func() string {
				return fmt.Sprintf("samples                  applied %d APITokens from config/samples", len(e.Samples))
			}})
		}
		steps = append(steps, step{"manager", e.retryOnPortTaken(e.startManager, "metrics-port", "health-port"), func() string {
			return fmt.Sprintf("manager                  ready (health %s, metrics %s)", localURL("http", e.Ports.ManagerHealth), localURL("http", e.Ports.ManagerMetrics))
		}})
	}
	for _, s := range steps {
		began := time.Now()
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("starting %s: %w", s.name, err)
		}
		fmt.Fprintf(e.progress, "%s [%.1fs]\n", s.done(), time.Since(began).Seconds())
	}
	return e, nil
}

// backendSteps start the backend Options.Backend names and point the ClusterStatusBackend
// "default" at it.
func (e *Env) backendSteps() []step {
	if e.opts.Backend == tokensv1alpha1.DriverZabbix {
		return []step{
			{"zabbix", e.startZabbix, func() string {
				return fmt.Sprintf("zabbix                   %s (Zabbix %s, API %s, data %s)", e.Zabbix.URL, e.Zabbix.Version, e.Zabbix.APIURL, e.Zabbix.Dir)
			}},
			{"backend configuration", e.configureZabbixBackend, func() string {
				return fmt.Sprintf("ClusterStatusBackend     default -> %s (zabbix driver: users %s and %s; Super-admin token in %s/%s)",
					e.BackendURL, e.Zabbix.ReadOnlyUser.Name, e.Zabbix.FullAccessUser.Name, AdminNamespace, ZabbixAdminSecretName)
			}},
		}
	}
	return []step{
		{"status-backend", e.retryOnPortTaken(e.startBackend, "backend-port"), func() string {
			return fmt.Sprintf("status-backend           %s (data %s)", e.BackendURL, filepath.Join(e.Dir, "backend.db"))
		}},
		{"backend configuration", e.configureBackend, func() string {
			return "ClusterStatusBackend     default -> " + e.BackendURL + " (admin token in apitoken-system/status-backend-admin)"
		}},
	}
}

// step is one stage of Start: run it, then print what done describes.
type step struct {
	name string
	run  func(context.Context) error
	done func() string
}

func (o Options) validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if o.RepoRoot == "" {
		errs = append(errs, errors.New("RepoRoot is required"))
	}
	if o.AssetsDir == "" {
		errs = append(errs, errors.New("AssetsDir is required (the directory with etcd, kube-apiserver and kube-controller-manager; `make controlplane` builds it)"))
	} else {
		for _, b := range controlPlaneBinaries {
			if _, err := os.Stat(filepath.Join(o.AssetsDir, b)); err != nil {
				errs = append(errs, fmt.Errorf("%s not found in %s: run `make controlplane`, or point KUBEBUILDER_ASSETS (--assets) at a directory that has etcd, kube-apiserver and kube-controller-manager", b, o.AssetsDir))
			}
		}
	}
	if o.Workloads {
		errs = append(errs, o.validateWorkloads()...)
	}
	switch o.Backend {
	case "", tokensv1alpha1.DriverNative, tokensv1alpha1.DriverZabbix:
	default:
		errs = append(errs, fmt.Errorf("unknown backend %q: choose %s (the reference backend) or %s", o.Backend, tokensv1alpha1.DriverNative, tokensv1alpha1.DriverZabbix))
	}
	if !o.ControlPlaneOnly {
		binaries := map[string]string{"manager": o.ManagerBinary}
		if o.Backend != tokensv1alpha1.DriverZabbix {
			binaries["status-backend"] = o.BackendBinary
		}
		for name, path := range binaries {
			if path == "" {
				errs = append(errs, fmt.Errorf("the %s binary is required", name))
			} else if _, err := os.Stat(path); err != nil {
				errs = append(errs, fmt.Errorf("the %s binary: %w (run `make build`)", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// acquireLock makes sure one environment at a time uses Dir. The lock is an flock, so the
// kernel releases it when the owner dies, however it dies.
func (e *Env) acquireLock() error {
	f, err := os.OpenFile(filepath.Join(e.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(f.Name())
		_ = f.Close()
		return fmt.Errorf("another environment (pid %s) is running with state in %s: stop it first (Ctrl-C in its terminal), or use another directory", string(owner), e.Dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	e.lock = f
	return nil
}

// start starts one process with its log in LogDir and remembers it for Stop.
func (e *Env) start(name, binary string, args []string, extra io.Writer) (*process, error) {
	return e.startWithEnv(name, binary, args, nil, extra)
}

// startWithEnv is start with env (KEY=value) added to the process's environment.
func (e *Env) startWithEnv(name, binary string, args, env []string, extra io.Writer) (*process, error) {
	p, err := startProcessWithEnv(name, binary, args, env, filepath.Join(e.LogDir, name+".log"), extra)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// Stop stops every process in reverse start order (SIGTERM, then SIGKILL after a grace
// period), then Zabbix (hack/zabbix/stop.sh) when it was started, and releases the directory.
// It is safe to call more than once.
func (e *Env) Stop() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	e.procs = nil
	if err := e.stopZabbix(); err != nil {
		errs = append(errs, err)
	}
	if e.lock != nil {
		_ = e.lock.Close()
		e.lock = nil
	}
	return errors.Join(errs...)
}

// ManagerLog is the path of the manager's log file.
func (e *Env) ManagerLog() string { return filepath.Join(e.LogDir, "manager.log") }

// RestartManager stops the manager process and starts it again with the same flags, as an
// operator upgrade or a rescheduled Pod would; it returns once the new one answers /readyz.
func (e *Env) RestartManager(ctx context.Context) error {
	for i, p := range e.procs {
		if p.name != "manager" {
			continue
		}
		if err := p.stop(stopGrace); err != nil {
			return err
		}
		e.procs = append(e.procs[:i], e.procs[i+1:]...)
		return e.startManager(ctx)
	}
	return errors.New("no manager is running in this environment")
}
