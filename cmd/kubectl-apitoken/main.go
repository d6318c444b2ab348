// Command kubectl-apitoken is the `kubectl apitoken` plugin: status, rotate, revoke and review
// of APITokens. Install it with `go install ./cmd/kubectl-apitoken` (or copy the binary to a
// directory on PATH); kubectl finds it by its name.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/statusops/apitoken-operator/internal/kubectlplugin"
)

func main() {
	os.Exit(kubectlplugin.Main(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
