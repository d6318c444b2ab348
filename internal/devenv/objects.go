package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/installtest"
)

// Scheme knows the built-in kinds, CustomResourceDefinitions and the operator's kinds.
var Scheme = runtime.NewScheme()

func init() {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, tokensv1alpha1.AddToScheme} {
		if err := add(Scheme); err != nil {
			panic(err)
		}
	}
}

// fieldOwner is the server-side-apply field manager of everything the environment applies.
const fieldOwner = client.FieldOwner("apitoken-dev")

// Names of the objects that connect the manager to the reference backend.
const (
	AdminNamespace  = "apitoken-system"
	AdminSecretName = "status-backend-admin"
	AdminSecretKey  = "token"
	// DefaultBackendName is the ClusterStatusBackend an APIToken uses when it names none.
	DefaultBackendName = "default"
)

// installCRDs server-side applies config/crd/bases and waits until every CRD is Established.
func (e *Env) installCRDs(ctx context.Context) error {
	c, err := client.New(e.RESTConfig, client.Options{Scheme: Scheme})
	if err != nil {
		return err
	}
	e.Client = c
	objs, err := readManifests(filepath.Join(e.opts.RepoRoot, "config", "crd", "bases"))
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("no CRDs in %s", filepath.Join(e.opts.RepoRoot, "config", "crd", "bases"))
	}
	for _, u := range objs {
		if err := e.apply(ctx, u); err != nil {
			return err
		}
	}
	for _, u := range objs {
		name := u.GetName()
		if err := waitUntil(ctx, nil, 30*time.Second, "CRD "+name+" to be established", func(ctx context.Context) error {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
				return err
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return errors.New("not established yet")
		}); err != nil {
			return err
		}
	}
	// The REST mapper of a client built before the CRDs existed would not know their kinds.
	e.Client, err = client.New(e.RESTConfig, client.Options{Scheme: Scheme})
	return err
}

// startBackend starts the reference backend with its database and admin token in Dir. A
// first run creates the admin token file; later runs import it, so nothing changes.
func (e *Env) startBackend(ctx context.Context) error {
	listen := "127.0.0.1:" + strconv.Itoa(e.Ports.Backend)
	tokenFile := filepath.Join(e.Dir, "admin-token")
	args := []string{
		"--listen=" + listen,
		"--data=" + filepath.Join(e.Dir, "backend.db"),
		"--admin-token-file=" + tokenFile,
	}
	p, err := e.start("status-backend", e.opts.BackendBinary, args, nil)
	if err != nil {
		return err
	}
	e.BackendURL = "http://" + listen + "/api/v3"
	httpClient := &http.Client{}
	return waitUntil(ctx, p, startTimeout, "status-backend to answer /ping with its admin token", func(ctx context.Context) error {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		e.AdminToken = strings.TrimSpace(string(data))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.BackendURL+"/ping", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+e.AdminToken)
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /ping: %s", resp.Status)
		}
		return nil
	})
}

// configureBackend creates the admin Secret and the ClusterStatusBackend "default" (from
// the sample, with the URL of the running backend).
func (e *Env) configureBackend(ctx context.Context) error {
	ns, secret := adminSecretObjects(AdminSecretName, e.AdminToken)
	objs, err := readManifests(filepath.Join(e.opts.RepoRoot, "config", "samples", "tokens_v1alpha1_clusterstatusbackend.yaml"))
	if err != nil {
		return err
	}
	for _, u := range objs {
		e.pointBackendsHere(u)
		if err := recordLastApplied(u); err != nil {
			return err
		}
	}
	for _, u := range append([]*unstructured.Unstructured{ns, secret}, objs...) {
		if err := e.apply(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// adminSecretObjects are AdminNamespace and the Secret name in it that holds a backend's
// admin credential under AdminSecretKey.
func adminSecretObjects(name, credential string) (ns, secret *unstructured.Unstructured) {
	ns = &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": AdminNamespace},
	}}
	secret = &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": name, "namespace": AdminNamespace},
		"type":       "Opaque",
		"stringData": map[string]any{AdminSecretKey: credential},
	}}
	return ns, secret
}

// applySamples applies the manifests listed in config/samples/kustomization.yaml, with
// every backend URL pointing at the running backend, and records the APITokens. With Backend
// zabbix the samples' (Cluster)StatusBackends, which describe the reference backend, are left
// out: configureZabbixBackend made "default", and applying the native sample over it (same
// field manager) would drop its spec.provider.
func (e *Env) applySamples(ctx context.Context) error {
	samplesDir := filepath.Join(e.opts.RepoRoot, "config", "samples")
	data, err := os.ReadFile(filepath.Join(samplesDir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var kustomization struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &kustomization); err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(samplesDir, "kustomization.yaml"), err)
	}
	e.Samples = nil
	for _, res := range kustomization.Resources {
		objs, err := readManifests(filepath.Join(samplesDir, res))
		if err != nil {
			return err
		}
		for _, u := range objs {
			if e.opts.Backend == tokensv1alpha1.DriverZabbix && isBackendObject(u) {
				continue
			}
			e.pointBackendsHere(u)
			if u.GetKind() == "APIToken" && u.GetNamespace() == "" {
				u.SetNamespace("default")
			}
			if err := recordLastApplied(u); err != nil {
				return err
			}
			if err := e.apply(ctx, u); err != nil {
				return err
			}
			if u.GetKind() == "APIToken" {
				e.Samples = append(e.Samples, client.ObjectKeyFromObject(u))
			}
		}
	}
	return nil
}

// pointBackendsHere sets spec.url of a (Cluster)StatusBackend to the running backend.
func (e *Env) pointBackendsHere(u *unstructured.Unstructured) {
	if isBackendObject(u) {
		_ = unstructured.SetNestedField(u.Object, e.BackendURL, "spec", "url")
	}
}

