package badgerstore

import (
	"bufio"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKill9Loop: a child writes with SyncWrites (values in the LSM tree and,
// every 50th, in the value log; memtables of 1 MiB, so flushes and
// compactions run all the time) and is killed with SIGKILL at a random
// point, also while it is still opening the store; the next child opens the
// same directory. Every one of the 200+ opens must succeed, no kill may look
// like damage, and every acknowledged key must be there, intact.
func TestKill9Loop(t *testing.T) {
	if testing.Short() {
		t.Skip("200 child processes")
	}
	dir := filepath.Join(t.TempDir(), "db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	acked, removed := 0, 0
	const cycles = 200
	for cycle := range cycles {
		cmd := child("write", dir, envFrom+"="+strconv.Itoa(acked), envTo+"=0")
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		// a third of the kills land early: while the store is being
		// prepared, opened, replayed
		delay := time.Duration(rng.IntN(40)) * time.Millisecond
		if rng.IntN(3) > 0 {
			delay = time.Duration(40+rng.IntN(250)) * time.Millisecond
		}
		timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "acked "):
				n, err := strconv.Atoi(strings.TrimPrefix(line, "acked "))
				require.NoError(t, err)
				acked = max(acked, n)
			case strings.HasPrefix(line, "damaged "):
				t.Errorf("cycle %d: a kill -9 was taken for damage: %s", cycle, line)
			case strings.HasPrefix(line, "removed "):
				removed++
			}
		}
		err = cmd.Wait()
		timer.Stop()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("cycle %d: the writer was not killed but ended (%v): %s", cycle, err, tail([]byte(stderr.String())))
		}
		if cycle%25 == 24 || cycle == cycles-1 {
			verifyAcked(t, dir, acked)
		}
	}
	t.Logf("%d kills, %d keys acknowledged, all there; %d empty files left by kills removed", cycles, acked, removed)
}

// verifyAcked opens dir in a child and checks that keys [0, acked) are all
// there, intact.
func verifyAcked(t *testing.T, dir string, acked int) {
	t.Helper()
	res, crashed := runOpen(t, dir)
	require.Empty(t, crashed)
	require.Empty(t, res.OpenErr)
	assert.Empty(t, res.Damaged)
	assert.Zero(t, res.BadValues+res.ReadErrors, "values read back intact")
	present := presentSet(t, res.Ranges)
	for i := range acked {
		if !present[i] {
			t.Fatalf("acknowledged key %d missing after a kill -9 (present: %s)", i, res.Ranges)
		}
	}
}
