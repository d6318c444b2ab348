package install

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestReliabilityDocMatchesItsFiguresFile: the full-run table of docs/reliability.md quotes
// the figures file it links (written by `make test-reliability`, see recordFigure): the
// run's commit and date, and each scenario's figures as the file has them. A figure typed
// by hand, or a file regenerated without the doc, fails here.
func TestReliabilityDocMatchesItsFiguresFile(t *testing.T) {
	g := NewWithT(t)
	doc, err := os.ReadFile(repoPath("docs", "reliability.md"))
	g.Expect(err).NotTo(HaveOccurred())
	link := regexp.MustCompile(`\]\((figures/reliability-[0-9a-z-]+\.jsonl)\)`).FindSubmatch(doc)
	g.Expect(link).NotTo(BeNil(), "docs/reliability.md links no figures/reliability-*.jsonl")
	data, err := os.ReadFile(repoPath("docs", string(link[1])))
	g.Expect(err).NotTo(HaveOccurred())

	var header map[string]any
	byScenario := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var line map[string]any
		g.Expect(json.Unmarshal(sc.Bytes(), &line)).To(Succeed(), "a line of %s: %s", link[1], sc.Text())
		if name, ok := line["scenario"].(string); ok {
			g.Expect(line["full"]).To(BeTrue(), "%s: scenario %s is not from a full run", link[1], name)
			byScenario[name] = line
		} else {
			header = line
		}
	}
	g.Expect(header).NotTo(BeNil(), "%s has no header line (commit, date, cores)", link[1])
	for _, k := range []string{"commit", "date", "cores"} {
		g.Expect(header).To(HaveKey(k), "%s: the header has no %s", link[1], k)
	}
	g.Expect(header["dirty"]).NotTo(Equal(true), "%s: the run was of a tree with uncommitted changes", link[1])
	text := string(doc)
	g.Expect(text).To(ContainSubstring(fmt.Sprintf("Full run of %s", header["date"])))
	g.Expect(text).To(ContainSubstring(fmt.Sprintf("at commit %s", header["commit"])))

	// row returns the table row of the full run's table that starts with | name |.
	full := text[strings.Index(text, "Full run of"):]
	row := func(name string) string {
		m := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(name) + ` \|.*$`).FindString(full)
		g.Expect(m).NotTo(BeEmpty(), "no row %q in the full run's table", name)
		return m
	}
	num := func(scenario, key, format string) string {
		f, ok := byScenario[scenario][key].(float64)
		g.Expect(ok).To(BeTrue(), "%s has no %s.%s", link[1], scenario, key)
		return fmt.Sprintf(format, f)
	}
	want := map[string][]string{
		"kills": {num("kill", "kills", "%.0f kills"), num("kill", "not_reached", "%.0f points not reached"),
			num("kill", "window_hits", "hit %.0f times"), num("kill", "replays", "%.0f replays"),
			num("kill", "creates", "%.0f creates"), num("kill", "deactivations", "%.0f deactivations")},
		"leader failover": {num("leader-failover", "takeover_seconds", "took over in %.1f s"),
			num("leader-failover", "creates", "%.0f creates"), num("leader-failover", "replays", "%.0f replays")},
		"outage 60 s": {num("outage", "issued_after_recovery_seconds", "issued in %.1f s"),
			num("outage", "deleted_after_recovery_seconds", "deleted in %.1f s")},
		"429 storm 30 s": {num("429-storm", "requests_per_second", "%.1f req/s"), num("429-storm", "allowed_per_second", "against %.0f allowed"),
			num("429-storm", "early_retries", "%.0f creates retried"), num("429-storm", "min_gap_seconds", "smallest gap %.3f s")},
		"expiry while down": {num("expiry-while-down", "inactive_after_restart_seconds", "Inactive %.1f s after")},
		"hostile":           {num("hostile", "cases", "%.0f runtime cases")},
	}
	for name, figures := range want {
		r := row(name)
		for _, f := range figures {
			g.Expect(r).To(ContainSubstring(f), "docs/reliability.md, row %q, does not quote %s from %s", name, f, link[1])
		}
	}
}
