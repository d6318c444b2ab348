package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/statusops/apitoken-operator/internal/devenv"
)

// TestSecondStartReusesTheDirectoryAndIssuesNoTokens is the second `make dev`: a new
// environment on the directory of a stopped one comes back with the same cluster, backend
// database and admin token, and the restarted manager issues no new tokens.
func TestSecondStartReusesTheDirectoryAndIssuesNoTokens(t *testing.T) {
	requireEnv(t)
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	opts := envOptions(filepath.Join(t.TempDir(), "dev"))
	opts.ApplySamples = true

	first, err := devenv.Start(ctx, opts)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = first.Stop() })
	dumpLogOnFailure(t, first)
	g.Expect(first.Samples).To(HaveLen(2), "config/samples lists a ReadOnly and a FullAccess token")
	g.Expect(first.WaitAPITokensReady(ctx, time.Minute, first.Samples...)).To(Succeed())
	before := map[string]string{}
	for _, key := range first.Samples {
		before[key.String()] = getAPIToken(t, first, key.Namespace, key.Name).Status.TokenID
	}
	tokensBefore := countBackendTokens(t, first)
	adminToken := first.AdminToken
	g.Expect(first.Stop()).To(Succeed())

	second, err := devenv.Start(ctx, opts)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = second.Stop() })
	dumpLogOnFailure(t, second)
	g.Expect(second.Reused).To(BeTrue())
	g.Expect(second.AdminToken).To(Equal(adminToken))
	g.Expect(second.BackendURL).To(Equal(first.BackendURL))
	g.Expect(second.WaitAPITokensReady(ctx, time.Minute, second.Samples...)).To(Succeed())

	// The manager reconciles every APIToken right after it starts: wait until it has (its
	// own reconcile count, an empty queue), then check it created nothing on the backend.
	waitReconciled(t, second, map[string]int{"apitoken": len(second.Samples)})
	g.Expect(countBackendTokens(t, second)).To(Equal(tokensBefore), "tokens on the backend after the restarted manager's passes")
	for _, key := range second.Samples {
		tok := getAPIToken(t, second, key.Namespace, key.Name)
		g.Expect(tok.Status.TokenID).To(Equal(before[key.String()]), key.String())
		g.Expect(tok.Status.Phase).To(Equal("Active"), key.String())
		g.Expect(getBackendToken(t, second, tok.Status.TokenID).Status).To(Equal("active"), key.String())
	}
}
