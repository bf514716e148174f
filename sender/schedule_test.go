package sender

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestNextAttempt(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		schedule   []time.Duration
		failures   int
		retryAfter time.Duration
		maxRA      time.Duration
		wantDelay  time.Duration
		wantOK     bool
	}{
		{"first failure waits 30s", DefaultSchedule, 1, 0, DefaultMaxRetryAfter, 30 * time.Second, true},
		{"second failure waits 5m", DefaultSchedule, 2, 0, DefaultMaxRetryAfter, 5 * time.Minute, true},
		{"third failure waits 30m", DefaultSchedule, 3, 0, DefaultMaxRetryAfter, 30 * time.Minute, true},
		{"fourth failure waits 2h", DefaultSchedule, 4, 0, DefaultMaxRetryAfter, 2 * time.Hour, true},
		{"fifth failure waits 8h", DefaultSchedule, 5, 0, DefaultMaxRetryAfter, 8 * time.Hour, true},
		{"sixth failure is final", DefaultSchedule, 6, 0, DefaultMaxRetryAfter, 0, false},
		{"zero failures is not a retry", DefaultSchedule, 0, 0, DefaultMaxRetryAfter, 0, false},
		{"shorter Retry-After is ignored", DefaultSchedule, 2, time.Minute, DefaultMaxRetryAfter, 5 * time.Minute, true},
		{"longer Retry-After is honoured", DefaultSchedule, 1, 10 * time.Minute, DefaultMaxRetryAfter, 10 * time.Minute, true},
		{"Retry-After is capped", DefaultSchedule, 1, 48 * time.Hour, DefaultMaxRetryAfter, 8 * time.Hour, true},
		{"cap never shortens the schedule", DefaultSchedule, 5, 48 * time.Hour, time.Hour, 8 * time.Hour, true},
		{"custom schedule", []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}, 2, 0, time.Second, 100 * time.Millisecond, true},
		{"custom schedule exhausted", []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}, 3, 0, time.Second, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			due, ok := nextAttempt(tc.schedule, tc.failures, t0, tc.retryAfter, tc.maxRA)
			assert.Equal(t, tc.wantOK, ok)
			if tc.wantOK {
				assert.Equal(t, tc.wantDelay, due.Sub(t0))
			}
		})
	}
}

// TestDefaultScheduleTotal checks the seed's numbers: 5 retries, about
// 10 h 35 min from the first attempt to the last.
func TestDefaultScheduleTotal(t *testing.T) {
	t0 := time.Unix(0, 0)
	at, failures := t0, 0
	for {
		failures++
		next, ok := nextAttempt(DefaultSchedule, failures, at, 0, DefaultMaxRetryAfter)
		if !ok {
			break
		}
		at = next
	}
	assert.Equal(t, 6, failures, "attempts in all")
	assert.Equal(t, 10*time.Hour+35*time.Minute+30*time.Second, at.Sub(t0))
}
