package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/statusops/apitoken-operator/internal/backend"
	"github.com/statusops/apitoken-operator/internal/backend/native"
	"github.com/statusops/apitoken-operator/internal/reliability/oracle"
)

// SampleInterval is how often the continuous oracle looks.
const SampleInterval = 250 * time.Millisecond

// blindLimit is how long the continuous oracle may go without a sample (the backend
// restarting, the API server slow) before that is itself a violation: it cannot vouch for
// what it did not see.
const blindLimit = 15 * time.Second

// Watcher is the continuous oracle of a scenario (oracle.Continuous), sampling in the
// background from Watch until the scenario closes.
type Watcher struct {
	mu         sync.Mutex
	c          *oracle.Continuous
	errors     int
	lastErr    error
	lastOK     time.Time
	blind      []string
	cancel     context.CancelFunc
	done       chan struct{}
	managerRan bool
}

// Watch starts the continuous oracle: every SampleInterval it lists the backend's active
// tokens (directly, not through the proxy), then the namespace's APITokens, and judges
// them with oracle.Continuous. Check and CheckCreates report its violations too.
func (s *Scenario) Watch(ctx context.Context) error {
	return s.WatchCounting(ctx, s.anyManagerRunning)
}

// WatchCounting is Watch where the time between samples counts towards the window only
// while counts says so (Watch: while a manager process runs; with leader election: while a
// manager leads, since a standby cannot end what a killed leader left).
func (s *Scenario) WatchCounting(ctx context.Context, counts func() bool) error {
	admin, err := native.New(native.Options{BaseURL: s.Backend.URL, Token: backend.SecretValue(s.Backend.AdminToken)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{c: oracle.NewContinuous(), cancel: cancel, done: make(chan struct{}), lastOK: time.Now()}
	s.mu.Lock()
	s.watcher = w
	s.mu.Unlock()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(SampleInterval)
		defer tick.Stop()
		for {
			w.noteManager(counts())
			w.sample(ctx, s, admin, counts)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return nil
}

// noteManager remembers whether a manager ran at any point since the previous sample.
func (w *Watcher) noteManager(running bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.managerRan = w.managerRan || running
}

func (w *Watcher) sample(ctx context.Context, s *Scenario, admin *native.Client, counts func() bool) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	at := time.Now()
	active, err := admin.ListTokens(sctx, native.ListOptions{Status: backend.StatusActive})
	items, lerr := s.List(sctx)
	if err == nil {
		err = lerr
	}
	running := counts()
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.errors++
		w.lastErr = err
		if since := time.Since(w.lastOK); since > blindLimit && len(w.blind) == 0 {
			w.blind = append(w.blind, fmt.Sprintf("the continuous oracle could not sample for %s: %v", since.Round(time.Second), err))
		}
		return
	}
	w.lastOK = time.Now()
	s.mu.Lock()
	retain := map[types.UID]bool{}
	for k, v := range s.Retain {
		retain[k] = v
	}
	s.mu.Unlock()
	w.c.Observe(oracle.Sample{At: at, Active: active, APITokens: items, Retain: retain}, w.managerRan || running)
	w.managerRan = running
}

// Violations are the continuous oracle's violations so far, and a summary line.
func (w *Watcher) Violations() ([]string, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := append(append([]string(nil), w.blind...), w.c.Violations...)
	summary := fmt.Sprintf("continuous oracle: %d samples, %d failed, %d violations", w.c.Samples, w.errors, len(v))
	if w.lastErr != nil {
		summary += fmt.Sprintf(" (last sampling error: %v)", w.lastErr)
	}
	return v, summary
}

// Samples is how many samples were judged.
func (w *Watcher) Samples() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.Samples
}

// stop ends the sampling.
func (w *Watcher) stop() {
	w.cancel()
	<-w.done
}

// Watcher is the scenario's continuous oracle, or nil when Watch was not called.
func (s *Scenario) Watcher() *Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watcher
}

func (s *Scenario) anyManagerRunning() bool {
	s.mu.Lock()
	ms := append([]*Manager(nil), s.Managers...)
	s.mu.Unlock()
	for _, m := range ms {
		if m.Running() {
			return true
		}
	}
	return false
}
