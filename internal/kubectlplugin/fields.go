package kubectlplugin

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// str is the string at path, or "" when the field is absent or not a string.
func str(obj map[string]any, path ...string) string {
	s, _, _ := unstructured.NestedString(obj, path...)
	return s
}

// orNone shows an absent value as "-", as kubectl's tables do.
func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// count is the integer at path as text, or "-" when absent (an operator that does not write it).
func count(obj map[string]any, path ...string) string {
	v, found, _ := unstructured.NestedFieldNoCopy(obj, path...)
	if !found || v == nil {
		return none
	}
	switch n := v.(type) {
	case int64:
		return fmt.Sprint(n)
	case float64:
		return fmt.Sprint(int64(n))
	}
	return fmt.Sprint(v)
}

// condition is one metav1.Condition read from status.conditions.
type condition struct {
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// findCondition returns the condition of that type, or nil.
func findCondition(obj map[string]any, typ string) *condition {
	conds, _, _ := unstructured.NestedSlice(obj, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || str(m, "type") != typ {
			continue
		}
		return &condition{Status: str(m, "status"), Reason: str(m, "reason"), Message: str(m, "message")}
	}
	return nil
}

// when renders an RFC 3339 time with kubectl's relative age ("2026-11-27T02:49:12Z (5m ago)").
func when(ts string, now time.Time) string {
	if ts == "" {
		return none
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return ts
	}
	if d := t.Sub(now); d > 0 {
		return fmt.Sprintf("%s (in %s)", ts, duration.HumanDuration(d))
	}
	return fmt.Sprintf("%s (%s ago)", ts, duration.HumanDuration(now.Sub(t)))
}

// age is kubectl's AGE column for an RFC 3339 time.
func age(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if ts == "" || err != nil {
		return none
	}
	return duration.HumanDuration(now.Sub(t))
}

// printStructured writes v as -o json or -o yaml.
func printStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == outputYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}
