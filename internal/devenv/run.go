package devenv

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// readyTimeout bounds the wait for the sample tokens after the manager is ready.
const readyTimeout = 2 * time.Minute

// Run is `make dev`: it starts the environment with the samples, waits until every sample
// APIToken is Ready, prints the commands to try next, and then keeps everything running,
// with the manager's logs on out, until ctx ends (Ctrl-C). It stops every process before
// it returns.
func Run(ctx context.Context, opts Options, out io.Writer) (err error) {
	began := time.Now()
	out = &lockedWriter{w: out}
	opts.ApplySamples = true
	opts.ControlPlaneOnly = false
	// Deployments in the samples (and the developer's own) roll out on a simulated Node.
	opts.Workloads = true
	if opts.KwokDir == "" {
		if opts.KwokDir, err = FindKwokDir(opts.RepoRoot); err != nil {
			return err
		}
	}
	opts.Progress = out
	opts.ManagerOutput = out
	env, err := Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "Interrupted; stopped everything that had started.")
			return nil
		}
		return err
	}
	defer func() {
		fmt.Fprintln(out, "\nStopping the manager, status-backend, kwok, kube-scheduler, kube-controller-manager, kube-apiserver and etcd...")
		if stopErr := env.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
		if err == nil {
			fmt.Fprintf(out, "Stopped. State is kept in %s for the next `make dev`; delete that directory to start from scratch.\n", env.Dir)
		}
	}()
	if err := env.WaitAPITokensReady(ctx, readyTimeout, env.Samples...); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w\nThe manager's log is %s; the other logs are in %s", err, env.ManagerLog(), env.LogDir)
	}
	if err := env.printNextSteps(ctx, out, time.Since(began)); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

var nextSteps = template.Must(template.New("next").Parse(`
==> All {{.Count}} sample APITokens are Ready ({{.Start}} start, {{.Elapsed}}). Everything keeps running until Ctrl-C.

Try it in another terminal:

  export KUBECONFIG={{.Kubeconfig}}
  kubectl get apitokens -A
  kubectl describe apitoken {{.Name}}{{.NamespaceFlag}}

  # Use the {{.Permission}} token like a workload: reading works, writing is refused (403).
  TOKEN=$(kubectl get secret {{.Secret}}{{.NamespaceFlag}} -o jsonpath='{.data.token}' | base64 -d)
  URL=$(kubectl get secret {{.Secret}}{{.NamespaceFlag}} -o jsonpath='{.data.url}' | base64 -d)
  curl -s -w ' HTTP %{http_code}\n' -H "Authorization: Bearer $TOKEN" "$URL/boards"
  curl -s -w ' HTTP %{http_code}\n' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name":"from-curl"}' "$URL/boards"

State: {{.Dir}} (reused by the next make dev). Logs of the other processes: {{.LogDir}}
The manager's logs follow.

`))

// printNextSteps prints the commands to try, built around the first ReadOnly sample token
// (the one whose 403 on POST shows what the permission means).
func (e *Env) printNextSteps(ctx context.Context, out io.Writer, elapsed time.Duration) error {
	if len(e.Samples) == 0 {
		return fmt.Errorf("config/samples has no APIToken to show")
	}
	var chosen *tokensv1alpha1.APIToken
	for _, key := range e.Samples {
		var tok tokensv1alpha1.APIToken
		if err := e.Client.Get(ctx, key, &tok); err != nil {
			return err
		}
		if chosen == nil || (tok.Spec.Permission == tokensv1alpha1.PermissionReadOnly && chosen.Spec.Permission != tokensv1alpha1.PermissionReadOnly) {
			chosen = tok.DeepCopy()
		}
	}
	secret := chosen.Status.SecretName
	if secret == "" {
		secret = chosen.Spec.SecretName
	}
	if secret == "" {
		secret = chosen.Name
	}
	nsFlag := ""
	if chosen.Namespace != "default" {
		nsFlag = " -n " + chosen.Namespace
	}
	start := "cold"
	if e.Reused {
		start = "warm"
	}
	var b strings.Builder
	err := nextSteps.Execute(&b, map[string]any{
		"Count":         len(e.Samples),
		"Start":         start,
		"Elapsed":       elapsed.Round(100 * time.Millisecond),
		"Kubeconfig":    e.Kubeconfig,
		"Name":          chosen.Name,
		"NamespaceFlag": nsFlag,
		"Permission":    chosen.Spec.Permission,
		"Secret":        secret,
		"Dir":           e.Dir,
		"LogDir":        e.LogDir,
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, b.String())
	return err
}
