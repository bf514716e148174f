package forward

import (
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rate
		err  string
	}{
		{"20/s", Rate{20, time.Second}, ""},
		{"600/m", Rate{600, time.Minute}, ""},
		{"1/h", Rate{1, time.Hour}, ""},
		{" 5/s ", Rate{5, time.Second}, ""},
		{"20", Rate{}, "want <n>/<s|m|h>"},
		{"0/s", Rate{}, "not a positive whole number"},
		{"-3/s", Rate{}, "not a positive whole number"},
		{"x/s", Rate{}, "not a positive whole number"},
		{"20/d", Rate{}, "unit must be s, m or h"},
		{"2000000000/s", Rate{}, "too high"},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseRate(c.in)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.want, must(ParseRate(got.String())), "String round-trips")
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The limiter spaces starts Per/N apart whatever is asked, never lets a
// window of Per hold more than N, gives back what was not used, and a long
// idle period earns no burst.
func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLimiter(Rate{N: 20, Per: time.Second}) // every 50 ms
	g, w := l.Take(t0, 10)
	assert.Equal(t, 1, g, "one at a time: smoothed")
	assert.Zero(t, w)
	g, w = l.Take(t0.Add(10*time.Millisecond), 10)
	assert.Equal(t, 0, g)
	assert.Equal(t, 40*time.Millisecond, w, "until the next slot")
	g, _ = l.Take(t0.Add(50*time.Millisecond), 10)
	assert.Equal(t, 1, g)
	l.Return(1) // not used: its slot is free again
	g, _ = l.Take(t0.Add(50*time.Millisecond), 10)
	assert.Equal(t, 1, g)

	// An hour idle earns one start, not a burst.
	later := t0.Add(time.Hour)
	g, _ = l.Take(later, 100)
	assert.Equal(t, 1, g)
	g, _ = l.Take(later, 100)
	assert.Equal(t, 0, g)

	// Asked as fast as possible for 10 s: never more than 20 in a second.
	var starts []time.Time
	at := t0.Add(2 * time.Hour)
	for end := at.Add(10 * time.Second); at.Before(end); at = at.Add(time.Millisecond) {
		if g, _ := l.Take(at, 5); g > 0 {
			for range g {
				starts = append(starts, at)
			}
		}
	}
	assert.InDelta(t, 200, len(starts), 1)
	assert.LessOrEqual(t, maxInWindow(starts, time.Second), 20)
	assert.Nil(t, NewLimiter(Rate{}), "no rate, no limiter")
}

// maxInWindow is the most times within any half-open window [t, t+w).
func maxInWindow(ts []time.Time, w time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestForwarderRate: with a rate cap the queue drains at the cap, no faster,
// nothing fails for it, and the wait is reported.
func TestForwarderRate(t *testing.T) {
	s := openStore(t, t.TempDir())
	rec := newRecorder(t, nil)
	var (
		mu       sync.Mutex // the recorder calls status concurrently
		arrivals []time.Time
	)
	rec.status = func(n int, r *http.Request) int {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		return http.StatusNoContent
	}
	accept(t, s, 30)
	obs := &countingObserver{}
	start := time.Now()
	startForwarder(t, s, Config{Upstream: rec.srv.URL, Concurrency: 8, Rate: Rate{N: 20, Per: time.Second}}, obs)
	require.Eventually(t, func() bool { return rec.count() == 30 }, 10*time.Second, 10*time.Millisecond)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 1400*time.Millisecond, "30 at 20/s take at least 1.45 s")
	mu.Lock()
	got := maxInWindow(append([]time.Time(nil), arrivals...), 950*time.Millisecond)
	mu.Unlock()
	assert.LessOrEqual(t, got, 20, "never more than the cap in a window (5%% slack for scheduling)")
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 30, obs.results[ResultDelivered])
	assert.Positive(t, obs.throttled, "the wait for the cap is reported")
	assert.Zero(t, stats(t, s).Retrying+stats(t, s).Dead)
}
