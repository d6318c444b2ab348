package install

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// The allowed directions of imports between the module's packages (controllers/doc.go
// draws the map). A package may import the module packages its entry lists, and a listed
// prefix ending in "/..." admits that package and every package below it. Tests are exempt.
const module = "github.com/statusops/apitoken-operator"

var allowedImports = map[string][]string{
	"cmd/manager":                 {"controllers", "internal/logging", "internal/memlimit", "internal/metrics"},
	"controllers":                 {"controllers/...", "internal/metricsauth", "internal/logging", "internal/metrics", "internal/backend/...", "api/..."},
	"controllers/apitoken":        {"controllers/apitoken/policy", "controllers/registry", "controllers/inventory", "controllers/backendkey", "controllers/secretcache", "controllers/workloadrestart", "internal/backend", "internal/metrics", "api/..."},
	"controllers/statusbackend":   {"controllers/registry", "controllers/inventory", "controllers/backendkey", "controllers/secretcache", "internal/backend", "internal/metrics", "api/..."},
	"controllers/workloadrestart": {"internal/metrics", "api/..."},
	"controllers/inventory":       {"controllers/registry", "controllers/backendkey", "internal/backend", "api/..."},
	"controllers/registry":        {"controllers/backendkey", "internal/backend", "internal/metrics", "api/..."},
	"controllers/apitoken/policy": {"controllers/backendkey", "controllers/secretcache", "internal/backend", "api/..."},
	"controllers/backendkey":      {"api/..."},
	"controllers/secretcache":     {"api/..."},
}

// importProblem says what is wrong with one import of pkg (module-relative paths for the
// module's own packages, full paths otherwise), or "".
func importProblem(pkg, imp string, selectors []string) string {
	own, isOwn := strings.CutPrefix(imp, module+"/")
	switch {
	case strings.HasPrefix(pkg, "internal/backend") && !isOwn && (strings.HasPrefix(imp, "k8s.io/") || strings.HasPrefix(imp, "sigs.k8s.io/")):
		return "internal/backend (the port and its drivers) imports no Kubernetes package"
	case strings.HasPrefix(pkg, "internal/backend") && isOwn && (own == "api" || strings.HasPrefix(own, "api/") || strings.HasPrefix(own, "controllers")):
		return "internal/backend imports neither the API nor the controllers"
	case strings.HasPrefix(pkg, "internal/") && isOwn && (own == "controllers" || strings.HasPrefix(own, "controllers/")):
		return "production code under internal/ imports no controllers package"
	case pkg == "controllers/apitoken/policy" && (imp == "context" || strings.HasPrefix(imp, "sigs.k8s.io/controller-runtime") || strings.HasPrefix(imp, "k8s.io/client-go")):
		return "policy imports no client and no context"
	case pkg == "controllers/apitoken/policy" && slices.Contains(selectors, "time.Now"):
		return "policy calls no clock (time.Now)"
	case isOwn && own == "controllers" && !strings.HasPrefix(pkg, "cmd/"):
		return "only cmd/ (and tests) import the controllers root"
	}
	allowed, ruled := allowedImports[pkg]
	if !isOwn || !ruled {
		return ""
	}
	for _, a := range allowed {
		if a == own || (strings.HasSuffix(a, "/...") && (own == strings.TrimSuffix(a, "/...") || strings.HasPrefix(own, strings.TrimSuffix(a, "...")))) {
			return ""
		}
	}
	return pkg + " may not import " + own
}

