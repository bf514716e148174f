package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter reads a Retry-After header value, delay-seconds or an HTTP
// date (relative to now). It returns 0 when absent, unparsable or not in the
// future. Both the receiver's forwarder and the sender honour it.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64((1<<63-1)/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// RetryDelay is the wait before the next attempt: the scheduled delay, or
// the endpoint's Retry-After when that asks for longer, capped at maxWait. The
// cap never shortens the schedule itself.
func RetryDelay(scheduled, retryAfter, maxWait time.Duration) time.Duration {
	if retryAfter <= scheduled {
		return scheduled
	}
	return min(retryAfter, max(maxWait, scheduled))
}
