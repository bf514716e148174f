package pgstore

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

// TestOpenErrors: bad DSNs and unreachable servers fail Open with a clear
// error that never holds the password.
func TestOpenErrors(t *testing.T) {
	srv := pgtest.Shared(t)
	tests := []struct {
		name, dsn, want string
		outage          bool // IsOutage: waiting may fix it
	}{
		{"not a dsn", "postgres://postgres:" + testPassword + "@127.0.0.1:notaport/db", "parsing the dsn", false},
		{"bad option", "postgres://postgres:" + testPassword + "@127.0.0.1/db?pool_max_conns=zero", "parsing the dsn", false},
		{"key=value form", "host=127.0.0.1 port=1 user=postgres password=" + testPassword + " dbname=db connect_timeout=2", "preparing the schema", true},
		{"no such database", withPassword(srv.DSN("no_such_database")), "preparing the schema", false},
		{"nothing listening", "postgres://postgres:" + testPassword + "@127.0.0.1:1/db?sslmode=disable", "preparing the schema", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			db, err := Open(ctx, tt.dsn, Options{})
			if db != nil {
				db.Close()
			}
			require.Error(t, err)
			t.Log(err)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), testPassword)
			require.NotContains(t, err.Error(), "Pa55")
			require.Equal(t, tt.outage, IsOutage(err), "IsOutage")
		})
	}
}

func TestReceiverNames(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t))
	ctx := testCtx(t)
	for name, bad := range map[string]string{
		"empty":    "",
		"too long": strings.Repeat("r", MaxNameLen+1),
		"not utf8": "r\xff",
		"nul":      "r\x00s",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := db.Receiver(ctx, bad)
			require.Error(t, err)
		})
	}
	s, err := db.Receiver(ctx, "léadterra/☃")
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, "léadterra/☃", s.Name())
}

// TestTooLarge: an envelope above MaxMessageSize is refused, nothing stored.
func TestTooLarge(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t), func(o *Options) { o.MaxMessageSize = 1000 })
	s := openReceiver(t, db, "r")
	m := testMsg("big")
	m.Body = make([]byte, 1000)
	_, _, err := s.Accept(testCtx(t), m, time.Hour)
	require.ErrorIs(t, err, queue.ErrTooLarge)
	require.Equal(t, queue.Stats{}, mustStats(t, s))
	m.Body = m.Body[:800]
	_, dup, err := s.Accept(testCtx(t), m, time.Hour)
	require.NoError(t, err)
	require.False(t, dup, "the refused one left no key")
}

// TestLeaseArguments: n <= 0 leases nothing; a hold must be positive.
func TestLeaseArguments(t *testing.T) {
	s := openReceiver(t, openDB(t, pgtest.NewDatabase(t)), "r")
	accept(t, s, "k")
	ms, err := s.Lease(testCtx(t), 0, time.Minute)
	require.NoError(t, err)
	require.Empty(t, ms)
	_, err = s.Lease(testCtx(t), 1, 0)
	require.Error(t, err)
	require.EqualValues(t, 1, mustStats(t, s).Queued)
}

// TestReceiverCloseKeepsDB: closing one receiver's store leaves the DB and
// the other receivers working; closing the DB closes every store.
func TestReceiverCloseKeepsDB(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t))
	a, b := openReceiver(t, db, "a"), openReceiver(t, db, "b")
	require.NoError(t, a.Close())
	accept(t, b, "k")
	a2 := openReceiver(t, db, "a")
	accept(t, a2, "k")
	require.NoError(t, db.Close())
	_, _, err := b.Accept(testCtx(t), testMsg("k2"), time.Hour)
	require.ErrorIs(t, err, queue.ErrClosed)
	_, err = b.Stats(testCtx(t))
	require.ErrorIs(t, err, queue.ErrClosed)
	_, err = db.Receiver(testCtx(t), "c")
	require.ErrorIs(t, err, queue.ErrClosed)
}

// TestConnectionSettings: the store's connections run without sequential
// and bitmap scans and with generic plans (the statements are planned once
// per connection, not at each execution: a custom plan of the bulk delete
// cost 0.2 ms of the server's CPU each time), and say who they are unless
// the DSN does.
func TestConnectionSettings(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	for _, tt := range []struct {
		name, dsn, app string
	}{
		{"default", dsn, "caddy-webhooks"},
		{"application_name in the dsn", dsn + "&application_name=replica7", "replica7"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, tt.dsn, func(o *Options) { o.MaxConns = 1 })
			s := openReceiver(t, db, "r")
			ctx := testCtx(t)
			for setting, want := range map[string]string{
				"enable_seqscan": "off", "enable_bitmapscan": "off",
				"plan_cache_mode": "force_generic_plan", "application_name": tt.app,
			} {
				var got string
				require.NoError(t, db.pool.QueryRow(ctx, `SELECT current_setting($1)`, setting).Scan(&got))
				require.Equal(t, want, got, setting)
			}
			// Accepts, leases and settles, in batches as a forwarder makes
			// them, on the pool's one connection.
			for round := range 12 {
				for i := range 4 {
					accept(t, s, fmt.Sprintf("%s-%d-%d", tt.name, round, i))
				}
				ms, err := s.Lease(ctx, 4, time.Minute)
				require.NoError(t, err)
				for _, m := range ms {
					require.NoError(t, s.Settle(ctx, m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1}))
				}
			}
			var custom int64
			require.NoError(t, db.pool.QueryRow(ctx, `SELECT coalesce(sum(custom_plans), 0) FROM pg_prepared_statements`).Scan(&custom))
			require.Zero(t, custom, "statements planned again at executions (custom plans)")
		})
	}
}

