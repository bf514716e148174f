package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Limiter caps the forwarding attempts of one receiver across every replica
// sharing the database: the generic cell rate algorithm with no burst, its
// theoretical arrival time kept in the receiver's row (webhook_receivers.
// rate_tat) and advanced under the row's lock, on the database's clock (the
// one clock the replicas share). It has the shape of forward.Limiter.
//
// Each Take is one round trip. When the database cannot be reached, Take
// grants nothing and asks to wait a little: forwarding cannot settle
// anything then anyway.
type Limiter struct {
	s     *Store
	every time.Duration
}

// Limiter returns the limiter of at most n attempts per per, shared by every
// replica of the receiver; nil when n <= 0 (no cap). Replicas should all use
// the same rate.
func (s *Store) Limiter(n int, per time.Duration) *Limiter {
	if n <= 0 || per/time.Duration(n) <= 0 {
		return nil
	}
	return &Limiter{s: s, every: per / time.Duration(n)}
}

// limiterRetry is how long Take asks to wait when the database fails.
const limiterRetry = 200 * time.Millisecond

// Take grants at most one attempt start (no burst: starts are spaced by
// per/n across every replica), or says how long until the next one may
// start. now is ignored: the database's clock decides.
func (l *Limiter) Take(_ time.Time, n int) (granted int, wait time.Duration) {
	if n <= 0 {
		return 0, 0
	}
	ctx, done, gen, err := l.s.call(context.Background())
	if err != nil {
		return 0, limiterRetry
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ok bool
	var waitSeconds float64
	b := &pgx.Batch{}
	b.Queue(sqlAsync)
	b.Queue(sqlRateTake, l.s.id, l.every.Microseconds()).QueryRow(func(row pgx.Row) error {
		return row.Scan(&ok, &waitSeconds)
	})
	if err := l.s.db.pool.SendBatch(ctx, b).Close(); err != nil {
		l.s.fail(ctx, "taking from the rate limiter", internal(err))
		return 0, limiterRetry
	}
	l.s.db.health.ok(gen)
	if ok {
		return 1, 0
	}
	return 0, max(time.Duration(waitSeconds*float64(time.Second)), time.Millisecond)
}

// Return gives back n starts that were granted and not used.
func (l *Limiter) Return(n int) {
	if n <= 0 {
		return
	}
	ctx, done, _, err := l.s.call(context.Background())
	if err != nil {
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(sqlAsync)
	b.Queue(sqlRateReturn, l.s.id, int64(n)*l.every.Microseconds())
	if err := l.s.db.pool.SendBatch(ctx, b).Close(); err != nil {
		l.s.fail(ctx, "returning to the rate limiter", internal(err))
	}
}
