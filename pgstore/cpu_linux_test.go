package pgstore

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverCPU returns the CPU time used so far by the processes of the user
// the test server runs as (postgres or nobody, when the tests run as root),
// exited backends included (the postmaster's children times); false when it
// cannot tell (tests not run as root: the server is this user's).
func serverCPU() (time.Duration, bool) {
	if os.Geteuid() != 0 {
		return 0, false
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var ticks int64
	found := false
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid == 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil || !strings.Contains(string(b), "(postgres)") {
			continue
		}
		// fields after the command: state is field 3; utime..cstime are 14..17
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime (14..17 - 3)
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		found = true
	}
	return time.Duration(ticks) * time.Second / 100, found // USER_HZ = 100
}

// processCPU returns the CPU time used so far by this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