// isBackendObject reports whether u is a StatusBackend or ClusterStatusBackend.
func isBackendObject(u *unstructured.Unstructured) bool {
	if u.GroupVersionKind().Group != tokensv1alpha1.GroupVersion.Group {
		return false
	}
	k := u.GetKind()
	return k == "ClusterStatusBackend" || k == "StatusBackend"
}

// installManagerRBAC applies the manager's identity and permissions from dist/install.yaml
// (Namespace, ServiceAccount, roles and bindings; not the Deployment) with the admin client,
// and writes ManagerKubeconfig: the admin's credentials, impersonating that ServiceAccount
// (the admin, in group system:masters, may impersonate).
func (e *Env) installManagerRBAC(ctx context.Context) error {
	path := filepath.Join(e.opts.RepoRoot, "dist", "install.yaml")
	if err := installtest.ApplyRBAC(ctx, e.Client, path); err != nil {
		return fmt.Errorf("%w (dist/install.yaml is written by `make build-installer`)", err)
	}
	if e.opts.RestartWorkloads {
		if err := e.installRestartRBAC(ctx); err != nil {
			return err
		}
	}
	kubeconfig := filepath.Join(e.Dir, "manager.kubeconfig")
	if err := installtest.WriteKubeconfig(installtest.ImpersonatedConfig(e.RESTConfig), kubeconfig); err != nil {
		return err
	}
	e.ManagerKubeconfig = kubeconfig
	return nil
}

// installRestartRBAC applies the opt-in rights of --restart-workloads
// (config/restart-workloads/rbac.yaml), named and bound as kustomize would for the installed
// ServiceAccount.
func (e *Env) installRestartRBAC(ctx context.Context) error {
	objs, err := installtest.ReadManifests(filepath.Join(e.opts.RepoRoot, "config", "restart-workloads", "rbac.yaml"))
	if err != nil {
		return err
	}
	for _, o := range objs {
		o.SetName("apitoken-operator-" + o.GetName())
		if o.GetKind() == "ClusterRoleBinding" {
			_ = unstructured.SetNestedField(o.Object, "apitoken-operator-restart-workloads-role", "roleRef", "name")
			_ = unstructured.SetNestedSlice(o.Object, []any{map[string]any{"kind": "ServiceAccount", "name": installtest.ServiceAccountName, "namespace": installtest.Namespace}}, "subjects")
		}
	}
	return installtest.Apply(ctx, e.Client, objs, false)
}

// startManager starts the manager against the environment and waits for /readyz.
func (e *Env) startManager(ctx context.Context) error {
	health := "127.0.0.1:" + strconv.Itoa(e.Ports.ManagerHealth)
	args := append([]string{
		"--kubeconfig=" + e.ManagerKubeconfig,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(e.Ports.ManagerMetrics),
		// Plain HTTP on loopback: the quickstart scrapes with curl, without a token.
		"--metrics-secure=false",
		"--health-probe-bind-address=" + health,
		"--leader-elect=false",
		"--log-format=console",
		"--log-level=info",
	}, e.opts.ManagerArgs...)
	if e.opts.RestartWorkloads {
		args = append(args, "--restart-workloads=true")
	}
	p, err := e.start("manager", e.opts.ManagerBinary, args, e.opts.ManagerOutput)
	if err != nil {
		return err
	}
	httpClient := &http.Client{}
	return waitUntil(ctx, p, startTimeout, "the manager to answer /readyz", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, "http://"+health+"/readyz")
	})
}

// WaitAPITokensReady waits until every named APIToken has condition Ready=True. On timeout
// the error lists the ones that are not, with their Ready reason and message.
func (e *Env) WaitAPITokensReady(ctx context.Context, timeout time.Duration, keys ...client.ObjectKey) error {
	var manager *process
	for _, p := range e.procs {
		if p.name == "manager" {
			manager = p
		}
	}
	return waitUntil(ctx, manager, timeout, "APITokens to become Ready", func(ctx context.Context) error {
		var notReady []string
		for _, key := range keys {
			var tok tokensv1alpha1.APIToken
			if err := e.Client.Get(ctx, key, &tok); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(tok.Status.Conditions, tokensv1alpha1.ConditionReady)
			switch {
			case cond == nil:
				notReady = append(notReady, key.String()+" (no Ready condition yet)")
			case cond.Status != "True":
				notReady = append(notReady, fmt.Sprintf("%s (Ready=%s %s: %s)", key, cond.Status, cond.Reason, cond.Message))
			}
		}
		if len(notReady) > 0 {
			sort.Strings(notReady)
			return errors.New("not Ready: " + strings.Join(notReady, "; "))
		}
		return nil
	})
}

// recordLastApplied stores the manifest in the annotation `kubectl apply` keeps, so that a
// developer who edits a sample and runs `kubectl apply -f` on it gets a correct three-way
// merge and no warning about a missing annotation.
func recordLastApplied(u *unstructured.Unstructured) error {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[corev1.LastAppliedConfigAnnotation] = string(data) + "\n"
	u.SetAnnotations(annotations)
	return nil
}

// apply server-side applies u with the environment's field owner, taking over conflicts.
func (e *Env) apply(ctx context.Context, u *unstructured.Unstructured) error {
	if err := e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), fieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
	}
	return nil
}

// readManifests decodes every YAML document in path (a file, or a directory of .yaml files).
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	files := []string{path}
	if info, err := os.Stat(path); err != nil {
		return nil, err
	} else if info.IsDir() {
		files, err = filepath.Glob(filepath.Join(path, "*.yaml"))
		if err != nil {
			return nil, err
		}
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("decoding %s: %w", f, err)
			}
			if len(obj) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
	return objs, nil
}
