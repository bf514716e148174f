package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

const testPassword = "s3cret-Pa55word"

// withPassword puts testPassword in a pgtest DSN (trust authentication
// accepts any password).
func withPassword(dsn string) string {
	return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+testPassword+"@", 1)
}

// requireNoPassword fails if any log entry mentions the password.
func requireNoPassword(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		text := e.Message + fmt.Sprint(e.ContextMap())
		require.NotContains(t, text, testPassword, "logged: %s", text)
		require.NotContains(t, text, "Pa55", "logged: %s", text)
	}
}

// TestOutage: with the server stopped, every call fails with ErrUnavailable
// long before its ctx ends; the outage and the recovery are each logged once;
// then everything works again by itself (pool and listener), nothing acked
// was lost, and the password appears in no log.
func TestOutage(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := withPassword(srv.NewDatabase(t))
	core, logs := observer.New(zapcore.DebugLevel)
	db := openDB(t, dsn, func(o *Options) { o.Logger = zap.New(core); o.PollInterval = time.Hour })
	s := openReceiver(t, db, "r")
	other := openReceiver(t, openDB(t, dsn, func(o *Options) { o.PollInterval = time.Hour }), "r")
	for i := range 5 {
		accept(t, s, fmt.Sprint("before-", i))
	}
	leased, err := s.Lease(testCtx(t), 1, time.Hour)
	require.NoError(t, err)
	require.Len(t, leased, 1)

	srv.Stop(t)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Accept", func(ctx context.Context) error { _, _, err := s.Accept(ctx, testMsg("during"), time.Hour); return err }},
		{"Lease", func(ctx context.Context) error { _, err := s.Lease(ctx, 10, time.Minute); return err }},
		{"Settle", func(ctx context.Context) error {
			return s.Settle(ctx, leased[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
		}},
		{"Release", func(ctx context.Context) error { return s.Release(ctx, leased) }},
		{"NextDue", func(ctx context.Context) error { _, _, err := s.NextDue(ctx); return err }},
		{"Stats", func(ctx context.Context) error { _, err := s.Stats(ctx); return err }},
		{"DeadLetters", func(ctx context.Context) error { _, err := s.DeadLetters(ctx, 0, 10); return err }},
		{"Replay", func(ctx context.Context) error { _, err := s.Replay(ctx, queue.Selector{All: true}); return err }},
		{"Purge", func(ctx context.Context) error { _, err := s.Purge(ctx, queue.Selector{All: true}); return err }},
		{"SetPaused", func(ctx context.Context) error { return s.SetPaused(ctx, true) }},
		{"Paused", func(ctx context.Context) error { _, err := s.Paused(ctx); return err }},
	}
	for round := range 3 {
		for _, c := range calls {
			t.Run(fmt.Sprintf("%s/%d", c.name, round), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				err := c.call(ctx)
				require.ErrorIs(t, err, queue.ErrUnavailable)
				require.NoError(t, ctx.Err(), "failed before its deadline (took %v)", time.Since(start))
			})
		}
	}
	require.True(t, db.Down())
	require.Equal(t, 1, logs.FilterMessageSnippet("postgresql unavailable").Len(), "the outage is logged once")

	srv.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := s.Accept(testCtx(t), testMsg("after"), time.Hour)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, queue.ErrUnavailable)
		require.True(t, time.Now().Before(deadline), "not recovered: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	// The listener reconnects by itself: a replica's accept wakes s (the
	// poll is an hour away).
	require.Eventually(t, func() bool { return db.listening.Load() }, 30*time.Second, 50*time.Millisecond)
	drain(s.Notify())
	accept(t, other, "from-the-other")
	require.True(t, signalled(s.Notify(), 10*time.Second), "notified through the reconnected listener")

	st := mustStats(t, s)
	require.EqualValues(t, 7, st.Queued, "5 before (1 leased), 1 after, 1 from the other replica")
	require.EqualValues(t, 1, st.Leased)
	require.False(t, db.Down())
	require.Equal(t, 1, logs.FilterMessage("postgresql available again").Len(), "the recovery is logged once")
	require.Equal(t, 1, logs.FilterMessageSnippet("postgresql unavailable").Len())
	requireNoPassword(t, logs)
}

