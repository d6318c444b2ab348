package operator

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
