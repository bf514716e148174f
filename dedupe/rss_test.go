package dedupe

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

const envRSSDir = "DEDUPE_RSS_DIR"

// procStatus returns the given fields of /proc/self/status, in KiB.
func procStatus(fields ...string) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, want := range fields {
			if name == want {
				v := strings.Fields(rest)
				if len(v) > 0 {
					out[name], _ = strconv.ParseInt(v[0], 10, 64)
				}
			}
		}
	}
	return out
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(500 * time.Millisecond)
}

// TestRSSChild prints the resident set of this process before Open, idle
// after Open, and idle after 20,000 Accepts (and deliveries) of ~600 bytes.
func TestRSSChild(t *testing.T) {
	dir := os.Getenv(envRSSDir)
	if dir == "" {
		t.Skip("RSS child only")
	}
	fields := []string{"VmRSS", "RssAnon", "RssFile", "RssShmem"}
	report := func(stage string) {
		settle()
		st := procStatus(fields...)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("%s %d %d %d\n", stage, st["VmRSS"], st["RssAnon"], st["RssFile"])
		fmt.Fprintf(os.Stderr, "%s: heap in use %.1f MiB, heap released %.1f MiB, sys %.1f MiB\n", stage,
			float64(ms.HeapInuse)/(1<<20), float64(ms.HeapReleased)/(1<<20), float64(ms.Sys)/(1<<20))
	}
	report("before")
	s, err := Open(Options{Dir: dir, SyncWrites: true})
	require.NoError(t, err)
	defer s.Close()
	report("opened")
	body := make([]byte, 600)
	for w := range 20 {
		ms := make([]*Message, 1000)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(ms); i += 16 {
					m := msg("reply.received", fmt.Sprint(w, "-", i))
					m.Body = body
					_, _, err := s.Accept(context.Background(), m, 72*time.Hour)
					assert.NoError(t, err)
					ms[i] = m
				}
			}()
		}
		wg.Wait()
		for _, m := range leased(t, s, 900) {
			settleAs(t, s, m, queue.Delivered, time.Time{})
		}
	}
	time.Sleep(time.Second) // let flushes and compactions finish
	report("after20k")
}

func TestIdleRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes RSS meaningless")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRSSDir+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err)
	rss := map[string][3]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		var v [3]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		rss[f[0]] = v
	}
	require.Contains(t, rss, "after20k", "child output: %s", out)
	for _, stage := range []string{"before", "opened", "after20k"} {
		v := rss[stage]
		t.Logf("%-9s VmRSS %6.1f MiB (anon %5.1f, file %5.1f)", stage, float64(v[0])/1024, float64(v[1])/1024, float64(v[2])/1024)
	}
	delta := rss["after20k"][0] - rss["before"][0]
	t.Logf("store costs %.1f MiB of RSS idle after 20k accepts", float64(delta)/1024)
	assert.Less(t, delta, int64(64<<10), "store RSS within 64 MiB")
}
