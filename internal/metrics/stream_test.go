package metrics

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// servedTokens is the scrape handler of a pedantic registry with the token collector, over a
// store fed with objs.
func servedTokens(t *testing.T, objs []client.Object) http.Handler {
	t.Helper()
	store, _ := fedStore(t, objs)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newTokenCollector(func() *tokenStore { return store })); err != nil {
		t.Fatal(err)
	}
	return handlerOf(reg, store)
}

// handlerOf is the scrape handler over reg and store.
func handlerOf(reg prometheus.Gatherer, store *tokenStore) http.Handler {
	return &scrapeHandler{gatherer: reg, store: func() *tokenStore { return store }}
}

// get scrapes h as Prometheus does, with the given Accept-Encoding, and returns the body as
// sent (still compressed) and the response.
func get(t *testing.T, h http.Handler, acceptEncoding string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// scrapeText is h's text exposition, uncompressed.
func scrapeText(t *testing.T, h http.Handler) string {
	t.Helper()
	res, body := get(t, h, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s: %s", res.Status, body)
	}
	return string(body)
}

// parse reads a text exposition into families sorted by name, as a Gather returns them.
func parse(text string) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	var out []*dto.MetricFamily
	for _, mf := range byName {
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// scraped is a Gatherer of what a scrape of h says: the testutil helpers then check the
// handler's real output.
func scraped(t *testing.T, h http.Handler) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return parse(scrapeText(t, h)) })
}

// referenceSeries is the per-token series built the plain way, with MustNewConstMetric, for a
// registry that promhttp then encodes: what the handler's own writing must match.
type referenceSeries struct{ store *tokenStore }

func (r referenceSeries) Describe(chan<- *prometheus.Desc) {}
func (r referenceSeries) Collect(ch chan<- prometheus.Metric) {
	d := sharedDescs
	r.store.mu.RLock()
	defer r.store.mu.RUnlock()
	for _, e := range r.store.entries {
		ch <- prometheus.MustNewConstMetric(d.info, prometheus.GaugeValue, 1, e.namespace, e.name, e.tokenID, string(e.permission), string(e.phase))
		if e.expires != 0 {
			ch <- prometheus.MustNewConstMetric(d.expiration, prometheus.GaugeValue, float64(e.expires), e.namespace, e.name)
		}
		if e.lastUsed != 0 {
			ch <- prometheus.MustNewConstMetric(d.lastUsed, prometheus.GaugeValue, float64(e.lastUsed), e.namespace, e.name)
		}
	}
}

// familyLines are the lines of a text exposition that belong to the named families, in order.
func familyLines(text string, names ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") || strings.HasPrefix(line, n+" ") ||
				strings.HasPrefix(line, "# HELP "+n+" ") || strings.HasPrefix(line, "# TYPE "+n+" ") {
				out = append(out, line)
			}
		}
	}
	return out
}

// hostileTokens are APITokens whose backend ids need escaping or are not UTF-8, among
// ordinary ones, some without an expiry or a last use.
func hostileTokens() []client.Object {
	objs := manyTokens(40)
	ids := []string{`tok_"quoted"`, `tok_back\slash`, "tok_new\nline", "tok_\xff\xfe", "tok_ünï", `tok_\"both\n`}
	for i, id := range ids {
		objs[i].(*tokensv1alpha1.APIToken).Status.TokenID = id
	}
	for i := 10; i < 20; i++ {
		objs[i].(*tokensv1alpha1.APIToken).Status.ExpiresAt = nil
	}
	at := metav1.Unix(1_767_225_600, 123) // sub-second: the value keeps whole seconds
	for i := 15; i < 25; i++ {
		objs[i].(*tokensv1alpha1.APIToken).Status.LastUsedAt = nil
	}
	objs[30].(*tokensv1alpha1.APIToken).Status.LastUsedAt = &at
	objs[31].(*tokensv1alpha1.APIToken).Status = tokensv1alpha1.APITokenStatus{} // Pending
	// Namespaces that do not follow the names, and one name in two namespaces: the series
	// are in name order, then namespace.
	for i := 32; i < 40; i++ {
		objs[i].(*tokensv1alpha1.APIToken).Namespace = fmt.Sprintf("team-%03d", 100-i)
	}
	objs[39].(*tokensv1alpha1.APIToken).Name = objs[38].(*tokensv1alpha1.APIToken).Name
	return objs
}

