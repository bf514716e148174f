package pgstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestSweep: sweep deletes exactly the expired keys, in batches, and an
// expired key is absent for Accept before and after it is deleted.
func TestSweep(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDB(t, dsn, func(o *Options) { o.JanitorBatch = 3; o.JanitorInterval = time.Hour })
	s := openReceiver(t, db, "r")
	ctx := testCtx(t)
	ttls := []struct {
		prefix string
		ttl    time.Duration
		n      int
	}{
		{"hour", time.Hour, 10},
		{"day", 24 * time.Hour, 4},
		{"forever", 0, 3},
	}
	for _, tt := range ttls {
		for i := range tt.n {
			_, dup, err := s.Accept(ctx, testMsg(fmt.Sprintf("%s-%d", tt.prefix, i)), tt.ttl)
			require.NoError(t, err)
			require.False(t, dup)
		}
	}
	_, _, err := s.Accept(ctx, testMsg(""), time.Hour) // no key: nothing to sweep
	require.NoError(t, err)
	require.Equal(t, 17, countKeys(t, db))

	n, err := db.sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing expired yet")

	setNow(t, time.Now().Add(2*time.Hour))
	_, dup, err := s.Accept(ctx, testMsg("hour-0"), time.Hour)
	require.NoError(t, err)
	require.False(t, dup, "expired: absent before the janitor ran")
	n, err = db.sweep(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 9, n, "the other nine expired keys, in batches of 3")
	require.Equal(t, 8, countKeys(t, db))
	for _, key := range []string{"day-0", "forever-2", "hour-0"} {
		_, dup, err := s.Accept(ctx, testMsg(key), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "%s kept", key)
	}
	_, dup, err = s.Accept(ctx, testMsg("hour-5"), time.Hour)
	require.NoError(t, err)
	require.False(t, dup, "deleted key absent")
}

// TestJanitorRuns: the background janitor deletes expired keys by itself.
func TestJanitorRuns(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDB(t, dsn, func(o *Options) { o.JanitorBatch = 2; o.JanitorInterval = 100 * time.Millisecond })
	s := openReceiver(t, db, "r")
	for i := range 5 {
		_, _, err := s.Accept(testCtx(t), testMsg(fmt.Sprint("short-", i)), time.Second)
		require.NoError(t, err)
	}
	accept(t, s, "long")
	deadline := time.Now().Add(30 * time.Second)
	for countKeys(t, db) != 1 {
		require.True(t, time.Now().Before(deadline), "expired keys still there: %d keys", countKeys(t, db))
		time.Sleep(100 * time.Millisecond)
	}
}

// setNow moves the store's clock to t for the rest of the test.
func setNow(tb testing.TB, t time.Time) {
	offset := time.Until(t)
	old := now
	now = func() time.Time { return time.Now().Add(offset) }
	tb.Cleanup(func() { now = old })
}
