package install

import (
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestDockerfileCopiesEveryManagerPackage: the image cannot be built here, so check statically
// that the Dockerfile copies every directory the manager's own packages live in, and that the
// image runs as the nonroot user the Deployment's securityContext expects.
func TestDockerfileCopiesEveryManagerPackage(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(repoPath("Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())
	dockerfile := string(data)

	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY ([a-z0-9_-]+)/ `).FindAllStringSubmatch(dockerfile, -1) {
		copied[m[1]] = true
	}
	g.Expect(copied).NotTo(BeEmpty())

	const module = "github.com/statusops/apitoken-operator/"
	deps := strings.Fields(string(runGo(t, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/manager")))
	var own []string
	for _, p := range deps {
		if rest, ok := strings.CutPrefix(p, module); ok {
			own = append(own, rest)
			top, _, _ := strings.Cut(rest, "/")
			g.Expect(copied).To(HaveKey(top), "the manager imports %s, but the Dockerfile does not COPY %s/", p, top)
		}
	}
	g.Expect(own).To(ContainElement("cmd/manager"))

	g.Expect(dockerfile).To(MatchRegexp(`(?m)^FROM gcr\.io/distroless/static:nonroot$`))
	g.Expect(dockerfile).To(MatchRegexp(`(?m)^USER 65532:65532$`))
	g.Expect(dockerfile).To(MatchRegexp(`(?m)^ENTRYPOINT \["/manager"\]$`))
	g.Expect(dockerfile).To(ContainSubstring("CGO_ENABLED=0"))

	ignore, err := os.ReadFile(repoPath(".dockerignore"))
	g.Expect(err).NotTo(HaveOccurred())
	for dir := range copied {
		g.Expect(string(ignore)).To(ContainSubstring("!"+dir+"/"), ".dockerignore must let %s/ into the build context", dir)
	}
}
