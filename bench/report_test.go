package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFillComparisons: a compare section gets one column per named file with the figures
// that file holds, "–" where it did not measure one; text outside the markers is kept, and a
// second run gives the same document (the old table is replaced, not appended to).
func TestFillComparisons(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", `{"commit":"aaa","ratio_to_floor":1.234,"backend_writes_per_token":1,"restart_backend_writes":0,"cpu_seconds_ready":{"manager":8.74,"bench":6.5}}`)
	write("b.json", `{"commit":"bbb","ratio_to_floor":1.5,"backend_writes_per_token":1}`)
	doc := "before\n<!-- bench:compare a.json b.json -->\nstale\n<!-- bench:compare-end -->\nafter\n"
	got, err := fillComparisons(root, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"before\n<!-- bench:compare a.json b.json -->\n| metric | `a.json` | `b.json` |",
		"| `ratio_to_floor` | 1.23 | 1.50 |",
		"| `backend_writes_per_token` | 1.00 | 1.00 |",
		"| `restart_backend_writes` | 0 | – |",
		"| commit | `aaa` | `bbb` |",
		"| `cpu_seconds_ready` | bench 6.5, manager 8.74 | – |",
		"<!-- bench:compare-end -->\nafter\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "stale") || strings.Contains(string(got), "ready_seconds") {
		t.Errorf("the old table or an unmeasured row is left:\n%s", got)
	}
	again, err := fillComparisons(root, got)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(got) {
		t.Errorf("a second run changed the document:\n%s", again)
	}
	write("frag.md", "| a | 1 |\n")
	inc, err := fillComparisons(root, []byte("x\n<!-- bench:include frag.md -->\nold\n<!-- bench:include-end -->\ny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "x\n<!-- bench:include frag.md -->\n| a | 1 |\n<!-- bench:include-end -->\ny\n"; string(inc) != want {
		t.Errorf("include gave %q, want %q", inc, want)
	}
	if _, err := fillComparisons(root, []byte("<!-- bench:compare missing.json -->\n<!-- bench:compare-end -->")); err == nil {
		t.Error("a missing results file is not an error")
	}
}
