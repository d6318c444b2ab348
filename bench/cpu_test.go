package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestProcStats: readProcs reads this process's parent and command, and procTreeSeconds counts
// the CPU of a child once the child is reaped (cutime and cstime).
func TestProcStats(t *testing.T) {
	procs := readProcs()
	self, ok := procs[os.Getpid()]
	if !ok || self.ppid != os.Getppid() || self.comm == "" {
		t.Fatalf("this process read as %+v (found %v), parent %d", self, ok, os.Getppid())
	}
	if !descends(procs, os.Getpid(), os.Getppid()) || descends(procs, os.Getppid(), os.Getpid()) {
		t.Fatal("descends has parent and child the wrong way round")
	}
	before := procTreeSeconds(os.Getpid())
	// About 0.3 s of a child's CPU, reaped by this process.
	if err := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`).Run(); err != nil {
		t.Fatal(err)
	}
	after := procTreeSeconds(os.Getpid())
	if after-before < 0.05 {
		t.Fatalf("the reaped child's CPU was not counted: %.2f s before, %.2f s after", before, after)
	}
	if cpuSeconds()["bench"] <= 0 {
		t.Fatal("cpuSeconds names this process bench and counts its CPU")
	}
}
