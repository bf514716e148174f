package dedupe

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// mountTmpfs mounts a tmpfs of size bytes (needs root; skips otherwise).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	require.NoError(t, os.Mkdir(dir, 0o700))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// On a filling disk Accept must start failing with ErrUnavailable before
// Badger's mmapped writes hit ENOSPC (which would SIGBUS the process), keep
// the store consistent, let deliveries continue, and recover once space is
// freed.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a filesystem")
	}
	fs := mountTmpfs(t, 160<<20)
	filler := filepath.Join(fs, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, 40<<20), 0o600))
	const reserve = 64 << 20
	s := openTest(t, filepath.Join(fs, "db"), func(o *Options) {
		o.SyncWrites = true
		o.MinFreeSpace = reserve
	})

	var accepted atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				m := msg("reply.received", fmt.Sprintf("w%d-%d", w, i))
				m.Body = make([]byte, 4<<10)
				for j := range m.Body {
					m.Body[j] = byte(r.Uint32()) // incompressible
				}
				_, _, err := s.Accept(context.Background(), m, time.Hour)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	err, _ := firstErr.Load().(error)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable)
	t.Logf("accepted %d (%.1f MiB of bodies) before: %v", accepted.Load(), float64(accepted.Load()*4)/1024, err)
	assert.Greater(t, accepted.Load(), int64(1000))

	// consistent: every accepted message is queued, nothing half-written
	ready := leased(t, s, 0)
	assert.Equal(t, accepted.Load(), int64(len(ready)))
	assert.Equal(t, accepted.Load(), stats(t, s).Queued)

	// the queue still drains
	for _, m := range ready[:10] {
		settleAs(t, s, m, queue.Delivered, time.Time{})
	}

	// accepted again once space is freed (compactions may already have
	// freed some: free space hovers around the reserve)
	require.NoError(t, os.Remove(filler))
	seq, dup, err := s.Accept(context.Background(), msg("reply.received", "late"), time.Hour)
	require.NoError(t, err)
	assert.False(t, dup)
	assert.Greater(t, seq, uint64(0))
}
