package forward

import (
	"math/rand/v2"
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// now is the forwarder's clock; tests replace it.
var now = time.Now

// retryDelay is the wait after the attempts-th failed attempt (1-based): the
// schedule's entry for it, the last entry repeating, spread by jitter.
func retryDelay(schedule []time.Duration, attempts int, jitter float64, rnd func() float64) time.Duration {
	i := attempts - 1
	if i < 0 {
		i = 0
	}
	if i >= len(schedule) {
		i = len(schedule) - 1
	}
	d := schedule[i]
	if jitter > 0 {
		// uniform in [1-jitter, 1+jitter)
		f := 1 - jitter + 2*jitter*rnd()
		d = time.Duration(float64(d) * f)
	}
	return d
}

// nextAttempt decides what follows a failed attempt: the time of the next
// one, or dead=true when it would fall after acceptedAt+retryFor.
// retryAfter (0 = none) lengthens the wait when the upstream asked for more,
// capped at MaxRetryAfter (which never shortens the schedule).
func nextAttempt(c *Config, acceptedAt, failedAt time.Time, attempts int, retryAfter time.Duration) (time.Time, bool) {
	d := webhook.RetryDelay(retryDelay(c.Retry, attempts, c.Jitter, rand.Float64), retryAfter, c.MaxRetryAfter)
	next := failedAt.Add(d)
	if next.Sub(acceptedAt) > c.RetryFor {
		return time.Time{}, true
	}
	return next, false
}
