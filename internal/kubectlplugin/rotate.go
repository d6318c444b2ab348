package kubectlplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// request is one of the two annotations that ask the operator for a new token.
type request struct {
	verb, past string
	annotation string
	// handledField is the status field where the operator records the value it carried out.
	handledField string
	short        string
}

var (
	rotateRequest = request{
		verb: "rotate", past: "Rotated", annotation: annotationRotate, handledField: "rotationHandled",
		short: "Replace the token now (with the APIToken's rotation grace period) and wait until the new token is in the Secret",
	}
	revokeRequest = request{
		verb: "revoke", past: "Revoked", annotation: annotationRevoke, handledField: "revocationHandled",
		short: "Treat the token as leaked: issue a new one, deactivate every older one at once, and wait until the new token is in the Secret",
	}
)

// rotateResult is the -o json|yaml form of rotate and revoke.
type rotateResult struct {
	Namespace     string `json:"namespace"`
	Name          string `json:"name"`
	Annotation    string `json:"annotation"`
	Value         string `json:"value"`
	Waited        bool   `json:"waited"`
	OldTokenID    string `json:"oldTokenID,omitempty"`
	OldTokenHint  string `json:"oldTokenHint,omitempty"`
	NewTokenID    string `json:"newTokenID,omitempty"`
	NewTokenHint  string `json:"newTokenHint,omitempty"`
	SecretName    string `json:"secretName,omitempty"`
	ElapsedSecond string `json:"elapsed,omitempty"`
}

func newRotateCommand(o *options, r request) *cobra.Command {
	var (
		waitForToken bool
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   r.verb + " NAME",
		Short: r.short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validateOutput(); err != nil {
				return err
			}
			c, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			res, err := o.requestNewToken(cmd.Context(), c, ns, args[0], r, waitForToken, timeout)
			if err != nil {
				return err
			}
			if o.output != "" {
				return printStructured(o.streams.Out, o.output, res)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&waitForToken, "wait", true, "Wait until the operator has put the new token in the Secret.")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "How long to wait; the command fails (exit code 1) after it.")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: json or yaml (printed at the end instead of the progress lines).")
	return cmd
}

// requestNewToken sets the annotation to a fresh value (the current time, so each run asks
// again) and, with wait, follows the APIToken until the operator has recorded that value as
// handled and the Secret holds the new token id.
func (o *options) requestNewToken(ctx context.Context, c client.Client, ns, name string, r request, waitForToken bool, timeout time.Duration) (*rotateResult, error) {
	u, err := getAPIToken(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	res := &rotateResult{
		Namespace: ns, Name: name, Annotation: r.annotation, Waited: waitForToken,
		Value:        o.clock().UTC().Format(time.RFC3339Nano),
		OldTokenID:   str(u.Object, "status", "tokenID"),
		OldTokenHint: str(u.Object, "status", "tokenHint"),
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{r.annotation: res.Value}}})
	if err := c.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, fmt.Errorf("setting %s: %w", r.annotation, err)
	}
	progress := o.streams.ErrOut
	if o.output == "" {
		progress = o.streams.Out
	}
	fprintf(progress, "apitoken.%s/%s annotated %s=%s\n", group, name, r.annotation, res.Value)
	if !waitForToken {
		return res, nil
	}
	start := o.clock()
	fprintf(progress, "Waiting for the new token in Secret %s (old %s)...\n", orNone(str(u.Object, "status", "secretName")), orNone(res.OldTokenID))
	lastLine := ""
	err = wait.PollUntilContextTimeout(ctx, o.pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		cur, err := getAPIToken(ctx, c, ns, name)
		if err != nil {
			if cutByDeadline(ctx, err) {
				// The deadline cut the request short: report the timeout, not the request.
				return false, nil
			}
			return false, err
		}
		line := progressLine(cur.Object)
		if line != lastLine {
			fprintf(progress, "  %s\n", line)
			lastLine = line
		}
		if stalled := findCondition(cur.Object, conditionStalled); stalled != nil && stalled.Status == "True" {
			return false, fmt.Errorf("the APIToken is stalled (%s): %s", stalled.Reason, stalled.Message)
		}
		if str(cur.Object, "status", r.handledField) != res.Value {
			return false, nil
		}
		id, secretName := str(cur.Object, "status", "tokenID"), str(cur.Object, "status", "secretName")
		if id == "" || id == res.OldTokenID || secretName == "" {
			return false, nil
		}
		inSecret, err := secretTokenID(ctx, c, ns, secretName)
		if err != nil && !cutByDeadline(ctx, err) {
			return false, err
		}
		if inSecret != id {
			return false, nil
		}
		res.NewTokenID, res.NewTokenHint, res.SecretName = id, str(cur.Object, "status", "tokenHint"), secretName
		return true, nil
	})
	if err != nil {
		if ctx.Err() == nil && wait.Interrupted(err) {
			err = fmt.Errorf("timed out after %s waiting for the operator to %s %s/%s (last seen: %s)", timeout, r.verb, ns, name, lastLine)
		}
		return nil, err
	}
	res.ElapsedSecond = o.clock().Sub(start).Round(100 * time.Millisecond).String()
	fprintf(progress, "%s: %s (%s) -> %s (%s), now in Secret %s [%s]\n", r.past,
		orNone(res.OldTokenID), orNone(res.OldTokenHint), res.NewTokenID, orNone(res.NewTokenHint), res.SecretName, res.ElapsedSecond)
	return res, nil
}

// progressLine is the phase and Ready condition, printed whenever it changes.
func progressLine(obj map[string]any) string {
	line := "phase " + orNone(str(obj, "status", "phase"))
	if ready := findCondition(obj, conditionReady); ready != nil {
		line += ", Ready " + ready.Status + " (" + orNone(ready.Reason) + ")"
	}
	if id := str(obj, "status", "tokenID"); id != "" {
		line += ", token " + id
	}
	return line
}

// secretTokenID reads only the tokenID key of the token Secret: never the value.
func secretTokenID(ctx context.Context, c client.Client, ns, name string) (string, error) {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	return string(s.Data[secretKeyTokenID]), nil
}

// cutByDeadline: the request failed because the deadline came, or was about to (client-go's
// rate limiter refuses to wait past it before the context itself is done).
func cutByDeadline(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "would exceed context deadline")
}
