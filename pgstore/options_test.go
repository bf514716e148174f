package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"

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
	}{
		{"not a dsn", "postgres://postgres:" + testPassword + "@127.0.0.1:notaport/db", "parsing the dsn"},
		{"bad option", "postgres://postgres:" + testPassword + "@127.0.0.1/db?pool_max_conns=zero", "parsing the dsn"},
		{"key=value form", "host=127.0.0.1 port=1 user=postgres password=" + testPassword + " dbname=db connect_timeout=2", "preparing the schema"},
		{"no such database", withPassword(srv.DSN("no_such_database")), "preparing the schema"},
		{"nothing listening", "postgres://postgres:" + testPassword + "@127.0.0.1:1/db?sslmode=disable", "preparing the schema"},
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