// TestStreamedSeriesMatchGather: the series the handler writes itself are, line for line,
// what promhttp writes when the same series are gathered, escaping and number format
// included, and parse to the same families.
func TestStreamedSeriesMatchGather(t *testing.T) {
	g := NewWithT(t)
	store, _ := fedStore(t, hostileTokens())
	counts := prometheus.NewPedanticRegistry()
	g.Expect(counts.Register(newTokenCollector(func() *tokenStore { return store }))).To(Succeed())
	reference := prometheus.NewRegistry()
	g.Expect(reference.Register(newTokenCollector(func() *tokenStore { return store }))).To(Succeed())
	g.Expect(reference.Register(referenceSeries{store})).To(Succeed())

	streamed := scrapeText(t, handlerOf(counts, store))
	var ref strings.Builder
	g.Expect(scrape(reference, &ref)).To(Succeed())
	gathered := ref.String()
	perToken := []string{TokenExpirationTimestamp, TokenInfo, TokenLastUsedTimestamp}
	want := familyLines(gathered, perToken...)
	g.Expect(len(want)).To(BeNumerically(">", 3*2+40+30-10), "the reference has every family's series")
	g.Expect(familyLines(streamed, perToken...)).To(Equal(want))
	g.Expect(streamed).To(ContainSubstring(`token_id="tok_\"quoted\""`))
	g.Expect(streamed).To(ContainSubstring(`token_id="tok_new\nline"`))
	g.Expect(streamed).To(ContainSubstring("token_id=\"tok_\uFFFD\""))

	a, err := parse(streamed)
	g.Expect(err).NotTo(HaveOccurred())
	b, err := parse(gathered)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(a)).To(Equal(len(b)))
	for i := range a {
		g.Expect(a[i].String()).To(Equal(b[i].String()), a[i].GetName())
	}
}

// TestScrapeGzipAndErrors: a scraper that asks for gzip gets it (and one that refuses it
// does not), and a registry that fails to gather fails the scrape rather than serving part.
func TestScrapeGzipAndErrors(t *testing.T) {
	g := NewWithT(t)
	h := servedTokens(t, manyTokens(50))
	plain := scrapeText(t, h)
	g.Expect(plain).To(ContainSubstring(`apitoken_token_info{name="token-00049"`))

	res, body := get(t, h, "gzip, deflate")
	g.Expect(res.Header.Get("Content-Encoding")).To(Equal("gzip"))
	g.Expect(res.Header.Get("Content-Type")).To(HavePrefix("text/plain; version=0.0.4"))
	zr, err := gzip.NewReader(strings.NewReader(string(body)))
	g.Expect(err).NotTo(HaveOccurred())
	unzipped, err := io.ReadAll(zr)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(unzipped)).To(Equal(plain))

	for _, refused := range []string{"identity", "gzip;q=0", "br"} {
		res, body := get(t, h, refused)
		g.Expect(res.Header.Get("Content-Encoding")).To(BeEmpty(), refused)
		g.Expect(string(body)).To(Equal(plain), refused)
	}

	failing := prometheus.NewRegistry()
	g.Expect(failing.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "a", Help: "a"}, func() float64 { return 1 }))).To(Succeed())
	g.Expect(failing.Register(collectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("b", "b", nil, nil), io.ErrUnexpectedEOF)
	}))).To(Succeed())
	tokens, _ := fedStore(t, manyTokens(5))
	res, body = get(t, handlerOf(failing, tokens), "")
	g.Expect(res.StatusCode).To(Equal(http.StatusInternalServerError))
	g.Expect(string(body)).NotTo(ContainSubstring("apitoken_token_info"))
}
