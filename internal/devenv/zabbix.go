package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// With Options.Backend zabbix the environment runs a real Zabbix 6.0 API server instead of the
// reference backend: hack/zabbix/start.sh starts PostgreSQL and PHP's web server (both leave
// the script running on their own, so they are not processes of Env) with state in ZabbixDir,
// and Env.Stop runs hack/zabbix/stop.sh. start.sh also leaves a watcher that runs stop.sh when
// this process exits however it exits, as Pdeathsig does for the other processes.

// Names of the objects that connect the manager to Zabbix.
const (
	// ZabbixAdminSecretName holds (key AdminSecretKey, namespace AdminNamespace) the API token
	// of Zabbix's Super admin that bootstrap.php made.
	ZabbixAdminSecretName = "zabbix-admin"
)

// zabbixStartTimeout bounds start.sh: a first start builds the cached database (15-30 s, more
// on a busy machine); later ones take seconds. Installing the packages (as root) has its own.
const (
	zabbixStartTimeout   = 5 * time.Minute
	zabbixInstallTimeout = 10 * time.Minute
)

// ZabbixServer is what hack/zabbix/start.sh wrote to ZabbixDir/zabbix.json: where Zabbix
// listens, and what bootstrap.php made there. The users' passwords in that file are not read.
type ZabbixServer struct {
	// URL is the frontend's base URL (http://127.0.0.1:<port>); the API is APIURL,
	// URL/api_jsonrpc.php.
	URL    string `json:"url"`
	APIURL string `json:"apiUrl"`
	// Version is what apiinfo.version answered, e.g. 6.0.14.
	Version string `json:"version"`
	// AdminToken is the API token of Admin, a Super admin: the operator's credential.
	AdminToken string `json:"adminToken"`
	// ReadOnlyUser's role may call only *.get; FullAccessUser's role may call everything but
	// token.*, user.*, role.* and usergroup.*.
	ReadOnlyUser   ZabbixUser `json:"readOnlyUser"`
	FullAccessUser ZabbixUser `json:"fullAccessUser"`
	// HostGroup is the host group the two users' groups may read (and write, for FullAccess).
	HostGroup struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"hostGroup"`
	// Dir is the state directory start.sh ran with (database, frontend copy, php.log).
	Dir string `json:"-"`
}

// ZabbixUser is a user bootstrap.php made.
type ZabbixUser struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// readZabbixServer reads dir/zabbix.json and checks it names what the environment needs.
func readZabbixServer(dir string) (*ZabbixServer, error) {
	path := filepath.Join(dir, "zabbix.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	z := &ZabbixServer{Dir: dir}
	if err := json.Unmarshal(data, z); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var missing []string
	for name, v := range map[string]string{"url": z.URL, "apiUrl": z.APIURL, "adminToken": z.AdminToken, "readOnlyUser.name": z.ReadOnlyUser.Name, "fullAccessUser.name": z.FullAccessUser.Name} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s: remove %s to start Zabbix afresh", path, strings.Join(missing, ", "), dir)
	}
	return z, nil
}

// zabbixScript is the path of one of hack/zabbix's scripts in the checkout.
func (o Options) zabbixScript(name string) string {
	return filepath.Join(o.RepoRoot, "hack", "zabbix", name)
}

// zabbixDir is where Zabbix keeps its state: ZabbixDir, or Dir/zabbix.
func (o Options) zabbixDir() string {
	if o.ZabbixDir != "" {
		return o.ZabbixDir
	}
	return filepath.Join(o.Dir, "zabbix")
}

// ensureZabbixInstalled runs install.sh --check. When something is missing it runs install.sh
// itself as root (what `make zabbix` does: the Debian packages, about 90 s once, and the SQL
// cache in bin/zabbix); otherwise it says what to run, as validate does for the control plane.
func (e *Env) ensureZabbixInstalled(ctx context.Context) error {
	check := exec.CommandContext(ctx, e.opts.zabbixScript("install.sh"), "--check")
	var out bytes.Buffer
	check.Stdout, check.Stderr = io.Discard, &out
	err := check.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	missing := strings.TrimSpace(out.String())
	if missing == "" {
		missing = err.Error()
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("zabbix is not installed: %s\nRun `sudo make zabbix` once (the Debian packages and the SQL cache in bin/zabbix; see hack/zabbix/README.md), then `make dev BACKEND=zabbix` again", missing)
	}
	fmt.Fprintf(e.progress, "zabbix                   installing (hack/zabbix/install.sh, as `make zabbix` does; once): %s\n", missing)
	ctx, cancel := context.WithTimeout(ctx, zabbixInstallTimeout)
	defer cancel()
	install := exec.CommandContext(ctx, e.opts.zabbixScript("install.sh"))
	logPath := filepath.Join(e.LogDir, "zabbix-install.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	install.Stdout, install.Stderr = io.Discard, log
	if err := install.Run(); err != nil {
		return fmt.Errorf("hack/zabbix/install.sh: %v%s", err, logTail(logPath))
	}
	return nil
}

// startZabbix starts Zabbix with state in ZabbixDir (a second run starts the same database
// again, on the same port when it is free) and reads what start.sh wrote. BackendURL becomes
// the frontend's base URL and AdminToken the Super admin's API token.
func (e *Env) startZabbix(ctx context.Context) error {
	if err := e.ensureZabbixInstalled(ctx); err != nil {
		return err
	}
	dir, err := filepath.Abs(e.opts.zabbixDir())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(e.LogDir, "zabbix.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n===== %s hack/zabbix/start.sh %s\n", time.Now().Format(time.RFC3339), dir)

	ctx, cancel := context.WithTimeout(ctx, zabbixStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.opts.zabbixScript("start.sh"), dir)
	// The watcher start.sh leaves runs stop.sh when this process exits, however it exits.
	cmd.Env = append(os.Environ(), "ZABBIX_STOP_WITH_PID="+strconv.Itoa(os.Getpid()))
	cmd.Stdout, cmd.Stderr = io.Discard, log
	// Its own process group, so the terminal's Ctrl-C reaches only the dev command; on
	// cancellation SIGTERM (not SIGKILL), so that start.sh's exit trap stops what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// From here on Stop runs stop.sh, also when start.sh fails half-way.
	e.zabbixDir = dir
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", zabbixStartTimeout)
		}
		return fmt.Errorf("hack/zabbix/start.sh %s: %v%s", dir, err, logTail(logPath))
	}
	z, err := readZabbixServer(dir)
	if err != nil {
		return err
	}
	e.Zabbix = z
	e.BackendURL = z.URL
	e.AdminToken = z.AdminToken
	return nil
}

// stopZabbix runs hack/zabbix/stop.sh on the directory startZabbix used; the state stays for
// the next run.
func (e *Env) stopZabbix() error {
	if e.zabbixDir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.opts.zabbixScript("stop.sh"), e.zabbixDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hack/zabbix/stop.sh %s: %v: %s", e.zabbixDir, err, strings.TrimSpace(string(out)))
	}
	e.zabbixDir = ""
	return nil
}

// configureZabbixBackend creates the admin Secret with Zabbix's Super-admin token and the
// ClusterStatusBackend "default" with the zabbix driver (from config/samples/zabbix).
func (e *Env) configureZabbixBackend(ctx context.Context) error {
	sample, err := readManifests(filepath.Join(e.opts.RepoRoot, "config", "samples", "zabbix", "tokens_v1alpha1_clusterstatusbackend.yaml"))
	if err != nil {
		return err
	}
	objs, err := ZabbixBackendObjects(sample, e.Zabbix)
	if err != nil {
		return err
	}
	for _, u := range objs {
		if u.GetKind() == "ClusterStatusBackend" {
			if err := recordLastApplied(u); err != nil {
				return err
			}
		}
		if err := e.apply(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// ZabbixBackendObjects builds what connects the manager to a running Zabbix: the Namespace
// AdminNamespace, the Secret ZabbixAdminSecretName with z's Super-admin token, and, from sample
// (the manifests of config/samples/zabbix/tokens_v1alpha1_clusterstatusbackend.yaml), the
// ClusterStatusBackend DefaultBackendName with z's URL, that Secret, and spec.provider.zabbix
// naming the two users bootstrap.php made. sample is not modified.
func ZabbixBackendObjects(sample []*unstructured.Unstructured, z *ZabbixServer) ([]*unstructured.Unstructured, error) {
	if z == nil {
		return nil, errors.New("no Zabbix server")
	}
	var backend *unstructured.Unstructured
	for _, u := range sample {
		if u.GroupVersionKind().Group == tokensv1alpha1.GroupVersion.Group && u.GetKind() == "ClusterStatusBackend" && u.GetName() == DefaultBackendName {
			backend = u.DeepCopy()
		}
	}
	if backend == nil {
		return nil, fmt.Errorf("the Zabbix sample has no ClusterStatusBackend named %q", DefaultBackendName)
	}
	fields := []struct {
		value any
		path  []string
	}{
		{z.URL, []string{"spec", "url"}},
		{map[string]any{"name": ZabbixAdminSecretName, "namespace": AdminNamespace, "key": AdminSecretKey}, []string{"spec", "credentialsSecretRef"}},
		{map[string]any{tokensv1alpha1.DriverZabbix: map[string]any{
			"readOnlyUser":   z.ReadOnlyUser.Name,
			"fullAccessUser": z.FullAccessUser.Name,
		}}, []string{"spec", "provider"}},
	}
	for _, f := range fields {
		if err := unstructured.SetNestedField(backend.Object, f.value, f.path...); err != nil {
			return nil, fmt.Errorf("setting %s: %w", strings.Join(f.path, "."), err)
		}
	}
	ns, secret := adminSecretObjects(ZabbixAdminSecretName, z.AdminToken)
	return []*unstructured.Unstructured{ns, secret, backend}, nil
}
