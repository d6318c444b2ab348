package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime: 100 on Linux for
// every architecture Go supports here.
const clockTicks = 100

// cpuSeconds is the CPU time (user + system) of this process and each of its descendants,
// summed by command name (kube-apiserver, etcd, manager, bench: the bench process also
// serves the reference backend and makes the creates). The difference of two snapshots is
// what a phase cost each part of the system; on a machine of two cores this says where the
// time to Ready goes, which a ratio alone cannot.
func cpuSeconds() map[string]float64 {
	procs := readProcs()
	self := os.Getpid()
	out := map[string]float64{}
	for pid, p := range procs {
		if !descends(procs, pid, self) {
			continue
		}
		name := p.comm
		if pid == self {
			name = "bench"
		}
		out[name] += p.own
	}
	if extraCPU != nil {
		for name, v := range extraCPU() {
			out[name] += v
		}
	}
	return out
}

// extraCPU, when set, adds the CPU seconds of processes that are not this process's
// descendants: Zabbix's PHP and PostgreSQL, which start.sh detaches (-backend zabbix).
var extraCPU func() map[string]float64

// proc is what /proc/<pid>/stat says of a process: its parent, its command, and its CPU
// seconds (own: utime + stime; reaped: cutime + cstime, of the children it waited for).
type proc struct {
	ppid        int
	comm        string
	own, reaped float64
}

// readProcs reads every process's stat line.
func readProcs() map[int]proc {
	procs := map[int]proc{}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(data)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
		if err != nil {
			continue
		}
		// After the command: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17),
		// counted from 1.
		f := strings.Fields(s[close+1:])
		if len(f) < 15 {
			continue
		}
		num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
		ppid, _ := strconv.Atoi(f[1])
		procs[pid] = proc{ppid: ppid, comm: s[open+1 : close], own: (num(11) + num(12)) / clockTicks, reaped: (num(13) + num(14)) / clockTicks}
	}
	return procs
}

// descends reports whether pid is root or one of its descendants.
func descends(procs map[int]proc, pid, root int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == root {
			return true
		}
		pid = procs[pid].ppid
	}
	return false
}

// procTreeSeconds is the CPU time of pid, of its live descendants, and of the children it
// has reaped (cutime and cstime): PostgreSQL's postmaster reaps a backend per connection, and
// PHP's frontend opens a connection per request, so most of PostgreSQL's work is there.
func procTreeSeconds(pid int) float64 {
	procs := readProcs()
	root, ok := procs[pid]
	if !ok {
		return 0
	}
	total := root.reaped
	for id, p := range procs {
		if descends(procs, id, pid) {
			total += p.own
		}
	}
	return total
}

// cpuSince is what each process spent since the snapshot before, in seconds.
func cpuSince(before map[string]float64) map[string]float64 {
	now := cpuSeconds()
	out := map[string]float64{}
	for k, v := range now {
		if d := v - before[k]; d > 0.005 {
			out[k] = round2(d)
		}
	}
	return out
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// cpuProfileDir, when set (-cpu-profile-dir), receives CPU profiles of windows of the floor
// and of the Ready phase: the kube-apiserver's in both (floor-c<conc>-apiserver.pb.gz,
// ready-apiserver.pb.gz) and the manager's in Ready (ready-manager.pb.gz). Both phases keep
// the two cores busy, so a profile's shares times the phase's CPU seconds (cpu_seconds_*)
// say where the API server's extra work for the operator goes. Diagnostics only: a window
// costs the profiled process a little CPU, so the rows of `make bench` are run without it.
var (
	cpuProfileDir    string
	cpuProfileWindow time.Duration
)

// profileWindow starts a CPU profile of get's process now, for cpuProfileWindow, written to
// cpuProfileDir/name; the returned wait blocks until it is written. A no-op without
// -cpu-profile-dir.
func profileWindow(name string, get func(seconds int) (*http.Response, error)) (wait func()) {
	if cpuProfileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := get(int(cpuProfileWindow.Seconds()))
		if err != nil {
			logf("CPU profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			logf("CPU profile %s: %s", name, resp.Status)
			return
		}
		f, err := os.Create(filepath.Join(cpuProfileDir, name))
		if err != nil {
			logf("CPU profile %s: %v", name, err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			logf("CPU profile %s: %v", name, err)
		}
	}()
	return func() { <-done }
}

// apiserverProfile fetches the kube-apiserver's CPU profile (its --profiling is on by default)
// with the bench's admin credentials.
func apiserverProfile(cfg *rest.Config) func(seconds int) (*http.Response, error) {
	return func(seconds int) (*http.Response, error) {
		// A connection of its own: client-go shares one HTTP/2 connection per config, and
		// once the API server sent GOAWAY on the profile's connection while the bench's Ready
		// watch ran on it too.
		tlsConfig, err := rest.TLSConfigFor(cfg)
		if err != nil {
			return nil, err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
		return hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds))
	}
}

// managerProfile fetches the manager's CPU profile from its --pprof-bind-address.
func managerProfile(addr string) func(seconds int) (*http.Response, error) {
	return func(seconds int) (*http.Response, error) {
		return http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds))
	}
}
