package sender

import (
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// DefaultSchedule is the provider's retry schedule: the delays after the
// first, second, … failed attempt. Five retries, six attempts in all.
var DefaultSchedule = []time.Duration{
	30 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	8 * time.Hour,
}

// DefaultMaxRetryAfter caps how long a Retry-After answer can postpone the
// next attempt.
const DefaultMaxRetryAfter = 8 * time.Hour

// nextAttempt decides when a delivery that has just failed should be tried
// again. failures counts the failed attempts of the current round (1 after
// the first failure); finished is when the failed attempt ended; retryAfter
// is the delay the endpoint asked for (0 if none), honoured when it is longer
// than the scheduled one, but never beyond maxRetryAfter. ok is false when
// the schedule is exhausted and the delivery has failed for good.
func nextAttempt(schedule []time.Duration, failures int, finished time.Time, retryAfter, maxRetryAfter time.Duration) (due time.Time, ok bool) {
	if failures < 1 || failures > len(schedule) {
		return time.Time{}, false
	}
	return finished.Add(webhook.RetryDelay(schedule[failures-1], retryAfter, maxRetryAfter)), true
}
