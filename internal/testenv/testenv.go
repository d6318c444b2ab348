// Package testenv starts a real kube-apiserver and etcd (envtest) with the operator's CRDs
// installed, for tests that touch Kubernetes.
//
// The binaries come from KUBEBUILDER_ASSETS when it is set (make test sets it to the
// hermetic build under bin/controlplane), otherwise from the newest directory under
// bin/controlplane of the repository, so `go test ./...` works after `make controlplane`.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// Scheme knows the Kubernetes built-in kinds and the operator's kinds.
var Scheme = k8sruntime.NewScheme()

// Codecs decodes manifests of Scheme's kinds.
var Codecs serializer.CodecFactory

func init() {
	if err := clientgoscheme.AddToScheme(Scheme); err != nil {
		panic(err)
	}
	if err := tokensv1alpha1.AddToScheme(Scheme); err != nil {
		panic(err)
	}
	Codecs = serializer.NewCodecFactory(Scheme)
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is the directory holding etcd and kube-apiserver.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "controlplane", "*", "kube-apiserver"))
	if len(matches) == 0 {
		return "", fmt.Errorf("no control plane binaries: run `make controlplane` (or `make test`), or set KUBEBUILDER_ASSETS")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// Env is a running API server with the CRDs installed.
type Env struct {
	Environment *envtest.Environment
	Config      *rest.Config
	Client      client.Client
}

// Start starts an API server and etcd on free loopback ports, installs the CRDs from
// config/crd/bases and stops everything when the test ends.
func Start(tb testing.TB) *Env {
	tb.Helper()
	env, err := StartEnv()
	if err != nil {
		tb.Fatalf("starting envtest: %v", err)
	}
	tb.Cleanup(func() { _ = env.Stop() })
	return env
}

// StartEnv is Start for a TestMain, where there is no testing.TB; call Stop when done.
func StartEnv() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	e := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                Scheme,
	}
	cfg, err := e.Start()
	if err != nil {
		// Start may fail after etcd and kube-apiserver are up (a CRD the server refuses):
		// stop them, or they outlive the test binary.
		_ = e.Stop()
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	return &Env{Environment: e, Config: cfg, Client: c}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.Environment.Stop() }
