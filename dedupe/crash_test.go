package dedupe

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The crash tests re-execute the test binary as a child that Accepts messages
// with SyncWrites from several goroutines and prints "seq key" after each
// Accept returns (an ack). The parent SIGKILLs it mid-stream, reopens the
// directory and checks that every acked message is there.
//
// kill -9 loses the process, not the page cache: these tests prove that an
// acked commit reached Badger's files and that recovery (WAL replay, including
// WALs of memtables rotated out but not yet flushed) finds it. Power loss is
// covered by the fsync argument in writer.go, not by a test.

const (
	envCrashDir  = "DEDUPE_CRASH_DIR"
	envCrashMem  = "DEDUPE_CRASH_MEMTABLE"
	envCrashBody = "DEDUPE_CRASH_BODY"
)

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("crash-test child only")
	}
	mem, _ := strconv.ParseInt(os.Getenv(envCrashMem), 10, 64)
	bodySize, _ := strconv.Atoi(os.Getenv(envCrashBody))
	s, err := Open(Options{Dir: dir, SyncWrites: true, memTableSize: mem})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	body := make([]byte, bodySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("p%d-w%d-%d", os.Getpid(), w, i)
				m := msg("reply.received", key)
				m.Body = body
				seq, dup, err := s.Accept(context.Background(), m, time.Hour)
				if err != nil || dup {
					fmt.Fprintln(os.Stderr, "accept:", err, dup)
					os.Exit(3)
				}
				line := fmt.Sprintf("%d %s\n", seq, key)
				mu.Lock()
				os.Stdout.WriteString(line) // unbuffered: printed = acked
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

type acked struct {
	seq uint64
	key string
}

// crashRun starts the child, SIGKILLs it after killAfter acks and returns
// every ack it printed.
func crashRun(t *testing.T, dir string, memTable int64, body, killAfter int) []acked {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envCrashDir+"="+dir,
		envCrashMem+"="+strconv.FormatInt(memTable, 10),
		envCrashBody+"="+strconv.Itoa(body))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var acks []acked
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue // "PASS" etc. cannot happen before the kill, but be lenient
		}
		seq, err := strconv.ParseUint(f[0], 10, 64)
		require.NoError(t, err)
		acks = append(acks, acked{seq, f[1]})
		if !killed && len(acks) >= killAfter {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	err = cmd.Wait()
	require.True(t, killed, "child exited early: %v", err)
	return acks
}

func verifyAcked(t *testing.T, dir string, acks []acked) {
	t.Helper()
	s := openTest(t, dir)
	ready := leased(t, s, 0)
	stored := make(map[uint64]string, len(ready))
	for _, m := range ready {
		stored[m.Seq] = m.Key
	}
	missing := 0
	for _, a := range acks {
		if stored[a.seq] != a.key {
			missing++
			if missing <= 5 {
				t.Errorf("acked seq %d key %s not found after the crash (got %q)", a.seq, a.key, stored[a.seq])
			}
		}
	}
	assert.Zero(t, missing, "acked messages lost")
	assert.GreaterOrEqual(t, len(ready), len(acks), "every ack stored (unacked in-flight ones may be too)")
	assert.Equal(t, int64(len(ready)), stats(t, s).Queued)
	// and their dedupe keys
	for _, a := range acks[:min(len(acks), 50)] {
		seq, dup, err := s.Accept(context.Background(), msg("reply.received", a.key), time.Hour)
		require.NoError(t, err)
		assert.True(t, dup, "key %s", a.key)
		assert.Equal(t, a.seq, seq)
	}
	t.Logf("%d acked, %d stored after kill -9", len(acks), len(ready))
}

func TestCrashKeepsAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	acks := crashRun(t, dir, 0, 600, 3000)
	verifyAcked(t, dir, acks)
}

// Small memtables rotate several times before the kill: acks given while a
// commit sat in a rotated (not yet flushed) memtable's WAL must survive.
func TestCrashAcrossMemtableRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	var acks []acked
	// Three runs on one directory, each killed at a different point of the
	// rotation cycle; the later ones also recover from the earlier crashes.
	for _, n := range []int{6000, 4100, 5300} { // ~2.5 KiB each: ~10 rotations per run
		acks = append(acks, crashRun(t, dir, 1<<20, 2<<10, n)...)
	}
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	require.NoError(t, err)
	maxFid := 0
	for _, m := range mems {
		fid, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(m), ".mem"))
		maxFid = max(maxFid, fid)
	}
	sst, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	t.Logf("after kill: %d .mem files (highest fid %d), %d .sst files", len(mems), maxFid, len(sst))
	assert.GreaterOrEqual(t, maxFid, 20, "memtables rotated several times")
	verifyAcked(t, dir, acks)
}
