package install

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuncLines is issue 28's bound on a function of controllers/..., counted from the func
// line to the closing brace.
const maxFuncLines = 60

// TestNoLongFunctionsInControllers keeps every function of controllers/... (tests aside)
// within maxFuncLines, so one pass stays readable as gather, decide, act and report.
func TestNoLongFunctionsInControllers(t *testing.T) {
	long, err := longFunctions(filepath.Join(repoPath(), "controllers"), maxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range long {
		t.Errorf("%s: split it (at most %d lines)", l, maxFuncLines)
	}
}

// TestLongFunctionsAreFound: the check finds a function one line over the bound, and passes
// one at the bound.
func TestLongFunctionsAreFound(t *testing.T) {
	dir := t.TempDir()
	body := func(name string, lines int) string {
		return "func " + name + "() {\n" + strings.Repeat("\t_ = 1\n", lines-2) + "}\n"
	}
	src := "package x\n\n" + body("atBound", maxFuncLines) + "\n" + body("over", maxFuncLines+1)
	if err := writeFile(filepath.Join(dir, "x.go"), src); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, "x_test.go"), "package x\n\n"+body("longTest", 200)); err != nil {
		t.Fatal(err)
	}
	long, err := longFunctions(dir, maxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	if len(long) != 1 || !strings.Contains(long[0], "over has 61 lines") {
		t.Fatalf("found %q, want only over with 61 lines", long)
	}
}

// longFunctions lists the functions of the non-test Go files under dir longer than max lines.
func longFunctions(dir string, max int) ([]string, error) {
	fset := token.NewFileSet()
	var long []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
			if n := end.Line - start.Line + 1; n > max {
				long = append(long, fmt.Sprintf("%s:%d: %s has %d lines", p, start.Line, fd.Name.Name, n))
			}
		}
		return nil
	})
	return long, err
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