// TestDisplayDSN: the password is shown nowhere, whatever form the DSN
// takes (the review found ?password= and spaced key=value forms leaking).
func TestDisplayDSN(t *testing.T) {
	// pgconn fills what a DSN leaves out from the PG* environment.
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGSSLROOTCERT"} {
		t.Setenv(v, "")
	}
	for _, c := range []struct{ dsn, want string }{
		{"postgres://app:hunter2@db:5432/w?sslmode=disable", "postgres://app@db:5432/w"},
		{"postgres://app@db/w?password=hunter2", "postgres://app@db:5432/w"},
		{"postgresql://app:hunter2@db:6543/w", "postgres://app@db:6543/w"},
		{"host=db user=app password=hunter2 dbname=w", "postgres://app@db:5432/w"},
		{"host=db user=app password = hunter2 dbname=w", "postgres://app@db:5432/w"},
		{"host=db user=app password='hunter2 hunter2' dbname=w", "postgres://app@db:5432/w"},
		{"not a dsn ://", "(unparsable dsn)"},
	} {
		got := DisplayDSN(c.dsn)
		if got != c.want || strings.Contains(got, "hunter2") {
			t.Errorf("DisplayDSN(%q) = %q, want %q", c.dsn, got, c.want)
		}
	}
}

// TestSessionTimeouts: the store's sessions end a transaction left idle
// (a replica whose host died in it) and give up waiting for a lock, unless
// the DSN sets these itself; a migration still waits for another replica's
// as long as Open's ctx lets.
func TestSessionTimeouts(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	// The server's TCP keepalive and user timeout (a dead peer noticed in
	// about a minute), in SHOW's units.
	keepalive := map[string]string{
		"tcp_keepalives_idle": "20", "tcp_keepalives_interval": "10",
		"tcp_keepalives_count": "3", "tcp_user_timeout": "60000",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		m = maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name, params string
		idle, lock   string
		keepalive    map[string]string
	}{
		{"defaults", "", "30s", "5s", keepalive},
		{"set by the dsn", "&lock_timeout=1500ms&idle_in_transaction_session_timeout=0&tcp_keepalives_idle=300&tcp_user_timeout=0", "0", "1500ms",
			with(keepalive, "tcp_keepalives_idle", "300", "tcp_user_timeout", "0")},
		{"set by the dsn's options", "&options=-c%20lock_timeout%3D2s%20-c%20tcp_keepalives_count%3D7", "30s", "2s",
			with(keepalive, "tcp_keepalives_count", "7")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, dsn+tt.params)
			var idle, lock string
			ctx := testCtx(t)
			require.NoError(t, db.pool.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&idle))
			require.NoError(t, db.pool.QueryRow(ctx, `SHOW lock_timeout`).Scan(&lock))
			require.Equal(t, tt.idle, idle)
			require.Equal(t, tt.lock, lock)
			for name, want := range tt.keepalive {
				var got string
				require.NoError(t, db.pool.QueryRow(ctx, `SHOW `+name).Scan(&got))
				require.Equal(t, want, got, name)
			}
		})
	}

	t.Run("a migration waits for another's past lock_timeout", func(t *testing.T) {
		ctx := testCtx(t)
		holder, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		defer holder.Close(context.Background())
		tx, err := holder.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock)
		require.NoError(t, err)
		// The rollback runs on holder's connection in another goroutine: the
		// test waits for it before the deferred Close uses the connection,
		// whether it passes or fails.
		released := make(chan struct{})
		time.AfterFunc(time.Second, func() {
			defer close(released)
			tx.Rollback(context.Background())
		})
		defer func() { <-released }()
		start := time.Now()
		db := openDB(t, dsn+"&lock_timeout=100ms")
		require.GreaterOrEqual(t, time.Since(start), time.Second, "Open waited for the schema lock")
		var lock string
		require.NoError(t, db.pool.QueryRow(ctx, `SHOW lock_timeout`).Scan(&lock))
		require.Equal(t, "100ms", lock)
	})
}
