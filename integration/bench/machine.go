package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// machineState is what the benchmark saw of the machine: on a shared box the
// figures only mean something next to the load and the disk's flush latency.
type machineState struct {
	load       string
	fsyncP50   time.Duration
	fsyncP99   time.Duration
	fsyncError string
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// probeMachine times 50 4 KiB write+fdatasync pairs in dir, the cost an ack
// after a sync pays at least once per batch.
func probeMachine(dir string) machineState {
	m := machineState{load: loadAvg()}
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		m.fsyncError = err.Error()
		return m
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		t := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			m.fsyncError = err.Error()
			return m
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			m.fsyncError = err.Error()
			return m
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	m.fsyncP50, m.fsyncP99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return m
}

func recordMachine(env *benchEnv, before machineState) {
	after := probeMachine(env.work)
	sec := section{title: "machine", head: []string{"", "at start", "at end"}}
	sec.rows = append(sec.rows,
		[]string{"CPUs (GOMAXPROCS)", fmt.Sprint(runtime.GOMAXPROCS(0)), ""},
		[]string{"load average 1/5/15 min", before.load, after.load},
		[]string{"4 KiB write+fdatasync p50 / p99", fsyncStr(before), fsyncStr(after)},
	)
	sec.notes = append(sec.notes, "load generator, upstreams and servers share these CPUs; a load average above the CPU count means other work competed with the run",
		"temporary directory: "+filepath.Dir(env.work))
	env.res.LoadAvgStart, env.res.LoadAvgEnd = before.load, after.load
	env.res.FsyncP99MsStart = f64(ms(before.fsyncP99))
	env.res.sections = append([]section{sec}, env.res.sections...)
}

func fsyncStr(m machineState) string {
	if m.fsyncError != "" {
		return "error: " + m.fsyncError
	}
	return fmt.Sprintf("%.2f / %.2f ms", ms(m.fsyncP50), ms(m.fsyncP99))
}
