package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// memorySampler keeps the manager's peak RSS (VmHWM, which the kernel keeps per process, so
// it is read before each stop), read every two seconds, and the largest heap in use, from a
// metrics scrape every heapEvery. A scrape is not free for the manager: at N=20000 it encodes
// some 60,000 token series, so it is made as often as a Prometheus would scrape, not every
// two seconds, which would make the bench's own load the manager's largest cost.
type memorySampler struct {
	m        *harness.Manager
	res      *Results
	mu       sync.Mutex
	phase    string
	lastHeap time.Time
	done     chan struct{}
	wg       sync.WaitGroup
}

func startMemorySampler(m *harness.Manager, res *Results) *memorySampler {
	s := &memorySampler{m: m, res: res, done: make(chan struct{}), phase: "start"}
	res.RSSMiBPeakByPhase, res.HeapMiBByPhase = map[string]float64{}, map[string]float64{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

// heapEvery is how often the heap in use is scraped.
const heapEvery = 15 * time.Second

func (s *memorySampler) sample() {
	hwm := procStatus(s.m.Pid(), "VmHWM")
	s.mu.Lock()
	due := time.Since(s.lastHeap) >= heapEvery
	if due {
		s.lastHeap = time.Now()
	}
	s.mu.Unlock()
	heap := 0.0
	if due {
		heap = heapMiB(s.m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.RSSMiBPeak = max(s.res.RSSMiBPeak, hwm)
	s.res.HeapMiB = max(s.res.HeapMiB, heap)
	s.res.RSSMiBPeakByPhase[s.phase] = max(s.res.RSSMiBPeakByPhase[s.phase], hwm)
	s.res.HeapMiBByPhase[s.phase] = max(s.res.HeapMiBByPhase[s.phase], heap)
}

// enter closes the phase so far and starts the next: the kernel's peak (VmHWM) is reset to
// the present RSS (clear_refs 5), so each phase's peak is its own and the figure says which
// phase sets rss_mib_peak.
func (s *memorySampler) enter(phase string) {
	s.sample()
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.m.Pid()), []byte("5"), 0)
	s.mu.Lock()
	s.phase = phase
	s.mu.Unlock()
	s.sample()
}

func (s *memorySampler) stop() {
	s.sample()
	close(s.done)
	s.wg.Wait()
}

// pprofHeapAfterGC forces a collection in the manager and returns pprof's heap page (query
// is appended to heap?gc=1): the profile, or with "&debug=1" its text with the MemStats.
func pprofHeapAfterGC(pprofAddr, query string) (io.ReadCloser, error) {
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1" + query)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("pprof heap: %s", resp.Status)
	}
	return resp.Body, nil
}

// heapAllocAfterGC is the manager's heap in use right after a forced collection, in bytes:
// the MemStats that pprof's heap?gc=1&debug=1 page reads just after its collection. Until
// 2026-12-01 evening it was read from a metrics scrape made after the collection; at N=20000
// a scrape builds some 60,000 token series while the Go collector reads the heap: the
// unrelated-Secrets phase read 85.5 and then 113.2 MiB of live heap while RSS moved 3.3 MiB.
func heapAllocAfterGC(pprofAddr string) (float64, error) {
	body, err := pprofHeapAfterGC(pprofAddr, "&debug=1")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pprof heap: no HeapAlloc line")
}

// keepHeapProfile, when set (-keep-heap-profile), is where the live-heap profile is copied,
// for `go tool pprof -list` and the like.
var keepHeapProfile string

// liveHeap forces a collection in the manager (pprof's heap?gc=1), returns the heap left
// (heapAllocAfterGC) and writes the profile's top entries to topPath, which
// says what holds the heap; keep, when set, gets a copy of the profile.
func liveHeap(pprofAddr, topPath, keep string) (float64, error) {
	body, err := pprofHeapAfterGC(pprofAddr, "")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	prof, err := os.CreateTemp("", "bench-heap-*.pb.gz")
	if err != nil {
		return 0, err
	}
	defer os.Remove(prof.Name())
	if _, err := io.Copy(prof, body); err != nil {
		prof.Close()
		return 0, err
	}
	prof.Close()
	if keep != "" {
		if b, err := os.ReadFile(prof.Name()); err == nil {
			_ = os.WriteFile(keep, b, 0o644)
		}
	}
	live, err := heapAllocAfterGC(pprofAddr)
	if err != nil {
		return 0, err
	}
	var report []string
	for _, order := range []string{"-flat", "-cum"} {
		top, err := exec.Command("go", "tool", "pprof", "-top", order, "-nodecount=35", "-sample_index=inuse_space", prof.Name()).CombinedOutput()
		if err != nil {
			return live / (1 << 20), fmt.Errorf("go tool pprof: %v: %s", err, top)
		}
		// The first lines name the temporary file and the build; keep the table.
		lines := strings.Split(string(top), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "Type:") {
				lines = lines[i:]
				break
			}
		}
		report = append(report, "# go tool pprof -top "+order+" (live heap after a forced GC)", strings.Join(lines, "\n"))
	}
	if err := os.MkdirAll(filepath.Dir(topPath), 0o755); err != nil {
		return live / (1 << 20), err
	}
	return live / (1 << 20), os.WriteFile(topPath, []byte(strings.Join(report, "\n")), 0o644)
}

// loadSampler samples the one-minute load average every ten seconds: the machine is shared,
// and a figure means little without how busy it was.
type loadSampler struct {
	mu      sync.Mutex
	samples []float64
	done    chan struct{}
	wg      sync.WaitGroup
}

func startLoadSampler() *loadSampler {
	s := &loadSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *loadSampler) sample() {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.samples = append(s.samples, v)
	s.mu.Unlock()
}

func (s *loadSampler) stop() (mean, peak float64) {
	close(s.done)
	s.wg.Wait()
	for _, v := range s.samples {
		mean += v
		peak = max(peak, v)
	}
	if len(s.samples) > 0 {
		mean /= float64(len(s.samples))
	}
	return mean, peak
}
