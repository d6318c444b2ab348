package kubectlplugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// tokenStatus is what `status` shows, and its -o json|yaml form. It holds ids and hints,
// never a token value.
type tokenStatus struct {
	Namespace    string        `json:"namespace"`
	Name         string        `json:"name"`
	Phase        string        `json:"phase,omitempty"`
	Permission   string        `json:"permission,omitempty"`
	Ready        *condition    `json:"ready,omitempty"`
	TokenID      string        `json:"tokenID,omitempty"`
	TokenHint    string        `json:"tokenHint,omitempty"`
	SecretName   string        `json:"secretName,omitempty"`
	Backend      string        `json:"backend,omitempty"`
	IssuedAt     string        `json:"issuedAt,omitempty"`
	ExpiresAt    string        `json:"expiresAt,omitempty"`
	LastUsedAt   string        `json:"lastUsedAt,omitempty"`
	RenewalTime  string        `json:"renewalTime,omitempty"`
	Predecessors []predecessor `json:"predecessors"`
	Review       *condition    `json:"review,omitempty"`
	Events       []event       `json:"events"`
}

// predecessor is a replaced token that is still active while it drains (status.previousTokens).
type predecessor struct {
	TokenID      string `json:"tokenID"`
	TokenHint    string `json:"tokenHint,omitempty"`
	SupersededAt string `json:"supersededAt,omitempty"`
	RetireAt     string `json:"retireAt,omitempty"`
	LastUsedAt   string `json:"lastUsedAt,omitempty"`
}

type event struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Time    string `json:"time"`
	Count   int32  `json:"count,omitempty"`
	Message string `json:"message"`
}

func newStatusCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Summarise an APIToken: token, permission, expiry, last use, draining predecessors, review finding, recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validateOutput(); err != nil {
				return err
			}
			c, cs, ns, err := o.clients()
			if err != nil {
				return err
			}
			st, err := gatherStatus(cmd.Context(), c, cs, ns, args[0])
			if err != nil {
				return err
			}
			if o.output != "" {
				return printStructured(o.streams.Out, o.output, st)
			}
			o.printStatus(st)
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: json or yaml.")
	return cmd
}

func getAPIToken(ctx context.Context, c client.Client, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk(kindAPIToken))
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return nil, err
	}
	return u, nil
}

func gatherStatus(ctx context.Context, c client.Client, cs kubernetes.Interface, ns, name string) (*tokenStatus, error) {
	u, err := getAPIToken(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	obj := u.Object
	st := &tokenStatus{
		Namespace: ns, Name: name,
		Phase:       str(obj, "status", "phase"),
		Permission:  str(obj, "status", "permission"),
		Ready:       findCondition(obj, conditionReady),
		TokenID:     str(obj, "status", "tokenID"),
		TokenHint:   str(obj, "status", "tokenHint"),
		SecretName:  str(obj, "status", "secretName"),
		IssuedAt:    str(obj, "status", "issuedAt"),
		ExpiresAt:   str(obj, "status", "expiresAt"),
		LastUsedAt:  str(obj, "status", "lastUsedAt"),
		RenewalTime: str(obj, "status", "renewalTime"),
		Review:      findCondition(obj, conditionLeastPrivilege),
	}
	if st.Permission == "" {
		st.Permission = str(obj, "spec", "permission")
	}
	if kind := str(obj, "status", "backend", "kind"); kind != "" {
		st.Backend = kind + "/" + str(obj, "status", "backend", "name")
	} else if kind := str(obj, "spec", "backendRef", "kind"); kind != "" {
		st.Backend = kind + "/" + str(obj, "spec", "backendRef", "name")
	}
	prev, _, _ := unstructured.NestedSlice(obj, "status", "previousTokens")
	st.Predecessors = []predecessor{}
	for _, p := range prev {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		st.Predecessors = append(st.Predecessors, predecessor{
			TokenID: str(m, "tokenID"), TokenHint: str(m, "tokenHint"),
			SupersededAt: str(m, "supersededAt"), RetireAt: str(m, "retireAt"), LastUsedAt: str(m, "lastUsedAt"),
		})
	}
	st.Events, err = eventsOf(ctx, cs, ns, string(u.GetUID()))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// eventsOf lists the most recent Events about the object, newest first, as kubectl describe
// finds them (by involvedObject.uid).
func eventsOf(ctx context.Context, cs kubernetes.Interface, ns, uid string) ([]event, error) {
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", uid).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	items := list.Items
	sort.SliceStable(items, func(i, j int) bool { return eventTime(&items[i]).After(eventTime(&items[j]).Time) })
	out := []event{}
	for i := range items {
		if len(out) == recentEvents {
			break
		}
		e := &items[i]
		out = append(out, event{Type: e.Type, Reason: e.Reason, Time: eventTime(e).UTC().Format("2006-01-02T15:04:05Z"), Count: e.Count, Message: e.Message})
	}
	return out, nil
}

func eventTime(e *corev1.Event) metav1.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return metav1.Time{Time: e.Series.LastObservedTime.Time}
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp
	case !e.EventTime.IsZero():
		return metav1.Time{Time: e.EventTime.Time}
	}
	return e.CreationTimestamp
}

