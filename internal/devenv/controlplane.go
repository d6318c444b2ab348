package devenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// serviceIP is the first address of the service range; the API server gives it to the
// "kubernetes" Service, so the serving certificate names it too.
const (
	serviceRange = "10.0.0.0/24"
	serviceIP    = "10.0.0.1"
)

// contextName is the kubeconfig context (and cluster and user) the environment writes.
const contextName = "apitoken-dev"

func localURL(scheme string, port int) string {
	return scheme + "://127.0.0.1:" + strconv.Itoa(port)
}

// startEtcd starts etcd with its data under dir/etcd, so a restart keeps every object.
func (e *Env) startEtcd(ctx context.Context) error {
	client, peer := localURL("http", e.Ports.Etcd), localURL("http", e.Ports.EtcdPeer)
	args := []string{
		"--name=dev",
		"--data-dir=" + filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=dev=" + peer,
		"--log-level=warn",
	}
	if e.opts.UnsafeNoFsync {
		args = append(args, "--unsafe-no-fsync=true")
	}
	if !e.Reused {
		// A first run: what an attempt refused a port left there is not a cluster yet.
		if err := os.RemoveAll(filepath.Join(e.Dir, "etcd")); err != nil {
			return err
		}
	}
	p, err := e.start("etcd", filepath.Join(e.opts.AssetsDir, "etcd"), args, nil)
	if err != nil {
		return err
	}
	httpClient := &http.Client{}
	return waitUntil(ctx, p, startTimeout, "etcd to become healthy", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, client+"/health")
	})
}

// startAPIServer starts kube-apiserver with the generated certificates: clients
// authenticate with the admin certificate (group system:masters), authorization is RBAC.
func (e *Env) startAPIServer(ctx context.Context) error {
	args := []string{
		"--etcd-servers=" + localURL("http", e.Ports.Etcd),
		"--bind-address=127.0.0.1",
		// Nothing runs in the cluster that would reach the API server through the
		// "kubernetes" Service, and a loopback address is not allowed in its endpoints.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(e.Ports.APIServer),
		"--cert-dir=" + filepath.Join(e.Dir, "pki", "apiserver"),
		"--tls-cert-file=" + e.pki.ServingCert(),
		"--tls-private-key-file=" + e.pki.ServingKey(),
		"--client-ca-file=" + e.pki.CACert(),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + e.pki.ServiceAccountPub(),
		"--service-account-signing-key-file=" + e.pki.ServiceAccountKey(),
		"--service-cluster-ip-range=" + serviceRange,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No Pods run here, and without the service-account controller namespaces get no
		// default ServiceAccount, which this admission plugin would insist on.
		"--disable-admission-plugins=ServiceAccount",
	}
	p, err := e.start("kube-apiserver", filepath.Join(e.opts.AssetsDir, "kube-apiserver"), args, nil)
	if err != nil {
		return err
	}
	if err := e.writeKubeconfig(); err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(e.RESTConfig)
	if err != nil {
		return err
	}
	return waitUntil(ctx, p, startTimeout, "kube-apiserver to become ready", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, e.RESTConfig.Host+"/readyz")
	})
}

// controllers are the kube-controller-manager controllers the environment runs: the ones a
// developer notices missing. namespace: deleting a namespace deletes what is in it;
// garbagecollector: deleting an owner deletes what it owns; deployment, replicaset,
// statefulset and daemonset: workloads create Pods and roll out (the Pods are scheduled and
// run only with Options.Workloads, which adds kube-scheduler and a simulated Node).
const controllers = "namespace,garbagecollector,deployment,replicaset,statefulset,daemonset"

// startControllerManager starts kube-controller-manager with the controllers above.
func (e *Env) startControllerManager(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(e.Ports.ControllerManager),
		"--cert-dir=" + filepath.Join(e.Dir, "pki", "controller-manager"),
	}
	p, err := e.start("kube-controller-manager", filepath.Join(e.opts.AssetsDir, "kube-controller-manager"), args, nil)
	if err != nil {
		return err
	}
	// Its serving certificate is self-signed; /healthz is readable without credentials.
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // local health probe only
	return waitUntil(ctx, p, startTimeout, "kube-controller-manager to become healthy", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, localURL("https", e.Ports.ControllerManager)+"/healthz")
	})
}

// writeKubeconfig writes dir/kubeconfig with the certificates embedded, so it can be copied
// elsewhere, and sets RESTConfig from it.
func (e *Env) writeKubeconfig() error {
	read := func(path string) ([]byte, error) { return os.ReadFile(path) }
	ca, err := read(e.pki.CACert())
	if err != nil {
		return err
	}
	cert, err := read(e.pki.AdminCert())
	if err != nil {
		return err
	}
	key, err := read(e.pki.AdminKey())
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: localURL("https", e.Ports.APIServer), CertificateAuthorityData: ca}
	cfg.AuthInfos[contextName] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName, Namespace: "default"}
	cfg.CurrentContext = contextName
	if err := clientcmd.WriteToFile(*cfg, e.Kubeconfig); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	restConfig, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = 50, 100
	e.RESTConfig = restConfig
	return nil
}

// httpGetOK returns nil when GET url answers 200.
func httpGetOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
