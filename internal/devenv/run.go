package devenv

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
		if opts.Backend == tokensv1alpha1.DriverZabbix {
			fmt.Fprintln(out, "\nStopping the manager, kwok, kube-scheduler, kube-controller-manager, kube-apiserver, etcd and Zabbix...")
		} else {
			fmt.Fprintln(out, "\nStopping the manager, status-backend, kwok, kube-scheduler, kube-controller-manager, kube-apiserver and etcd...")
		}
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
		return fmt.Errorf("%w\n%s\nThe manager's log is %s; the other logs are in %s", err, env.defaultBackendReadiness(ctx), env.ManagerLog(), env.LogDir)
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

// zabbixNextSteps are the commands to try with Backend zabbix. Zabbix 6.0 reads the token from
// the request body's "auth" and ignores an Authorization: Bearer header (6.4 and later take
// the header, 7.x only the header), so the commands put it in the body.
var zabbixNextSteps = template.Must(template.New("next-zabbix").Parse(`
==> All {{.Count}} sample APITokens are Ready ({{.Start}} start, {{.Elapsed}}). Everything keeps running until Ctrl-C.

Try it in another terminal:

  export KUBECONFIG={{.Kubeconfig}}
  kubectl get apitokens -A
  kubectl get clusterstatusbackends
  kubectl describe apitoken {{.Name}}{{.NamespaceFlag}}

  # Use the {{.Permission}} token like a workload. Zabbix {{.ZabbixVersion}} takes the token in the body ("auth"), not as a Bearer header.
  API={{.APIURL}}
  TOKEN=$(kubectl get secret {{.Secret}}{{.NamespaceFlag}} -o jsonpath='{.data.token}' | base64 -d)
  # Reading works:
  curl -s -w '\n' -H 'Content-Type: application/json-rpc' -d '{"jsonrpc":"2.0","method":"host.get","params":{"output":["hostid","host"]},"auth":"'"$TOKEN"'","id":1}' "$API"
  # Writing is refused (its user's role allows only *.get): No permissions to call "dashboard.create".
  curl -s -w '\n' -H 'Content-Type: application/json-rpc' -d '{"jsonrpc":"2.0","method":"dashboard.create","params":{"name":"from-curl-'"$(date +%s)"'","pages":[{}]},"auth":"'"$TOKEN"'","id":1}' "$API"
{{- if .FullAccessSecret}}

  # The FullAccess token writes (dashboard.create works), but may not mint tokens: No permissions to call "token.create".
  FULL=$(kubectl get secret {{.FullAccessSecret}}{{.FullAccessNamespaceFlag}} -o jsonpath='{.data.token}' | base64 -d)
  curl -s -w '\n' -H 'Content-Type: application/json-rpc' -d '{"jsonrpc":"2.0","method":"dashboard.create","params":{"name":"from-curl-'"$(date +%s)"'","pages":[{}]},"auth":"'"$FULL"'","id":1}' "$API"
  curl -s -w '\n' -H 'Content-Type: application/json-rpc' -d '{"jsonrpc":"2.0","method":"token.create","params":{"name":"mine"},"auth":"'"$FULL"'","id":1}' "$API"
{{- end}}

  # The tokens as Zabbix's Super admin sees them (description: the APIToken's namespace/name; status 1: disabled).
  ADMIN=$(kubectl -n {{.AdminNamespace}} get secret {{.AdminSecret}} -o jsonpath='{.data.token}' | base64 -d)
  curl -s -w '\n' -H 'Content-Type: application/json-rpc' -d '{"jsonrpc":"2.0","method":"token.get","params":{"output":["tokenid","name","description","userid","status","expires_at","lastaccess"]},"auth":"'"$ADMIN"'","id":1}' "$API"

State: {{.Dir}} (reused by the next make dev BACKEND=zabbix); Zabbix's in {{.ZabbixDir}} (php.log, pg/postgres.log).
Logs of the other processes: {{.LogDir}}
The manager's logs follow.

`))

// printNextSteps prints the commands to try, built around the first ReadOnly sample token
// (the one whose refused write shows what the permission means).
func (e *Env) printNextSteps(ctx context.Context, out io.Writer, elapsed time.Duration) error {
	if len(e.Samples) == 0 {
		return fmt.Errorf("config/samples has no APIToken to show")
	}
	var chosen, fullAccess *tokensv1alpha1.APIToken
	for _, key := range e.Samples {
		var tok tokensv1alpha1.APIToken
		if err := e.Client.Get(ctx, key, &tok); err != nil {
			return err
		}
		if chosen == nil || (tok.Spec.Permission == tokensv1alpha1.PermissionReadOnly && chosen.Spec.Permission != tokensv1alpha1.PermissionReadOnly) {
			chosen = tok.DeepCopy()
		}
		if fullAccess == nil && tok.Spec.Permission == tokensv1alpha1.PermissionFullAccess {
			fullAccess = tok.DeepCopy()
		}
	}
	start := "cold"
	if e.Reused {
		start = "warm"
	}
	data := map[string]any{
		"Count":         len(e.Samples),
		"Start":         start,
		"Elapsed":       elapsed.Round(100 * time.Millisecond),
		"Kubeconfig":    e.Kubeconfig,
		"Name":          chosen.Name,
		"NamespaceFlag": namespaceFlag(chosen),
		"Permission":    chosen.Spec.Permission,
		"Secret":        secretOf(chosen),
		"Dir":           e.Dir,
		"LogDir":        e.LogDir,
	}
	tmpl := nextSteps
	if e.Zabbix != nil {
		tmpl = zabbixNextSteps
		data["ZabbixVersion"] = e.Zabbix.Version
		data["APIURL"] = e.Zabbix.APIURL
		data["ZabbixDir"] = e.Zabbix.Dir
		data["AdminNamespace"] = AdminNamespace
		data["AdminSecret"] = ZabbixAdminSecretName
		if fullAccess != nil {
			data["FullAccessSecret"] = secretOf(fullAccess)
			data["FullAccessNamespaceFlag"] = namespaceFlag(fullAccess)
		}
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return err
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// secretOf is the name of the Secret that holds tok's token.
func secretOf(tok *tokensv1alpha1.APIToken) string {
	switch {
	case tok.Status.SecretName != "":
		return tok.Status.SecretName
	case tok.Spec.SecretName != "":
		return tok.Spec.SecretName
	}
	return tok.Name
}

// namespaceFlag is kubectl's -n for tok, empty in the default namespace.
func namespaceFlag(tok *tokensv1alpha1.APIToken) string {
	if tok.Namespace == "default" {
		return ""
	}
	return " -n " + tok.Namespace
}

// defaultBackendReadiness says whether the ClusterStatusBackend "default" is Ready and why
// not, for the message of a run whose tokens did not become Ready.
func (e *Env) defaultBackendReadiness(ctx context.Context) string {
	var b tokensv1alpha1.ClusterStatusBackend
	if err := e.Client.Get(ctx, client.ObjectKey{Name: DefaultBackendName}, &b); err != nil {
		return fmt.Sprintf("ClusterStatusBackend %s: %v", DefaultBackendName, err)
	}
	cond := meta.FindStatusCondition(b.Status.Conditions, tokensv1alpha1.ConditionReady)
	if cond == nil {
		return fmt.Sprintf("ClusterStatusBackend %s has no Ready condition yet.", DefaultBackendName)
	}
	return fmt.Sprintf("ClusterStatusBackend %s: Ready=%s %s: %s", DefaultBackendName, cond.Status, cond.Reason, cond.Message)
}
