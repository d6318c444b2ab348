package kubectlplugin

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// review is the -o json|yaml form of `review`: the LeastPrivilege finding of every APIToken
// and the token counts the backends report.
type review struct {
	Tokens   []tokenFinding  `json:"tokens"`
	Backends []backendCounts `json:"backends"`
	// Notes say which backends are not shown because the user may not list them (a
	// namespace's team usually may not list ClusterStatusBackends).
	Notes []string `json:"notes,omitempty"`
}

type tokenFinding struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Permission string `json:"permission,omitempty"`
	// Finding is the LeastPrivilege condition's status and reason; "-" when the operator
	// has not written one (review off, or an operator without it).
	Finding      string `json:"finding"`
	Reason       string `json:"reason,omitempty"`
	Message      string `json:"message,omitempty"`
	LastWriteAt  string `json:"lastWriteAt,omitempty"`
	LastDeniedAt string `json:"lastDeniedAt,omitempty"`
}

type backendCounts struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Ready     string `json:"ready"`
	// The counts are text so that a count the backend status lacks shows as "-".
	Managed             string `json:"managed"`
	UnmanagedActive     string `json:"unmanagedActive"`
	UnmanagedFullAccess string `json:"unmanagedFullAccess"`
	OtherClusters       string `json:"otherClusters"`
}

func newReviewCommand(o *options) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "review [-A]",
		Short: "Table the least-privilege findings of APITokens and the unmanaged tokens the backends report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validateOutput(); err != nil {
				return err
			}
			c, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			if all {
				ns = ""
			}
			rv, err := gatherReview(cmd.Context(), c, ns)
			if err != nil {
				return err
			}
			if o.output != "" {
				return printStructured(o.streams.Out, o.output, rv)
			}
			o.printReview(rv, all)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Review APITokens and StatusBackends of every namespace.")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: json or yaml.")
	return cmd
}

func list(ctx context.Context, c client.Client, listKind, ns string) ([]unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk(listKind))
	if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool {
		a, b := l.Items[i], l.Items[j]
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return l.Items, nil
}

// gatherReview lists APITokens and StatusBackends in ns ("" for all) and every
// ClusterStatusBackend (they serve every namespace). Backends the user may not list are left
// out with a note: the review is for a namespace's own team too, whose RBAC seldom reaches
// cluster-scoped objects. APITokens it may not list are an error: there is nothing to review.
func gatherReview(ctx context.Context, c client.Client, ns string) (*review, error) {
	rv := &review{Tokens: []tokenFinding{}, Backends: []backendCounts{}}
	tokens, err := list(ctx, c, listKindAPIToken, ns)
	if err != nil {
		return nil, fmt.Errorf("listing APITokens: %w", err)
	}
	for _, t := range tokens {
		f := tokenFinding{
			Namespace: t.GetNamespace(), Name: t.GetName(), Finding: none,
			Permission:   str(t.Object, "status", "permission"),
			LastWriteAt:  str(t.Object, "status", "usage", "lastWriteAt"),
			LastDeniedAt: str(t.Object, "status", "usage", "lastDeniedAt"),
		}
		if f.Permission == "" {
			f.Permission = str(t.Object, "spec", "permission")
		}
		if lp := findCondition(t.Object, conditionLeastPrivilege); lp != nil {
			f.Finding, f.Reason, f.Message = lp.Status, lp.Reason, lp.Message
		}
		rv.Tokens = append(rv.Tokens, f)
	}
	for _, k := range []struct{ kind, listKind, ns string }{
		{kindClusterStatusBackend, listKindClusterStatusBackd, ""},
		{kindStatusBackend, listKindStatusBackend, ns},
	} {
		items, err := list(ctx, c, k.listKind, k.ns)
		if apierrors.IsForbidden(err) {
			rv.Notes = append(rv.Notes, fmt.Sprintf("%ss are not shown: %v", k.kind, err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %ss: %w", k.kind, err)
		}
		for _, b := range items {
			ready := none
			if cond := findCondition(b.Object, conditionReady); cond != nil {
				ready = cond.Status
			}
			rv.Backends = append(rv.Backends, backendCounts{
				Kind: k.kind, Namespace: b.GetNamespace(), Name: b.GetName(), Ready: ready,
				Managed:             count(b.Object, "status", "tokens", "managed"),
				UnmanagedActive:     count(b.Object, "status", "tokens", "unmanagedActive"),
				UnmanagedFullAccess: count(b.Object, "status", "tokens", "unmanagedFullAccess"),
				OtherClusters:       count(b.Object, "status", "tokens", "otherClusters"),
			})
		}
	}
	return rv, nil
}

func (o *options) printReview(rv *review, all bool) {
	now := o.clock()
	w := tabwriter.NewWriter(o.streams.Out, 0, 4, 3, ' ', 0)
	if len(rv.Tokens) == 0 {
		fprintf(w, "No APITokens found.\n")
	} else {
		if all {
			fprintf(w, "NAMESPACE\t")
		}
		fprintf(w, "APITOKEN\tPERMISSION\tLEAST PRIVILEGE\tREASON\tLAST WRITE\tLAST DENIED\n")
		for _, t := range rv.Tokens {
			if all {
				fprintf(w, "%s\t", t.Namespace)
			}
			fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, orNone(t.Permission), t.Finding, orNone(t.Reason), age(t.LastWriteAt, now), age(t.LastDeniedAt, now))
		}
	}
	fprintf(w, "\n")
	switch {
	case len(rv.Backends) == 0 && len(rv.Notes) > 0:
		fprintf(w, "No backends found (some were not listed: see the notes).\n")
	case len(rv.Backends) == 0:
		fprintf(w, "No backends found.\n")
	default:
		fprintf(w, "BACKEND\tREADY\tMANAGED\tUNMANAGED ACTIVE\tUNMANAGED FULLACCESS\tOTHER CLUSTERS\n")
		for _, b := range rv.Backends {
			ref := "clusterstatusbackend/" + b.Name
			if b.Kind == kindStatusBackend {
				ref = "statusbackend/" + b.Name
				if all {
					ref = b.Namespace + "/" + ref
				}
			}
			fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", ref, b.Ready, b.Managed, b.UnmanagedActive, b.UnmanagedFullAccess, b.OtherClusters)
		}
	}
	_ = w.Flush()
	for _, n := range rv.Notes {
		fprintf(o.streams.ErrOut, "Note: %s\n", n)
	}
	// The findings' messages say what to change; print those that are not True.
	for _, t := range rv.Tokens {
		if t.Finding == "False" && t.Message != "" {
			fprintf(o.streams.Out, "\n%s/%s: %s", t.Namespace, t.Name, t.Message)
		}
	}
	for _, t := range rv.Tokens {
		if t.Finding == "False" && t.Message != "" {
			fprintf(o.streams.Out, "\n")
			break
		}
	}
}
