package caddymodule

import (
	"sync/atomic"
	"time"
)

// bodyBudget bounds the request body bytes held by all receivers at once, so
// that what strangers announce or trickle in cannot grow the process without
// bound (SPEC §10). One per process; the running config sets its limit.
type bodyBudget struct {
	limit  atomic.Int64
	used   atomic.Int64
	warned oncePerMinute // the "over budget" log
}

var theBodyBudget = new(bodyBudget)

// theBodyBudget starts at the default so that a request served before any
// config started (a handler tested alone) is bounded too.
func init() { theBodyBudget.setLimit(DefaultMaxBodyInFlight) }

// setLimit sets the limit (the running config's max_body_in_flight).
func (b *bodyBudget) setLimit(limit int64) { b.limit.Store(limit) }

// take reserves n bytes; false when that would pass the limit.
func (b *bodyBudget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit.Load() {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *bodyBudget) give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

func (b *bodyBudget) max() int64 { return b.limit.Load() }

// warnDue reports whether a warning about the budget may be logged now (at
// most once a minute).
func (b *bodyBudget) warnDue() bool { return b.warned.due() }

// oncePerMinute paces a warning a flood would repeat.
type oncePerMinute struct{ last atomic.Int64 } // unix nanos

// due reports whether the warning may be logged now, and if so counts it.
func (o *oncePerMinute) due() bool {
	now := time.Now().UnixNano()
	last := o.last.Load()
	return now-last >= int64(time.Minute) && o.last.CompareAndSwap(last, now)
}
