// Package kubectlplugin is `kubectl apitoken`: status, rotate, revoke and review of APITokens
// for people at a terminal. cmd/kubectl-apitoken only calls Main.
//
// It reads the operator's objects as unstructured data, so fields that an older (or newer)
// operator does not write show as "-" instead of failing. It never reads a Secret's token key:
// of a token Secret it looks only at the tokenID key, so no value can reach its output.
//
// Conventions are kubectl's: the genericclioptions flags (--kubeconfig, --context,
// --namespace/-n, ...), -o json|yaml for machine-readable output, messages on stderr and
// exit code 1 on any error.
package kubectlplugin

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The operator's API, spelled here rather than imported: the plugin reads whatever version of
// the operator runs, so it depends on names only.
const (
	group                      = "tokens.statusops.dev"
	version                    = "v1alpha1"
	annotationRotate           = "tokens.statusops.dev/rotate-requested-at"
	annotationRevoke           = "tokens.statusops.dev/revoke-requested-at"
	secretKeyTokenID           = "tokenID"
	conditionReady             = "Ready"
	conditionStalled           = "Stalled"
	conditionLeastPrivilege    = "LeastPrivilege"
	defaultWaitTimeout         = 2 * time.Minute
	recentEvents               = 5
	none                       = "-"
	outputJSON, outputYAML     = "json", "yaml"
	kindAPIToken               = "APIToken"
	kindStatusBackend          = "StatusBackend"
	kindClusterStatusBackend   = "ClusterStatusBackend"
	listKindAPIToken           = "APITokenList"
	listKindStatusBackend      = "StatusBackendList"
	listKindClusterStatusBackd = "ClusterStatusBackendList"
)

func gvk(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: group, Version: version, Kind: kind}
}

// options is what every subcommand shares.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	output  string
	// now is injected by tests; nil means time.Now.
	now func() time.Time
	// pollInterval is how often rotate and revoke look at the APIToken.
	pollInterval time.Duration
}

func (o *options) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// clients builds the controller-runtime client (unstructured reads and patches) and the
// clientset (events) from the kubectl flags, plus the namespace they select.
func (o *options) clients() (client.Client, kubernetes.Interface, string, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, nil, "", err
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, nil, "", err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, nil, "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	return c, cs, ns, nil
}

func (o *options) validateOutput() error {
	switch o.output {
	case "", outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,yaml", o.output)
}

// NewCommand is the `kubectl apitoken` command tree.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{flags: genericclioptions.NewConfigFlags(true), streams: streams, pollInterval: 500 * time.Millisecond}
	return newCommand(o)
}

func newCommand(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl apitoken",
		Short: "Inspect, rotate and revoke the API tokens managed by apitoken-operator",
		Long: "kubectl apitoken shows and acts on APITokens (tokens.statusops.dev).\n" +
			"It never prints a token value: only token ids and their last four characters.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(o.streams.Out)
	root.SetErr(o.streams.ErrOut)
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newStatusCommand(o), newRotateCommand(o, rotateRequest), newRotateCommand(o, revokeRequest), newReviewCommand(o))
	return root
}

// Main runs the command line and returns the process exit code: 0 on success, 1 on any
// error (kubectl's convention), with the error on stderr.
func Main(args []string, streams genericiooptions.IOStreams) int {
	return run(&options{flags: genericclioptions.NewConfigFlags(true), streams: streams, pollInterval: 500 * time.Millisecond}, args)
}

func run(o *options, args []string) int {
	cmd := newCommand(o)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(o.streams.ErrOut, "error:", err)
		return 1
	}
	return 0
}

// fprintf writes to the terminal; a failed write to stdout is not worth an error of its own.
func fprintf(w io.Writer, format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
