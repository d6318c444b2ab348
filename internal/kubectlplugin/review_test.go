package kubectlplugin

import (
	"bytes"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// TestReviewReadsBackendTokenCounts: the counts come from status.tokens when the operator
// writes them (the running CRD may not have the field yet, so this case is checked on the
// object alone), and an absent count is "-", never 0.
func TestReviewReadsBackendTokenCounts(t *testing.T) {
	g := NewWithT(t)
	b := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "default"},
		"status": map[string]any{
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "PingSucceeded"}},
			"tokens":     map[string]any{"managed": int64(12), "unmanagedActive": int64(3), "unmanagedFullAccess": int64(0)},
		},
	}}
	g.Expect(count(b.Object, "status", "tokens", "managed")).To(Equal("12"))
	g.Expect(count(b.Object, "status", "tokens", "unmanagedFullAccess")).To(Equal("0"))
	g.Expect(count(b.Object, "status", "tokens", "otherClusters")).To(Equal("-"))

	var out bytes.Buffer
	o := &options{streams: genericiooptions.IOStreams{Out: &out}, now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }}
	o.printReview(&review{Backends: []backendCounts{{
		Kind: kindClusterStatusBackend, Name: "default", Ready: "True",
		Managed: "12", UnmanagedActive: "3", UnmanagedFullAccess: "0", OtherClusters: "-",
	}}}, false)
	g.Expect(out.String()).To(MatchRegexp(`(?m)^clusterstatusbackend/default\s+True\s+12\s+3\s+0\s+-$`))
}
