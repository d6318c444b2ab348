package reliability

import (
	"encoding/json"
	"os"
	"sync"
)

var figuresMu sync.Mutex

// recordFigure appends a scenario's figures to RELIABILITY_FIGURES (a JSON-lines file),
// when set, for docs/reliability.md.
func recordFigure(scenario string, f map[string]any) {
	path := os.Getenv("RELIABILITY_FIGURES")
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f["scenario"] = scenario
	f["full"] = sz.full
	data, _ := json.Marshal(f)
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer fh.Close()
	_, _ = fh.Write(append(data, '\n'))
}
