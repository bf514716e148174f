package caddymodule

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/pgstore"
	"github.com/leadterra/caddy-webhooks/queue"
)

// PostgreSQL storage. One *pgstore.DB (pool, schema, LISTEN connection,
// janitor) per DSN is shared by every receiver that names it, through a
// caddy.UsagePool, so that a reload keeps its connections.
//
// A database that cannot be reached, or refuses the login (a wrong password,
// no such role, no such database), when Caddy starts does not stop Caddy
// from starting (it serves other sites): the receivers answer 503 with
// Retry-After and forward nothing until it is reached, which is tried again
// in the background. Other errors fail the start: a DSN that does not
// parse, a schema newer than this build, a missing permission. During a
// reload, a refusal fails the reload too.

var pgPools = caddy.NewUsagePool()

// pgFirstTimeout bounds the attempt to reach the database while a config
// starts (Caddy's other sites may wait for it); pgConnectTimeout bounds each
// attempt after it, in the background; pgRetry* pace those.
var (
	pgFirstTimeout   = 3 * time.Second
	pgConnectTimeout = 10 * time.Second
	pgRetryMin       = time.Second
	pgRetryMax       = 30 * time.Second
)

// pgShared is one DSN's database, opened now or in the background.
type pgShared struct {
	dsn    string
	logger *zap.Logger
	ready  chan struct{} // closed once db is set
	db     atomic.Pointer[pgstore.DB]
	stop   context.CancelFunc
	done   chan struct{}
}

// acquirePostgres returns the shared database of dsn (the caller releases it
// with pgPools.Delete(dsn)). A database that cannot be reached is tried
// again in the background, its receivers answering 503 meanwhile. So is one
// that refuses the login (pgRefusedLogin) when no receivers run yet: Caddy's
// other sites must come up while the database is being set up. During a
// reload (receivers run), a refusal fails the reload instead, and the
// running config stays in force. Any other error fails the start or the
// reload: a DSN that does not parse, a schema newer than this build, a
// missing permission are not fixed by waiting.
func acquirePostgres(dsn string, logger *zap.Logger) (*pgShared, error) {
	refuse := activeReceivers.Load() != nil
	v, _, err := pgPools.LoadOrNew(dsn, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), pgFirstTimeout)
		db, err := pgstore.Open(ctx, dsn, pgstore.Options{Logger: logger})
		cancel()
		p := &pgShared{dsn: dsn, logger: logger, ready: make(chan struct{}), done: make(chan struct{})}
		var bg context.Context
		bg, p.stop = context.WithCancel(context.Background())
		if err == nil {
			p.db.Store(db)
			close(p.ready)
			close(p.done)
			return p, nil
		}
		outage := pgstore.IsOutage(err) || errors.Is(err, context.DeadlineExceeded)
		if !outage && (refuse || !pgRefusedLogin(err)) {
			p.stop()
			return nil, err
		}
		what := "unreachable"
		if !outage {
			what = "refused the connection"
		}
		logger.Error("PostgreSQL "+what+"; its receivers answer 503 and forward nothing until it is reached (trying again in the background)",
			zap.Error(err))
		go p.retry(bg)
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pgShared), nil
}

// pgRefusedLogin reports whether the server refused the connection itself:
// the login (28P01 wrong password, 28000 no such role or not allowed by
// pg_hba.conf) or the database (3D000, none of that name). Those are fixed
// on the server's side, often while Caddy already runs.
func pgRefusedLogin(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "28P01", "28000", "3D000":
		return true
	}
	return false
}

// retry opens the database until it works or the pool entry is destroyed.
func (p *pgShared) retry(ctx context.Context) {
	defer close(p.done)
	wait := pgRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		octx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
		db, err := pgstore.Open(octx, p.dsn, pgstore.Options{Logger: p.logger})
		cancel()
		if err == nil {
			p.db.Store(db)
			close(p.ready)
			p.logger.Info("PostgreSQL reached; its receivers are serving")
			return
		}
		if !pgstore.IsOutage(err) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			p.logger.Error("PostgreSQL refused the connection; trying again", zap.Error(err))
		}
		wait = min(2*wait, pgRetryMax)
	}
}

// Destruct stops the background attempts and closes the database.
func (p *pgShared) Destruct() error {
	p.stop()
	<-p.done
	if db := p.db.Load(); db != nil {
		return db.Close()
	}
	return nil
}