// TestCrashUnderLoad: the server is killed (SIGKILL, as by a power cut)
// while accepters run, then restarted: every Accept that returned success
// is in the store afterwards; the failures match ErrUnavailable (or their
// ctx's deadline).
func TestCrashUnderLoad(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	core, logs := observer.New(zapcore.InfoLevel)
	db := openDB(t, dsn, func(o *Options) { o.Logger = zap.New(core) })
	s := openReceiver(t, db, "r")

	var (
		mu      sync.Mutex
		acked   = map[string]uint64{}
		failed  atomic.Int64
		badErrs []error
		next    atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprint("k", next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				seq, dup, err := s.Accept(ctx, testMsg(key), time.Hour)
				cancel()
				mu.Lock()
				switch {
				case err == nil && !dup:
					acked[key] = seq
				case err == nil:
					badErrs = append(badErrs, fmt.Errorf("%s: unexpected duplicate", key))
				case errors.Is(err, queue.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
					failed.Add(1)
				default:
					badErrs = append(badErrs, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	require.Eventually(t, func() bool { return ackedCount() > 200 }, 60*time.Second, 10*time.Millisecond)
	srv.Crash(t)
	before := ackedCount()
	time.Sleep(time.Second)
	srv.Start(t)
	require.Eventually(t, func() bool { return ackedCount() > before+200 }, 60*time.Second, 10*time.Millisecond, "accepting again")
	close(stop)
	wg.Wait()
	require.Empty(t, badErrs)
	require.NotZero(t, failed.Load(), "some accepts failed during the outage")

	stored := map[string]uint64{}
	for {
		ms, err := s.Lease(testCtx(t), 1000, time.Hour)
		require.NoError(t, err)
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			require.False(t, m.Corrupt)
			stored[m.Key] = m.Seq
		}
	}
	lost := 0
	for key, seq := range acked {
		if stored[key] != seq {
			lost++
		}
	}
	t.Logf("%d acked, %d failed, %d stored", len(acked), failed.Load(), len(stored))
	require.Zero(t, lost, "acked accepts lost in the crash")
	require.Equal(t, 1, logs.FilterMessageSnippet("postgresql unavailable").Len(), "the outage is logged once")
	require.Equal(t, 1, logs.FilterMessage("postgresql available again").Len(), "the recovery is logged once")
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func signalled(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestUnreachable: the server hangs (every process stopped: connections
// stay open, nothing answers, as when a network drops packets): calls end
// with their ctx (Accept with ctx.Err(), the others with ErrUnavailable),
// the store notices the outage by itself and logs it once, and once the
// server answers again everything works by itself.
func TestUnreachable(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	core, logs := observer.New(zapcore.InfoLevel)
	db := openDB(t, dsn, func(o *Options) { o.Logger = zap.New(core); o.WriteTimeout = 3 * time.Second })
	s := openReceiver(t, db, "r")
	for i := range 5 {
		accept(t, s, fmt.Sprint("before-", i))
	}
	srv.Freeze(t)
	calls := []struct {
		name string
		call func(ctx context.Context) error
		want error
	}{
		{"Accept", func(ctx context.Context) error { _, _, err := s.Accept(ctx, testMsg("during"), time.Hour); return err }, context.DeadlineExceeded},
		{"Lease", func(ctx context.Context) error { _, err := s.Lease(ctx, 10, time.Minute); return err }, queue.ErrUnavailable},
		{"Stats", func(ctx context.Context) error { _, err := s.Stats(ctx); return err }, queue.ErrUnavailable},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			err := c.call(ctx)
			require.ErrorIs(t, err, c.want)
			require.Less(t, time.Since(start), 5*time.Second, "bounded by its ctx")
		})
	}
	require.Eventually(t, db.Down, 30*time.Second, 50*time.Millisecond, "the store notices by itself")

	srv.Thaw(t)
	require.Eventually(t, func() bool {
		_, _, err := s.Accept(testCtx(t), testMsg("after"), time.Hour)
		return err == nil
	}, 60*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return !db.Down() }, 30*time.Second, 50*time.Millisecond)
	for i := range 5 {
		_, dup := acceptDup(t, s, fmt.Sprint("before-", i))
		require.True(t, dup, "acked before the outage, still there")
	}
	require.Equal(t, 1, logs.FilterMessageSnippet("postgresql unavailable").Len(), "the outage is logged once")
	require.Equal(t, 1, logs.FilterMessage("postgresql available again").Len(), "the recovery is logged once")
}
