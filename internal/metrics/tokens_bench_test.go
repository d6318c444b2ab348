package metrics

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// manyTokens are n Active APITokens with an expiry and a last use: three series each.
func manyTokens(n int) []client.Object {
	objs := make([]client.Object, 0, n)
	at := metav1.NewTime(time.Unix(1_900_000_000, 0))
	for i := range n {
		objs = append(objs, &tokensv1alpha1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%03d", i%200), Name: fmt.Sprintf("token-%05d", i)},
			Spec:       tokensv1alpha1.APITokenSpec{Permission: tokensv1alpha1.PermissionReadOnly},
			Status: tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseActive, Permission: tokensv1alpha1.PermissionReadOnly,
				TokenID: fmt.Sprintf("tok_%016d", i), ExpiresAt: &at, LastUsedAt: &at},
		})
	}
	return objs
}

// scrape gathers reg and writes it as the text exposition, as a scrape of /metrics does.
func scrape(reg prometheus.Gatherer, w io.Writer) error {
	return scrapeAs(reg, w, expfmt.TypeTextPlain)
}

func scrapeAs(reg prometheus.Gatherer, w io.Writer, format expfmt.FormatType) error {
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(format))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkTokenScrape is one scrape of the token metrics at N=20000 (60,004 series), as
// the manager serves it: the garbage it makes is the figure (B/op, and B/token).
func BenchmarkTokenScrape(b *testing.B) {
	const n = 20000
	t := &testing.T{}
	store, _ := fedStore(t, manyTokens(n))
	reg := prometheus.NewRegistry()
	if err := reg.Register(newTokenCollector(func() *tokenStore { return store })); err != nil {
		b.Fatal(err)
	}
	h := handlerOf(reg, store)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	w := &discardResponse{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.header)
		h.ServeHTTP(w, req)
	}
	if w.status != 0 && w.status != http.StatusOK {
		b.Fatalf("scrape: %d", w.status)
	}
}

// discardResponse is a ResponseWriter that keeps nothing of the body.
type discardResponse struct {
	header http.Header
	status int
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) WriteHeader(code int)        { d.status = code }

// TestConcurrentScrapesAgree: scrapes at once, plain and gzip-compressed, see the same text,
// and under -race touch nothing another writes (the pooled writers included).
func TestConcurrentScrapesAgree(t *testing.T) {
	g := NewWithT(t)
	h := servedTokens(t, manyTokens(500))
	out := make([]string, 8)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			if i%2 == 0 {
				out[i] = scrapeText(t, h)
				return
			}
			_, body := get(t, h, "gzip")
			zr, err := gzip.NewReader(strings.NewReader(string(body)))
			if err != nil {
				t.Error(err)
				return
			}
			text, err := io.ReadAll(zr)
			if err != nil {
				t.Error(err)
			}
			out[i] = string(text)
		})
	}
	wg.Wait()
	g.Expect(out[0]).To(ContainSubstring(`apitoken_token_info{name="token-00499",namespace="team-099",permission="ReadOnly",phase="Active",token_id="tok_0000000000000499"} 1`))
	g.Expect(out[0]).To(ContainSubstring(`apitoken_token_last_used_timestamp_seconds{name="token-00499",namespace="team-099"} 1.9e+09`))
	for _, o := range out[1:] {
		g.Expect(o).To(Equal(out[0]))
	}
}

// TestInvalidUTF8TokenIDIsReplaced: a token id that is not UTF-8 would make the scrape
// unparsable (a label value must be UTF-8); it is reported with replacement characters.
func TestInvalidUTF8TokenIDIsReplaced(t *testing.T) {
	g := NewWithT(t)
	tok := manyTokens(1)[0].(*tokensv1alpha1.APIToken)
	tok.Status.TokenID = "tok_\xff\xfe"
	text := scrapeText(t, servedTokens(t, []client.Object{tok}))
	g.Expect(text).To(ContainSubstring("token_id=\"tok_\uFFFD\""))
	_, err := parse(text)
	g.Expect(err).NotTo(HaveOccurred())
}
