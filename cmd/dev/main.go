// Command dev runs the whole system locally (`make dev`): etcd, kube-apiserver,
// kube-controller-manager, the reference status backend (or Zabbix, with --backend=zabbix)
// and the manager, with the samples applied. All logic lives in internal/devenv; this file only wires flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

func main() {
	var (
		opts        devenv.Options
		managerArgs string
	)
	flag.StringVar(&opts.Dir, "dir", ".dev", "state directory (etcd data, certificates, kubeconfig, backend database, logs); reused by the next run")
	flag.StringVar(&opts.AssetsDir, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "directory with etcd, kube-apiserver and kube-controller-manager (default $KUBEBUILDER_ASSETS)")
	flag.StringVar(&opts.RepoRoot, "repo-root", ".", "repository checkout with config/crd/bases and config/samples")
	flag.StringVar(&opts.ManagerBinary, "manager-binary", "bin/manager", "the built manager")
	flag.StringVar(&opts.BackendBinary, "backend-binary", "bin/status-backend", "the built reference status backend")
	flag.StringVar(&opts.Backend, "backend", "native", "the backend of the ClusterStatusBackend default: native (the reference backend) or zabbix (a real Zabbix 6.0 API server from hack/zabbix, which sudo make zabbix installs once)")
	flag.StringVar(&opts.ZabbixDir, "zabbix-dir", "", "Zabbix's state directory with --backend=zabbix (default <dir>/zabbix); reused by the next run")
	flag.StringVar(&managerArgs, "manager-args", "", "extra manager flags, space separated (e.g. \"--log-level=debug --sync-interval=10s\")")
	flag.BoolVar(&opts.RestartWorkloads, "restart-workloads", true, "run the manager with --restart-workloads (workloads annotated tokens.statusops.dev/restart-on-rotate roll out when their token changes)")
	opts.Ports.BindFlags(flag.CommandLine)
	flag.Parse()
	opts.ManagerArgs = strings.Fields(managerArgs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A second Ctrl-C while stopping ends this process at once; the kernel then kills the
	// children (they are started with a parent-death signal).
	go func() { <-ctx.Done(); stop() }()
	if err := devenv.Run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}
