package devenv

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestWaitUntilReportsTheLastCheckBeforeTheDeadline: when the last check is cut short by the
// deadline, the timeout names what the check before it found, not the context error (make dev
// reported "client rate limiter Wait returned an error: ... would exceed context deadline"
// instead of which APITokens were not Ready).
func TestWaitUntilReportsTheLastCheckBeforeTheDeadline(t *testing.T) {
	g := NewWithT(t)
	calls := 0
	err := waitUntil(t.Context(), nil, 300*time.Millisecond, "the sample to be Ready", func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return errors.New("not Ready: default/sample (Ready=False BackendNotReady)")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	g.Expect(calls).To(BeNumerically(">=", 2))
	g.Expect(err).To(MatchError(And(
		ContainSubstring("timed out after 300ms waiting for the sample to be Ready"),
		ContainSubstring("not Ready: default/sample"),
	)))
}
