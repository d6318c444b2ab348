package v1alpha1_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mitchellh/go-wordwrap"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/statusops/apitoken-operator/internal/testenv"
)

// explainWidth is the width kubectl explain wraps a field's description to: its plaintext
// template renders DESCRIPTION with `wrap 76 | indent 4` (and the field list of a parent with
// `wrap (sub 78 2)`), through go-wordwrap, which keeps the description's own line breaks.
const explainWidth = 76

// inherited are descriptions that come from Kubernetes' own types, whose comments we do not
// write (metav1.Condition, metav1.LabelSelector).
var inherited = []string{".conditions.", ".matchExpressions.", ".matchLabels."}

// TestExplainReadsAsProse renders every field description of the generated CRDs as
// `kubectl explain` does and fails on a line that ends mid-sentence although the next word
// would have fitted: a line break kept from the Go doc comment. Doc comments therefore put
// each sentence on its own line (kubectl then wraps it), never a break inside a sentence.
func TestExplainReadsAsProse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs found: %v", err)
	}
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			walkDescriptions(strings.ToLower(crd.Spec.Names.Kind), v.Schema.OpenAPIV3Schema, func(path, desc string) {
				for _, skip := range inherited {
					if strings.Contains(path+".", skip) {
						return
					}
				}
				checked++
				for _, problem := range brokenLines(desc, explainWidth) {
					t.Errorf("kubectl explain %s breaks a sentence:\n    %s\nFix the doc comment: one sentence per line.", path, problem)
				}
			})
		}
	}
	if checked < 20 {
		t.Fatalf("only %d descriptions checked; the walk is broken", checked)
	}
}

// TestBrokenLinesFindsTheIssueExample: the check catches the line break the issue quotes and
// accepts the same text written one sentence per line, or wrapped by kubectl itself.
func TestBrokenLinesFindsTheIssueExample(t *testing.T) {
	broken := "ExpiresAt is the RFC 3339 time at which the token stops working; unset means it never\nexpires. At that second the token is deactivated."
	if got := brokenLines(broken, explainWidth); len(got) != 1 {
		t.Errorf("brokenLines(issue example) = %q, want one finding", got)
	}
	prose := "ExpiresAt is the RFC 3339 time at which the token stops working; unset means it never expires.\nAt that second the token is deactivated and the phase becomes Inactive, which is a long sentence that kubectl wraps by itself."
	if got := brokenLines(prose, explainWidth); len(got) != 0 {
		t.Errorf("brokenLines(prose) = %q, want none", got)
	}
	list := "Deletion policy:\n- Revoke deactivates it.\n- Retain keeps it.\n\nA new paragraph."
	if got := brokenLines(list, explainWidth); len(got) != 0 {
		t.Errorf("brokenLines(list) = %q, want none", got)
	}
}

// walkDescriptions calls fn with kubectl explain's path of every property and its description.
func walkDescriptions(path string, s *apiextensionsv1.JSONSchemaProps, fn func(path, desc string)) {
	if s == nil {
		return
	}
	if s.Description != "" {
		fn(path, s.Description)
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := s.Properties[n]
		walkDescriptions(path+"."+n, &p, fn)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walkDescriptions(path, s.Items.Schema, fn)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walkDescriptions(path, s.AdditionalProperties.Schema, fn)
	}
}

// brokenLines wraps desc as kubectl does and returns each line that stops in the middle of a
// sentence although the following word would have fitted on it.
func brokenLines(desc string, width int) []string {
	lines := strings.Split(wordwrap.WrapString(desc, uint(width)), "\n")
	var out []string
	for i := 0; i+1 < len(lines); i++ {
		line, next := strings.TrimRight(lines[i], " "), strings.TrimSpace(lines[i+1])
		if line == "" || next == "" || strings.HasPrefix(next, "- ") || strings.HasPrefix(next, "* ") {
			continue // paragraph or list item: a break on purpose
		}
		if strings.ContainsAny(line[len(line)-1:], ".:!?") {
			continue // the sentence (or a lead-in) ends here
		}
		first := strings.Fields(next)[0]
		if len(line)+1+len(first) <= width {
			out = append(out, line+"\n    "+lines[i+1])
		}
	}
	return out
}