// TestImportRuleCases: each forbidden direction is caught, and an allowed one is not.
func TestImportRuleCases(t *testing.T) {
	cases := []struct {
		name, pkg, imp string
		selectors      []string
		forbidden      bool
	}{
		{"a reconciler imports another", "controllers/apitoken", module + "/controllers/statusbackend", nil, true},
		{"a reconciler imports the other way", "controllers/statusbackend", module + "/controllers/apitoken", nil, true},
		{"internal imports the controllers root", "internal/metrics", module + "/controllers", nil, true},
		{"a shared package imports the root", "controllers/registry", module + "/controllers", nil, true},
		{"policy imports a client", "controllers/apitoken/policy", "sigs.k8s.io/controller-runtime/pkg/client", nil, true},
		{"policy imports context", "controllers/apitoken/policy", "context", nil, true},
		{"policy imports the registry", "controllers/apitoken/policy", module + "/controllers/registry", nil, true},
		{"policy calls time.Now", "controllers/apitoken/policy", "time", []string{"time.Now"}, true},
		{"internal imports a controllers package", "internal/devenv", module + "/controllers/registry", nil, true},
		{"the port imports Kubernetes", "internal/backend", "k8s.io/apimachinery/pkg/types", nil, true},
		{"a driver imports Kubernetes", "internal/backend/zabbix", "sigs.k8s.io/controller-runtime/pkg/client", nil, true},
		{"a driver imports the API", "internal/backend/native", module + "/api/v1alpha1", nil, true},
		{"cmd imports the root", "cmd/manager", module + "/controllers", nil, false},
		{"apitoken imports policy", "controllers/apitoken", module + "/controllers/apitoken/policy", nil, false},
		{"policy reads time", "controllers/apitoken/policy", "time", []string{"time.Duration"}, false},
		{"the root imports a driver registry", "controllers", module + "/internal/backend/drivers", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := importProblem(c.pkg, c.imp, c.selectors)
			NewWithT(t).Expect(got != "").To(Equal(c.forbidden), "problem: %q", got)
		})
	}
}

// TestImportDirections holds every production package of the module to the rules above.
func TestImportDirections(t *testing.T) {
	g := NewWithT(t)
	root := repoPath()
	imports := map[string]map[string]bool{}
	selectors := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (strings.HasPrefix(rel, "hack") || strings.HasPrefix(rel, "bin") || strings.HasPrefix(rel, ".") && rel != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, is := range f.Imports {
			path, _ := strconv.Unquote(is.Path.Value)
			imports[pkg][path] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := s.X.(*ast.Ident); ok {
					selectors[pkg] = append(selectors[pkg], x.Name+"."+s.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	g.Expect(err).NotTo(HaveOccurred())
	for pkg := range allowedImports {
		g.Expect(imports).To(HaveKey(pkg), "a ruled package is missing: the rules are stale")
	}
	var problems []string
	for pkg, imps := range imports {
		for imp := range imps {
			if p := importProblem(pkg, imp, selectors[pkg]); p != "" {
				problems = append(problems, pkg+" -> "+imp+": "+p)
			}
		}
	}
	slices.Sort(problems)
	g.Expect(problems).To(BeEmpty())
}

// clientPackages are the packages that talk to an API server; policy must not compile them,
// even through a package it imports (its tests then build no client code at all).
var clientPackages = []string{
	"sigs.k8s.io/controller-runtime/pkg/client",
	"sigs.k8s.io/controller-runtime/pkg/cache",
	"k8s.io/client-go/rest",
	"k8s.io/client-go/kubernetes",
	"k8s.io/client-go/tools/cache",
}

// TestPolicyCompilesNoClient: no package policy or its tests depend on, directly or not,
// is a client package.
func TestPolicyCompilesNoClient(t *testing.T) {
	g := NewWithT(t)
	out, err := exec.Command("go", "list", "-deps", "-test", "../../controllers/apitoken/policy/...").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)
	deps := strings.Fields(string(out))
	g.Expect(deps).To(ContainElement(module+"/controllers/apitoken/policy"), "the listing is of policy")
	var found []string
	for _, d := range deps {
		if slices.Contains(clientPackages, d) {
			found = append(found, d)
		}
	}
	g.Expect(found).To(BeEmpty(), "policy compiles client code through its imports")
}
