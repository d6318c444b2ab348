package metrics

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The per-token series are written to a scrape straight from the token store, not gathered.
// A Gather builds every series as a dto.Metric first, and promhttp encodes them only once
// all are built: at N=20000 a scrape held some 60,000 of them (11 MB, more with the label
// pairs) while it ran and left 30 MB of garbage. Profiled in session 6, the bench's scrapes
// set the heap's goal: the collector marks whatever is live, and a scrape is live for a
// tenth of a second or more. Written here, a scrape holds a copy of the store's entries
// (96 bytes each) and one line's buffer; the output is the text format Prometheus parses,
// byte for byte what promhttp writes for the same series (TestStreamedSeriesMatchGather).

// Handler serves a scrape of /metrics: g's families (the registry's, small), then the
// per-token series of the newest RegisterTokenCollector, always in the text format (0.0.4),
// which every Prometheus accepts, gzip-compressed when the scraper asks for it.
func Handler(g prometheus.Gatherer) http.Handler {
	return &scrapeHandler{gatherer: g, store: sharedStore.Load}
}

type scrapeHandler struct {
	gatherer prometheus.Gatherer
	store    func() *tokenStore
}

var (
	gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
	bufWriters  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

func (h *scrapeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mfs, err := h.gatherer.Gather()
	if err != nil {
		// As promhttp's HTTPErrorOnError, which controller-runtime's server sets: a partial
		// scrape is not served.
		http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	header := w.Header()
	header.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	header.Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		header.Set("Content-Encoding", "gzip")
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			_ = gz.Close()
			gz.Reset(nil)
			gzipWriters.Put(gz)
		}()
		out = gz
	}
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() {
		bw.Reset(nil)
		bufWriters.Put(bw)
	}()
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
			return // the scraper went away
		}
	}
	if s := h.store(); s != nil {
		s.writeSeries(bw)
	}
	_ = bw.Flush()
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip (not with q=0).
func acceptsGzip(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// writeSeries writes the per-token families, in the order and form promhttp gives them:
// families by name, series by their label values in label-name order (name first), a family
// with no series left out. Nothing is written before the informer has synced
// (apitoken_token_collector_success says 0 then). The store is read under its lock only to
// copy the entries: a slow scraper never holds up the informer's handler.
func (s *tokenStore) writeSeries(w *bufio.Writer) {
	if s.synced == nil || !s.synced() {
		return
	}
	s.mu.RLock()
	entries := make([]tokenEntry, 0, len(s.entries))
	for _, e := range s.entries {
		entries = append(entries, e)
	}
	s.mu.RUnlock()
	slices.SortFunc(entries, func(a, b tokenEntry) int {
		return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.namespace, b.namespace))
	})
	line := make([]byte, 0, 512)
	family := func(name, help string, value func(*tokenEntry) (float64, bool), info bool) {
		started := false
		for i := range entries {
			e := &entries[i]
			v, ok := value(e)
			if !ok {
				continue
			}
			if !started {
				started = true
				line = append(line[:0], "# HELP "...)
				line = append(line, name...)
				line = append(line, ' ')
				line = appendEscaped(line, help, false)
				line = append(line, "\n# TYPE "...)
				line = append(line, name...)
				line = append(line, " gauge\n"...)
				_, _ = w.Write(line)
			}
			line = append(line[:0], name...)
			line = append(line, `{name="`...)
			line = appendEscaped(line, e.name, true)
			line = append(line, `",namespace="`...)
			line = appendEscaped(line, e.namespace, true)
			if info {
				line = append(line, `",permission="`...)
				line = appendEscaped(line, string(e.permission), true)
				line = append(line, `",phase="`...)
				line = appendEscaped(line, string(e.phase), true)
				line = append(line, `",token_id="`...)
				line = appendEscaped(line, e.tokenID, true)
			}
			line = append(line, `"} `...)
			line = appendFloat(line, v)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}
	d := sharedDescs
	family(TokenExpirationTimestamp, d.help[TokenExpirationTimestamp], func(e *tokenEntry) (float64, bool) { return float64(e.expires), e.expires != 0 }, false)
	family(TokenInfo, d.help[TokenInfo], func(*tokenEntry) (float64, bool) { return 1, true }, true)
	family(TokenLastUsedTimestamp, d.help[TokenLastUsedTimestamp], func(e *tokenEntry) (float64, bool) { return float64(e.lastUsed), e.lastUsed != 0 }, false)
}

// appendEscaped escapes as the text format does: a backslash and a newline always, a double
// quote in a label value.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats a sample value as expfmt does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
