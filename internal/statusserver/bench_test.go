package statusserver_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/statusserver/servertest"
)

// BenchmarkAuthenticatedGet measures GET /boards with a read_only token over
// real HTTP on loopback, in parallel: the cost of authentication, the
// last_used_at stamp and a small JSON reply.
func BenchmarkAuthenticatedGet(b *testing.B) {
	srv := servertest.Start(b)
	ro := srv.IssueToken(b, native.CreateRequest{Name: "bench", Permission: backend.PermissionReadOnly})
	if err := srv.Client(b).Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := srv.URL + "/boards"
	auth := "Bearer " + ro.Value.Reveal()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", auth)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
