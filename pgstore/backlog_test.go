package pgstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

// queued returns the ops in db.queue, how many of them are abandoned, and
// the bytes the accepts charge.
func queued(db *DB) (n, abandoned int, bytes int64) {
	db.qmu.Lock()
	defer db.qmu.Unlock()
	for _, o := range db.queue {
		if o.abandoned {
			abandoned++
		}
	}
	return len(db.queue), abandoned, db.qbytes
}

// TestAbandonedAcceptsAreNotStored: while the server hangs (frozen: its
// connections stay open and nothing answers), an accept whose caller gives
// up before a writer took it is never stored (its caller was told it failed
// and will send it again), nor does it stay in memory; the accepts of
// callers still waiting are capped at maxQueuedAccepts bytes, beyond which
// Accept fails at once with ErrUnavailable. After the thaw, exactly the
// accepts whose callers still waited (or that a writer had taken) are
// stored. Before the fix every abandoned accept was stored after the thaw,
// and the backlog grew without bound.
func TestAbandonedAcceptsAreNotStored(t *testing.T) {
	old := maxQueuedAccepts
	maxQueuedAccepts = 64 << 10
	t.Cleanup(func() { maxQueuedAccepts = old })

	srv := pgtest.Start(t)
	db := openDB(t, srv.NewDatabase(t), func(o *Options) { o.Writers = 1; o.WriteTimeout = 2 * time.Minute })
	s := openReceiver(t, db, "r")
	accept(t, s, "warm") // the writer's connection is open

	body := []byte(strings.Repeat("x", 16<<10))
	msg := func(key string) *queue.Message {
		m := testMsg(key)
		m.Body = body
		return m
	}
	type result struct {
		key string
		dup bool
		err error
	}
	results := make(chan result, 100)
	acceptLong := func(key string) { // a caller that waits (2 minutes)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, dup, err := s.Accept(ctx, msg(key), time.Hour)
			results <- result{key, dup, err}
		}()
	}

	srv.Freeze(t)
	t.Cleanup(func() { srv.Thaw(t) })
	// The writer takes this one and hangs sending it. Submitted here (what
	// Accept does), so that an empty queue means a writer took it.
	taken := &op{kind: opAccept, rid: s.id, env: newEnvelope(msg("taken"), "taken", "", time.Now()), now: time.Now()}
	taken.sum = taken.env.checksum()
	require.NoError(t, db.submit(taken))
	go func() {
		<-taken.done
		results <- result{"taken", taken.dup, taken.err}
	}()
	require.Eventually(t, func() bool { n, _, _ := queued(db); return n == 0 }, 30*time.Second, 5*time.Millisecond)

	// Callers that give up: their accepts are abandoned, and charge nothing.
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _, err := s.Accept(ctx, msg(fmt.Sprint("abandoned-", i)), time.Hour)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	n, abandoned, bytes := queued(db)
	assert.Equal(t, n, abandoned, "every accept in the queue is abandoned")
	assert.Zero(t, bytes)

	// Callers that wait: 64 KiB hold three 16 KiB accepts; the others fail
	// at once (their callers would wait two minutes).
	for i := range 10 {
		acceptLong(fmt.Sprint("waiting-", i))
	}
	var refused []string
	for len(refused) < 7 {
		select {
		case r := <-results:
			require.ErrorIs(t, r.err, queue.ErrUnavailable, r.key)
			require.Contains(t, r.err.Error(), "accepts already wait for the server")
			refused = append(refused, r.key)
		case <-time.After(30 * time.Second):
			t.Fatalf("refused %d of the 7 accepts past the cap: %v", len(refused), refused)
		}
	}
	n, abandoned, bytes = queued(db)
	assert.Equal(t, 3, n-abandoned, "three accepts wait")
	assert.Greater(t, bytes, int64(3*len(body)))
	assert.LessOrEqual(t, bytes, maxQueuedAccepts)

	srv.Thaw(t)
	stored := map[string]bool{}
	for range 4 { // "taken" and the three waiting
		select {
		case r := <-results:
			require.NoError(t, r.err, r.key)
			require.False(t, r.dup, r.key)
			stored[r.key] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("the waiting accepts did not commit after the thaw: %v", stored)
		}
	}
	require.True(t, stored["taken"])
	st := mustStats(t, s)
	assert.EqualValues(t, 1+4, st.Queued, "warm, taken and the three waiting: no abandoned one")
	for i := range 20 {
		_, dup, err := s.Accept(testCtx(t), msg(fmt.Sprint("abandoned-", i)), time.Hour)
		require.NoError(t, err)
		assert.False(t, dup, "abandoned-%d was stored", i)
	}
	for _, key := range refused {
		_, dup, err := s.Accept(testCtx(t), msg(key), time.Hour)
		require.NoError(t, err)
		assert.False(t, dup, "%s was stored", key)
	}
	n, abandoned, bytes = queued(db)
	assert.Zero(t, n)
	assert.Zero(t, abandoned)
	assert.Zero(t, bytes)
}
