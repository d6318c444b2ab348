package memlimit

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitRatio is the share of the container's memory limit given to the Go runtime as
// its soft limit; the rest is headroom for non-heap memory.
const memoryLimitRatio = 0.9

// SetMemoryLimitFromCgroup gives the Go garbage collector a soft memory limit of 90% of the
// container's memory limit, unless GOMEMLIMIT is set. Without it the heap may grow to twice
// the live data before a collection, which under a tight limit means an OOM kill instead of
// an earlier collection. It returns the limit set, 0 when none.
func SetMemoryLimitFromCgroup() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := cgroupMemoryLimit([]string{
		"/sys/fs/cgroup/memory.max",                   // cgroup v2
		"/sys/fs/cgroup/memory/memory.limit_in_bytes", // cgroup v1
	})
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * memoryLimitRatio)
	debug.SetMemoryLimit(soft)
	return soft
}

// DefaultGCPercent is the garbage collector's target (GOGC) the manager runs with unless GOGC
// is set: the heap may grow to 1.75 times what was live at the last collection instead of
// twice, as Prometheus does by default. Measured with make bench N=5000 (see
// docs/performance.md): the peak RSS fell by 10 % while the manager's CPU in the Ready phase
// stayed the same (16.9 s against 17.0 s), because a manager's allocation is bursty and the
// extra collections fall in the bursts only.
const DefaultGCPercent = 75

// SetGCPercentDefault sets DefaultGCPercent unless GOGC is set (the runtime has applied it
// then), and reports whether it did.
func SetGCPercentDefault() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	return true
}

// cgroupMemoryLimit reads the first limit found; "max" or an absurdly large v1 value mean
// none.
func cgroupMemoryLimit(paths []string) int64 {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}
