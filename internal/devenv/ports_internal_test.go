package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

// TestRetryOnPortTaken: a component whose picked port another process bound first starts
// again on a new port, recorded for the next run; a port set by a flag (or recorded) is
// never changed behind the user's back, and any other failure is not retried.
func TestRetryOnPortTaken(t *testing.T) {
	taken := errors.New("listen tcp 127.0.0.1:2222: bind: address already in use")
	run := func(flag string, failWith error) (*Env, []int, error) {
		e := &Env{Dir: t.TempDir(), Ports: Ports{APIServer: 1111, Backend: 2222}, pickedPorts: map[string]bool{"backend-port": true}}
		var seen []int
		start := func(context.Context) error {
			seen = append(seen, e.Ports.Backend, e.Ports.APIServer)
			if len(seen) == 2 {
				return failWith
			}
			return nil
		}
		err := e.retryOnPortTaken(start, flag)(context.Background())
		return e, seen, err
	}

	g := NewWithT(t)
	e, seen, err := run("backend-port", taken)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(seen).To(HaveLen(4), "started twice")
	g.Expect(seen[2]).NotTo(Equal(2222), "the picked port was picked anew")
	g.Expect(seen[3]).To(Equal(1111), "another component's port is left alone")
	data, err := os.ReadFile(filepath.Join(e.Dir, portsFile))
	g.Expect(err).NotTo(HaveOccurred())
	var recorded Ports
	g.Expect(json.Unmarshal(data, &recorded)).To(Succeed())
	g.Expect(recorded.Backend).To(Equal(seen[2]), "the new port is recorded for the next run")

	_, seen, err = run("apiserver-port", taken)
	g.Expect(err).To(MatchError(taken), "a port the user set (or an earlier run recorded) is not changed")
	g.Expect(seen).To(HaveLen(2))

	other := errors.New("backend exited: bad flag")
	_, seen, err = run("backend-port", other)
	g.Expect(err).To(MatchError(other))
	g.Expect(seen).To(HaveLen(2), "only a taken port is retried")
}
