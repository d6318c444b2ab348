package reliability

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/statusops/apitoken-operator/internal/testenv"
)

var (
	figuresMu     sync.Mutex
	figuresHeader sync.Once
)

// recordFigure appends a scenario's figures to RELIABILITY_FIGURES (a JSON-lines file),
// when set, for docs/reliability.md. The first line a run writes says which run it was:
// the commit (and whether the tree had uncommitted changes), the date and the core count,
// so a figure quoted in the docs can be traced to one run of one commit.
func recordFigure(scenario string, f map[string]any) {
	path := os.Getenv("RELIABILITY_FIGURES")
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	figuresHeader.Do(func() { appendJSONLine(path, runHeader()) })
	f["scenario"] = scenario
	f["full"] = sz.full
	appendJSONLine(path, f)
}

// runHeader describes this run.
func runHeader() map[string]any {
	h := map[string]any{"date": time.Now().UTC().Format("2006-01-02"), "cores": runtime.NumCPU(), "full": sz.full,
		"command": "go test ./test/reliability/"}
	if sz.full {
		h["command"] = "make test-reliability"
	}
	root := testenv.RepoRoot()
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		h["commit"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		h["dirty"] = len(strings.TrimSpace(string(out))) > 0
	}
	return h
}

func appendJSONLine(path string, v map[string]any) {
	data, _ := json.Marshal(v)
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer fh.Close()
	_, _ = fh.Write(append(data, '\n'))
}
