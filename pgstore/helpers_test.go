package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testMsg(key string) *queue.Message {
	return &queue.Message{
		Key: key, Event: "reply.received", ID: "msg_" + key, ContentType: "application/json",
		Headers: []queue.Header{{Name: "Webhook-Signature", Value: "v1,abc"}},
		Body:    []byte(`{"type":"reply.received","data":{"id":"` + key + `"}}`),
	}
}

// accept stores a new message under key (ttl 1h) and returns its seq.
func accept(t testing.TB, s *Store, key string) uint64 {
	t.Helper()
	seq, dup := acceptDup(t, s, key)
	require.False(t, dup, "key %q", key)
	return seq
}

func acceptDup(t testing.TB, s *Store, key string) (uint64, bool) {
	t.Helper()
	seq, dup, err := s.Accept(testCtx(t), testMsg(key), time.Hour)
	require.NoError(t, err)
	return seq, dup
}

func mustStats(t testing.TB, s *Store) queue.Stats {
	t.Helper()
	st, err := s.Stats(testCtx(t))
	require.NoError(t, err)
	return st
}

func countKeys(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.pool.QueryRow(testCtx(t), `SELECT count(*) FROM webhook_keys`).Scan(&n))
	return n
}