// openPostgresStore opens a receiver's store on PostgreSQL (see runtime.go).
func openPostgresStore(o runtimeOptions) (queue.Store, func() error, error) {
	p, err := acquirePostgres(o.storage.DSN, o.logger.Named("postgres"))
	if err != nil {
		return nil, nil, err
	}
	s := &pgReceiver{name: o.name, shared: p, logger: o.logger, notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWait = cancel
	s.waited = make(chan struct{})
	go s.attach(ctx)
	closeStore := func() error {
		s.stopWait()
		<-s.waited
		var err error
		if in := s.inner.Load(); in != nil {
			err = in.Close()
		}
		_, derr := pgPools.Delete(o.storage.DSN)
		return errors.Join(err, derr)
	}
	// With the database reached, wait for the receiver's registration, so
	// that a config starting with the database up serves at once.
	select {
	case <-p.ready:
		select {
		case <-s.waited:
		case <-time.After(pgFirstTimeout):
		}
	default:
	}
	return s, closeStore, nil
}

// pgReceiver is a receiver's PostgreSQL store, or, until the database is
// reached, a store whose every call is queue.ErrUnavailable.
type pgReceiver struct {
	name     string
	shared   *pgShared
	logger   *zap.Logger
	inner    atomic.Pointer[pgstore.Store]
	notify   chan struct{}
	stopWait context.CancelFunc
	waited   chan struct{}
}

// attach registers the receiver in the database once it is reached.
func (s *pgReceiver) attach(ctx context.Context) {
	defer close(s.waited)
	select {
	case <-s.shared.ready:
	case <-ctx.Done():
		return
	}
	wait := pgRetryMin
	for {
		rctx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
		st, err := s.shared.db.Load().Receiver(rctx, s.name)
		cancel()
		if err == nil {
			s.inner.Store(st)
			select {
			case s.notify <- struct{}{}:
			default:
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, pgRetryMax)
	}
}

var errNotReached = queue.Unavailable(errors.New("PostgreSQL not reached yet"))

func (s *pgReceiver) Accept(ctx context.Context, m *queue.Message, ttl time.Duration) (uint64, bool, error) {
	if in := s.inner.Load(); in != nil {
		return in.Accept(ctx, m, ttl)
	}
	return 0, false, errNotReached
}

func (s *pgReceiver) Lease(ctx context.Context, n int, hold time.Duration) ([]*queue.Message, error) {
	if in := s.inner.Load(); in != nil {
		return in.Lease(ctx, n, hold)
	}
	return nil, nil // nothing to forward yet; not a read failure to log
}

func (s *pgReceiver) Settle(ctx context.Context, m *queue.Message, o queue.Outcome) error {
	if in := s.inner.Load(); in != nil {
		return in.Settle(ctx, m, o)
	}
	return errNotReached
}

func (s *pgReceiver) Release(ctx context.Context, ms []*queue.Message) error {
	if in := s.inner.Load(); in != nil {
		return in.Release(ctx, ms)
	}
	return errNotReached
}

func (s *pgReceiver) NextDue(ctx context.Context) (time.Time, bool, error) {
	if in := s.inner.Load(); in != nil {
		return in.NextDue(ctx)
	}
	return time.Time{}, false, nil
}

// Notify is the store's channel once the database is reached; before, one
// that fires when it is.
func (s *pgReceiver) Notify() <-chan struct{} {
	if in := s.inner.Load(); in != nil {
		return in.Notify()
	}
	return s.notify
}

func (s *pgReceiver) Stats(ctx context.Context) (queue.Stats, error) {
	if in := s.inner.Load(); in != nil {
		return in.Stats(ctx)
	}
	return queue.Stats{}, errNotReached
}

func (s *pgReceiver) DeadLetters(ctx context.Context, before uint64, limit int) ([]*queue.Message, error) {
	if in := s.inner.Load(); in != nil {
		return in.DeadLetters(ctx, before, limit)
	}
	return nil, errNotReached
}

func (s *pgReceiver) DeadLetter(ctx context.Context, seq uint64) (*queue.Message, error) {
	if in := s.inner.Load(); in != nil {
		return in.DeadLetter(ctx, seq)
	}
	return nil, errNotReached
}

func (s *pgReceiver) Replay(ctx context.Context, sel queue.Selector) (int, error) {
	if in := s.inner.Load(); in != nil {
		return in.Replay(ctx, sel)
	}
	return 0, errNotReached
}

func (s *pgReceiver) Purge(ctx context.Context, sel queue.Selector) (int, error) {
	if in := s.inner.Load(); in != nil {
		return in.Purge(ctx, sel)
	}
	return 0, errNotReached
}

func (s *pgReceiver) SetPaused(ctx context.Context, paused bool) error {
	if in := s.inner.Load(); in != nil {
		return in.SetPaused(ctx, paused)
	}
	return errNotReached
}

func (s *pgReceiver) Paused(ctx context.Context) (bool, error) {
	if in := s.inner.Load(); in != nil {
		return in.Paused(ctx)
	}
	return false, errNotReached
}

// Close is the runtime's (closeStore): the inner store and the pool share.
func (s *pgReceiver) Close() error { return nil }

// limiter is the receiver's rate cap shared by every replica (the state is
// in the database), nil without a rate.
func (s *pgReceiver) limiter(r forward.Rate) forward.Limiter {
	if r.IsZero() {
		return nil
	}
	return &pgLimiter{s: s, rate: r}
}

// pgLimiter takes from the database's limiter once the store is reached.
type pgLimiter struct {
	s    *pgReceiver
	rate forward.Rate
	mu   sync.Mutex
	lim  *pgstore.Limiter
}

func (l *pgLimiter) get() *pgstore.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim == nil {
		if in := l.s.inner.Load(); in != nil {
			l.lim = in.Limiter(l.rate.N, l.rate.Per)
		}
	}
	return l.lim
}

func (l *pgLimiter) Take(now time.Time, n int) (int, time.Duration) {
	if lim := l.get(); lim != nil {
		return lim.Take(now, n)
	}
	return 0, 200 * time.Millisecond
}

func (l *pgLimiter) Return(n int) {
	if lim := l.get(); lim != nil {
		lim.Return(n)
	}
}

// Interface guards
var (
	_ queue.Store      = (*pgReceiver)(nil)
	_ caddy.Destructor = (*pgShared)(nil)
	_ forward.Limiter  = (*pgLimiter)(nil)
)