func (o *options) printStatus(st *tokenStatus) {
	now := o.clock()
	w := tabwriter.NewWriter(o.streams.Out, 0, 4, 2, ' ', 0)
	ready := none
	if st.Ready != nil {
		ready = st.Ready.Status + " (" + orNone(st.Ready.Reason) + ")"
	}
	token := none
	if st.TokenID != "" {
		token = st.TokenID + " (" + orNone(st.TokenHint) + ")"
	}
	expires := when(st.ExpiresAt, now)
	if st.ExpiresAt == "" && st.TokenID != "" {
		expires = "never"
	}
	lastUsed := when(st.LastUsedAt, now)
	if st.LastUsedAt == "" && st.TokenID != "" {
		lastUsed = "never"
	}
	fprintf(w, "APIToken:\t%s/%s\n", st.Namespace, st.Name)
	fprintf(w, "Phase:\t%s\n", orNone(st.Phase))
	if st.Ready != nil && st.Ready.Message != "" {
		ready += ": " + st.Ready.Message
	}
	fprintf(w, "Ready:\t%s\n", ready)
	fprintf(w, "Permission:\t%s\n", orNone(st.Permission))
	fprintf(w, "Token:\t%s\n", token)
	fprintf(w, "Secret:\t%s\n", orNone(st.SecretName))
	fprintf(w, "Backend:\t%s\n", orNone(st.Backend))
	fprintf(w, "Issued:\t%s\n", when(st.IssuedAt, now))
	fprintf(w, "Expires:\t%s\n", expires)
	fprintf(w, "Last used:\t%s\n", lastUsed)
	if st.RenewalTime != "" {
		fprintf(w, "Renewal:\t%s\n", when(st.RenewalTime, now))
	}
	if len(st.Predecessors) == 0 {
		fprintf(w, "Predecessors:\tnone draining\n")
	} else {
		fprintf(w, "Predecessors:\t%d draining\n", len(st.Predecessors))
		for _, p := range st.Predecessors {
			fprintf(w, "\t%s (%s) superseded %s, retires %s, last used %s\n", p.TokenID, orNone(p.TokenHint),
				age(p.SupersededAt, now)+" ago", when(p.RetireAt, now), when(p.LastUsedAt, now))
		}
	}
	switch {
	case st.Review == nil:
		fprintf(w, "Review:\t-\n")
	case st.Review.Message != "":
		fprintf(w, "Review:\t%s (%s): %s\n", st.Review.Status, orNone(st.Review.Reason), st.Review.Message)
	default:
		fprintf(w, "Review:\t%s (%s)\n", st.Review.Status, orNone(st.Review.Reason))
	}
	if len(st.Events) == 0 {
		fprintf(w, "Events:\t<none>\n")
		_ = w.Flush()
		return
	}
	fprintf(w, "Events:\t(newest first)\n")
	_ = w.Flush()
	w = tabwriter.NewWriter(o.streams.Out, 0, 4, 3, ' ', 0)
	fprintf(w, "  TYPE\tREASON\tAGE\tMESSAGE\n")
	for _, e := range st.Events {
		fprintf(w, "  %s\t%s\t%s\t%s\n", e.Type, e.Reason, age(e.Time, now), strings.TrimSpace(e.Message))
	}
	_ = w.Flush()
}
