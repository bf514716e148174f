package pgstore

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestLimiterShared: two replicas taking as fast as they can from the limiter
// of one receiver start at most one attempt per interval between them.
func TestLimiterShared(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openReceiver(t, openDB(t, dsn), "r")
	b := openReceiver(t, openDB(t, dsn), "r")
	other := openReceiver(t, openDB(t, dsn), "other")
	require.Nil(t, a.Limiter(0, time.Second), "no cap")

	const rate = 20 // per second: one start every 50ms
	limiters := []*Limiter{a.Limiter(rate, time.Second), b.Limiter(rate, time.Second)}
	var granted, badWaits atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(1500 * time.Millisecond)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := limiters[i%2]
			for time.Now().Before(deadline) {
				n, wait := l.Take(time.Now(), 8)
				granted.Add(int64(n))
				if n == 0 {
					if wait <= 0 {
						badWaits.Add(1)
					}
					time.Sleep(min(wait, time.Until(deadline)))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	most := int64(elapsed/(time.Second/rate)) + 1
	t.Logf("%d starts granted in %v (at most %d)", granted.Load(), elapsed, most)
	require.LessOrEqual(t, granted.Load(), most, "never more than the rate across replicas")
	require.Positive(t, granted.Load())
	require.Zero(t, badWaits.Load(), "a refusal says how long to wait")

	// another receiver's limiter is its own
	n, _ := other.Limiter(rate, time.Second).Take(time.Now(), 1)
	require.Equal(t, 1, n)

	// a start given back may be taken at once
	slow := []*Limiter{a.Limiter(1, time.Hour), b.Limiter(1, time.Hour)}
	time.Sleep(100 * time.Millisecond) // past the last tat of the fast rate
	n, _ = slow[0].Take(time.Now(), 1)
	require.Equal(t, 1, n)
	n, wait := slow[1].Take(time.Now(), 1)
	require.Zero(t, n, "one per hour")
	require.Greater(t, wait, 59*time.Minute)
	slow[0].Return(1)
	n, _ = slow[1].Take(time.Now(), 1)
	require.Equal(t, 1, n, "given back")
}
