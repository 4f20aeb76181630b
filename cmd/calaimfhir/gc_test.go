package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestTuneGC_SetsASoftMemoryLimit: without GOMEMLIMIT, the heap limit becomes three quarters of
// the memory the process may use (on Linux, where /proc/meminfo tells it); with it, it stays.
func TestTuneGC_SetsASoftMemoryLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memoryAvailable reads /proc/meminfo")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	total := memoryAvailable()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil || !strings.Contains(string(b), "MemTotal:") {
		t.Fatalf("no MemTotal in /proc/meminfo: %v", err)
	}
	if total <= 0 {
		t.Fatalf("memoryAvailable: %d", total)
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(1 << 62)
	tuneGC()
	if got := debug.SetMemoryLimit(-1); got != total/4*3 {
		t.Errorf("limit %d, want %d (3/4 of %d)", got, total/4*3, total)
	}
	t.Setenv("GOMEMLIMIT", "8GiB")
	debug.SetMemoryLimit(1 << 62)
	tuneGC()
	if got := debug.SetMemoryLimit(-1); got != 1<<62 {
		t.Errorf("with GOMEMLIMIT set, tuneGC changed the limit to %d", got)
	}
}

// TestTuneProcs_TwoPerCPU: without GOMAXPROCS, the processors double and the bulk slots stay
// at half the CPUs; with it, both are left to it.
func TestTuneProcs_TwoPerCPU(t *testing.T) {
	start := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(start)
	defer func(c int) { cpus = c }(cpus)

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(3)
	tuneProcs()
	if got := runtime.GOMAXPROCS(0); got != 6 {
		t.Errorf("GOMAXPROCS %d after tuneProcs on 3 CPUs, want 6", got)
	}
	if got := defaultBulkSlots(); got != 1 {
		t.Errorf("bulk slots %d on 3 CPUs, want 1", got)
	}
	if got := bulkSlots(5); got != 5 {
		t.Errorf("--bulk-concurrency 5 became %d", got)
	}

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	tuneProcs()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("with GOMAXPROCS set, tuneProcs changed it to %d", got)
	}
}
