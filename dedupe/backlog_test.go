package dedupe

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAcceptBacklogBounded: accepts whose callers gave up stay queued for
// the writer until their commit; while the disk stalls, new ones beyond
// maxQueuedAccepts bytes fail at once with ErrUnavailable instead of piling
// up in memory, and accepting works again once the writer catches up.
func TestAcceptBacklogBounded(t *testing.T) {
	old := maxQueuedAccepts
	maxQueuedAccepts = 64 << 10
	t.Cleanup(func() { maxQueuedAccepts = old })
	s := openTest(t, t.TempDir())

	// Stall the writer: its bookkeeping after a commit runs on its goroutine.
	stall, stalled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unstall := func() { once.Do(func() { close(stall) }) }
	t.Cleanup(unstall) // before Close, which waits for the writer
	require.NoError(t, s.submit(&op{kind: opPause, done: func(error) { close(stalled); <-stall }}))
	<-stalled

	body := strings.Repeat("x", 16<<10)
	queued := 0
	var refused error
	for i := range 20 {
		m := msg("e", "k"+strings.Repeat("0", i))
		m.Body = []byte(body)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _, err := s.Accept(ctx, m, time.Hour)
		cancel()
		if err == context.DeadlineExceeded {
			queued++
			continue
		}
		refused = err
		break
	}
	require.ErrorIs(t, refused, ErrUnavailable, "the backlog is refused before 20 × 16 KiB pile up")
	assert.Equal(t, 3, queued, "64 KiB hold three 16 KiB accepts and their keys")

	unstall()
	require.Eventually(t, func() bool { return s.acceptBytes.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	m := msg("e", "after")
	m.Body = []byte(body)
	_, dup, err := s.Accept(context.Background(), m, time.Hour)
	require.NoError(t, err)
	assert.False(t, dup)
	st, err := s.Stats(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, queued+1, st.Queued, "the queued accepts committed after all")
}
