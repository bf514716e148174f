package queuetest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// testLeaseOrder: due retries first (earliest first), then fresh messages in
// Seq order; retries not due yet stay.
func testLeaseOrder(t *testing.T, f Factory) {
	s := f.open(t)
	seqs := acceptN(t, s, "m", 5) // m0..m4
	first := lease(t, s, 3, time.Hour)
	require.Equal(t, seqs[:3], seqsOf(first), "fresh messages in Seq order")
	now := time.Now()
	settle(t, s, first[0], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: now.Add(-time.Second), Status: 503})
	settle(t, s, first[1], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: now.Add(-2 * time.Second), Status: 503})
	settle(t, s, first[2], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: now.Add(time.Hour), Status: 503})
	m5 := accept(t, s, msg("m5", "test.event", ""))

	f.run(t, "one at a time", func(t *testing.T) {
		want := []uint64{seqs[1], seqs[0], seqs[3], seqs[4], m5}
		var got []*queue.Message
		for range want {
			got = append(got, lease(t, s, 1, time.Hour)...)
		}
		require.Equal(t, fmtSeqs(want), fmtSeqs(seqsOf(got)), "due retries earliest first, then fresh by Seq; m2 not due")
		require.NoError(t, s.Release(ctxOf(t), got))
	})
	f.run(t, "all at once, in that order", func(t *testing.T) {
		got := leaseSeqs(t, s, 100)
		require.Equal(t, fmtSeqs([]uint64{seqs[1], seqs[0], seqs[3], seqs[4], m5}), fmtSeqs(got))
	})
}

// testLeaseOnce: a leased message is not handed out again while leased.
func testLeaseOnce(t *testing.T, f Factory) {
	s := f.open(t)
	seqs := acceptN(t, s, "m", 3)
	require.Equal(t, seqs[:1], leaseSeqs(t, s, 1))
	require.Equal(t, seqs[1:], leaseSeqs(t, s, 5))
	require.Empty(t, leaseSeqs(t, s, 5), "everything is leased")
	require.Equal(t, counts{Queued: 3, Leased: 3}, countsOf(t, s), "leased messages count in their state too")

	if r := f.replica(t, s); r != nil {
		require.Empty(t, leaseSeqs(t, r, 5), "nor by another replica")
		m := accept(t, r, msg("r", "e", ""))
		require.Equal(t, []uint64{m}, leaseSeqs(t, s, 5), "what a replica accepted is leased by the other")
		require.Empty(t, leaseSeqs(t, r, 5))
	}
}

// testLeaseExpiry: the lease of a forwarder that died passes after hold;
// another replica takes the message over, and the first one's Settle is then
// ErrNotFound. (A one-process store has no other forwarder to take over.)
func testLeaseExpiry(t *testing.T, f Factory) {
	s := f.open(t)
	r := f.replica(t, s)
	if r == nil {
		t.Skip("one-process store: no other process takes a lease over")
	}
	seq := accept(t, s, msg("k", "e", ""))
	held := lease(t, s, 1, time.Second)
	require.Equal(t, []uint64{seq}, seqsOf(held))
	require.Empty(t, leaseSeqs(t, r, 5), "held for a second")

	var taken []*queue.Message
	eventually(t, 20*time.Second, func() bool {
		taken = lease(t, r, 5, time.Hour)
		return len(taken) > 0
	}, "the other replica takes the message over after hold")
	require.Equal(t, []uint64{seq}, seqsOf(taken))
	sameEnvelope(t, msg("k", "e", ""), taken[0])

	err := s.Settle(ctxOf(t), held[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
	require.ErrorIs(t, err, queue.ErrNotFound, "the first forwarder lost its lease")
	require.Equal(t, counts{Queued: 1, Leased: 1}, countsOf(t, s), "nothing changed")
	require.NoError(t, s.Release(ctxOf(t), held), "releasing a lost lease is a no-op")
	require.Empty(t, leaseSeqs(t, s, 5), "and frees nothing")
	settle(t, r, taken[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
	require.Equal(t, counts{}, countsOf(t, s))
}

// testSettleDelivered: a delivered message leaves the store.
func testSettleDelivered(t *testing.T, f Factory) {
	s := f.open(t)
	seq := accept(t, s, msg("k", "e", ""))
	m := leaseOne(t, s, seq)
	settle(t, s, m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 204})
	require.Equal(t, counts{}, countsOf(t, s))
	require.Empty(t, leaseSeqs(t, s, 5))
	_, err := s.DeadLetter(ctxOf(t), seq)
	require.ErrorIs(t, err, queue.ErrNotFound)
	err = s.Settle(ctxOf(t), m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 204})
	require.ErrorIs(t, err, queue.ErrNotFound, "settled already")
}

// testSettleRetry: a retry keeps the envelope and records the attempt; it is
// leased again when due, with the outcome's fields.
func testSettleRetry(t *testing.T, f Factory) {
	s := f.open(t)
	want := msg("k", "e", "")
	seq := accept(t, s, want)
	m := leaseOne(t, s, seq)
	next := time.Now().Add(1500 * time.Millisecond)
	longErr := strings.Repeat("é", queue.MaxErrorLen) // 2 × MaxErrorLen bytes
	settle(t, s, m, queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: next, Status: 503, Error: longErr})
	require.Equal(t, counts{Retrying: 1}, countsOf(t, s))
	require.Empty(t, leaseSeqs(t, s, 5), "not due yet")

	var got []*queue.Message
	eventually(t, 20*time.Second, func() bool {
		got = lease(t, s, 5, time.Hour)
		return len(got) > 0
	}, "leased again when due")
	require.Len(t, got, 1)
	r := got[0]
	require.Equal(t, seq, r.Seq, "a retry keeps its seq")
	sameEnvelope(t, want, r)
	assert.Equal(t, 1, r.Attempts)
	assert.Equal(t, 503, r.LastStatus)
	withinTime(t, f, next, r.NextAttempt, "NextAttempt")
	assert.LessOrEqual(t, len(r.LastError), queue.MaxErrorLen, "LastError truncated")
	assert.NotEmpty(t, r.LastError)
	assert.True(t, strings.HasPrefix(longErr, r.LastError), "LastError is the start of the error")

	settle(t, s, r, queue.Outcome{Verdict: queue.Retry, Attempts: 2, Next: time.Now().Add(-time.Minute), Error: "connection refused"})
	r2 := leaseOne(t, s, seq)
	assert.Equal(t, 2, r2.Attempts)
	assert.Equal(t, 0, r2.LastStatus, "no status came back")
	assert.Equal(t, "connection refused", r2.LastError)
}

// testSettleDead: a dead message becomes a dead letter with its last outcome.
func testSettleDead(t *testing.T, f Factory) {
	s := f.open(t)
	want := msg("k", "e", "")
	seq := accept(t, s, want)
	m := leaseOne(t, s, seq)
	before := time.Now()
	settle(t, s, m, queue.Outcome{Verdict: queue.Dead, Attempts: 7, Status: 410, Error: "gone"})
	after := time.Now()
	require.Equal(t, counts{Dead: 1}, countsOf(t, s))
	require.Empty(t, leaseSeqs(t, s, 5), "a dead letter is not leased")

	d, err := s.DeadLetter(ctxOf(t), seq)
	require.NoError(t, err)
	require.Equal(t, seq, d.Seq)
	sameEnvelope(t, want, d)
	assert.Equal(t, 7, d.Attempts)
	assert.Equal(t, 410, d.LastStatus)
	assert.Equal(t, "gone", d.LastError)
	assert.False(t, d.DeadAt.Before(before.Add(-f.TimePrecision)) || d.DeadAt.After(after.Add(f.TimePrecision)),
		"DeadAt %v within the Settle (%v..%v)", d.DeadAt, before, after)
	err = s.Settle(ctxOf(t), m, queue.Outcome{Verdict: queue.Dead, Attempts: 7})
	require.ErrorIs(t, err, queue.ErrNotFound, "settled already")
}

// testSettleStale: Settle needs the lease under which the message was handed
// out; any other (never leased, released, superseded) is ErrNotFound and
// changes nothing.
func testSettleStale(t *testing.T, f Factory) {
	s := f.open(t)
	seq := accept(t, s, msg("k", "e", ""))
	unleased := msg("k", "e", "")
	unleased.Seq = seq
	ok := queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200}

	first := leaseOne(t, s, seq)
	require.NoError(t, s.Release(ctxOf(t), []*queue.Message{first}))
	second := leaseOne(t, s, seq)
	require.NotEqual(t, first.Lease, second.Lease, "each lease has its own token")

	tests := []struct {
		name string
		m    *queue.Message
		o    queue.Outcome
	}{
		{"never leased", unleased, ok},
		{"released lease, delivered", first, ok},
		{"released lease, retry", first, queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now()}},
		{"released lease, dead", first, queue.Outcome{Verdict: queue.Dead, Attempts: 1}},
		{"unknown seq", func() *queue.Message { c := *second; c.Seq += 1000; return &c }(), ok},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			require.ErrorIs(t, s.Settle(ctxOf(t), tt.m, tt.o), queue.ErrNotFound)
			require.Equal(t, counts{Queued: 1, Leased: 1}, countsOf(t, s), "nothing changed")
		})
	}
	settle(t, s, second, ok)
	require.Equal(t, counts{}, countsOf(t, s))
}

// testRelease: released messages are available again at once, unchanged,
// and announced through Notify.
func testRelease(t *testing.T, f Factory) {
	s := f.open(t)
	seqs := acceptN(t, s, "m", 3)
	ms := lease(t, s, 3, time.Hour)
	require.Equal(t, seqs, seqsOf(ms))
	drain(s.Notify())
	require.NoError(t, s.Release(ctxOf(t), ms[:2]))
	require.True(t, signalled(s.Notify(), 10*time.Second), "Release signals Notify")
	require.Equal(t, counts{Queued: 3, Leased: 1}, countsOf(t, s))
	again := lease(t, s, 5, time.Hour)
	require.Equal(t, seqs[:2], seqsOf(again), "available again at once")
	for i, m := range again {
		assert.Zero(t, m.Attempts, "message %d: a release is not an attempt", i)
		sameEnvelope(t, msg("m"+string(rune('0'+i)), "test.event", ""), m)
	}
	require.NoError(t, s.Release(ctxOf(t), nil), "releasing nothing")
	require.NoError(t, s.Release(ctxOf(t), ms[:2]), "releasing superseded leases is a no-op")
	require.Empty(t, leaseSeqs(t, s, 5), "and frees nothing")
}

// testNextDue: when the earliest retry that is not leased falls due.
func testNextDue(t *testing.T, f Factory) {
	s := f.open(t)
	ctx := ctxOf(t)
	_, ok, err := s.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, ok, "nothing waiting")

	seqs := acceptN(t, s, "m", 3)
	_, ok, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, ok, "fresh messages are not retries")

	ms := lease(t, s, 3, time.Hour)
	now := time.Now()
	due := now.Add(-time.Second)
	settle(t, s, ms[0], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: now.Add(2 * time.Hour)})
	settle(t, s, ms[1], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: now.Add(time.Hour)})
	settle(t, s, ms[2], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: due})
	at, ok, err := s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	withinTime(t, f, due, at, "the earliest retry, past due")

	leaseOne(t, s, seqs[2])
	at, ok, err = s.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	withinTime(t, f, now.Add(time.Hour), at, "a leased retry is not waiting")
}

// testNotify: Notify signals new work (Accept, Replay, resume), across
// replicas for a shared store, with capacity 1.
func testNotify(t *testing.T, f Factory) {
	s := f.open(t)
	ch := s.Notify()
	require.Equal(t, 1, cap(ch), "capacity 1")
	require.True(t, ch == s.Notify(), "one channel per store")
	ctx := ctxOf(t)

	tests := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"accept", func(t *testing.T) { accept(t, s, msg("a", "e", "")) }},
		{"replay", func(t *testing.T) {
			ms := lease(t, s, 1, time.Hour)
			require.Len(t, ms, 1)
			settle(t, s, ms[0], queue.Outcome{Verdict: queue.Dead, Attempts: 1})
			drain(ch)
			n, err := s.Replay(ctx, queue.Selector{All: true})
			require.NoError(t, err)
			require.Equal(t, 1, n)
		}},
		{"resume", func(t *testing.T) {
			require.NoError(t, s.SetPaused(ctx, true))
			drain(ch)
			require.NoError(t, s.SetPaused(ctx, false))
		}},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			drain(ch)
			tt.do(t)
			require.True(t, signalled(ch, 10*time.Second), "signalled")
		})
	}

	f.run(t, "accept on a replica", func(t *testing.T) {
		r := f.replica(t, s)
		if r == nil {
			t.Skip("one-process store")
		}
		time.Sleep(100 * time.Millisecond) // let the replica settle in
		drain(ch)
		accept(t, r, msg("r", "e", ""))
		require.True(t, signalled(ch, 10*time.Second), "the other replica is woken")
	})
}

// testLanes: one message of a lane in flight at a time, in Seq order; a
// retrying head holds its lane only; a dead or delivered head frees it.
func testLanes(t *testing.T, f Factory) {
	s := f.open(t)
	a1 := accept(t, s, msg("a1", "e", "A"))
	a2 := accept(t, s, msg("a2", "e", "A"))
	b1 := accept(t, s, msg("b1", "e", "B"))
	n1 := accept(t, s, msg("n1", "e", ""))
	a3 := accept(t, s, msg("a3", "e", "A"))
	b2 := accept(t, s, msg("b2", "e", "B"))
	n2 := accept(t, s, msg("n2", "e", ""))

	heads := lease(t, s, 100, time.Hour)
	require.Equal(t, fmtSeqs([]uint64{a1, b1, n1, n2}), fmtSeqs(seqsOf(heads)), "lane heads and messages without a lane")
	require.Empty(t, leaseSeqs(t, s, 100), "a lane with a message in flight hands out no other")
	byseq := map[uint64]*queue.Message{}
	for _, m := range heads {
		byseq[m.Seq] = m
	}

	// B's head delivered: B's next is ready. A's head retrying: A waits.
	settle(t, s, byseq[b1], queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
	settle(t, s, byseq[a1], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now().Add(1500 * time.Millisecond), Status: 500})
	require.Equal(t, []uint64{b2}, leaseSeqs(t, s, 100), "a retrying head holds only its lane")
	require.Equal(t, counts{Queued: 5, Retrying: 1, Leased: 3}, countsOf(t, s), "a2 and a3 wait, queued; n1, n2, b2 leased")

	var again []*queue.Message
	eventually(t, 20*time.Second, func() bool {
		again = lease(t, s, 100, time.Hour)
		return len(again) > 0
	}, "the retrying head falls due")
	require.Equal(t, []uint64{a1}, seqsOf(again), "the head is retried before the rest of its lane")

	settle(t, s, again[0], queue.Outcome{Verdict: queue.Dead, Attempts: 2, Status: 500})
	next := lease(t, s, 100, time.Hour)
	require.Equal(t, []uint64{a2}, seqsOf(next), "a dead head frees its lane, next in Seq order")
	require.NoError(t, s.Release(ctxOf(t), next))
	again = lease(t, s, 100, time.Hour)
	require.Equal(t, []uint64{a2}, seqsOf(again), "a released head is still the head")
	settle(t, s, again[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
	last := lease(t, s, 100, time.Hour)
	require.Equal(t, []uint64{a3}, seqsOf(last))

	// A replayed dead letter of a lane joins the lane's end.
	n, err := s.Replay(ctxOf(t), queue.Selector{Seqs: []uint64{a1}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, leaseSeqs(t, s, 100), "behind a3, in flight")
	settle(t, s, last[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
	replayed := lease(t, s, 100, time.Hour)
	require.Len(t, replayed, 1)
	require.Greater(t, replayed[0].Seq, a3, "under a new seq")
	sameEnvelope(t, msg("a1", "e", "A"), replayed[0])
}

// testPause: while paused Lease hands out nothing, Accept still works, and
// the state survives a restart (and is shared by replicas).
func testPause(t *testing.T, f Factory) {
	s := f.open(t)
	ctx := ctxOf(t)
	paused, err := s.Paused(ctx)
	require.NoError(t, err)
	require.False(t, paused, "a new store is not paused")

	seq := accept(t, s, msg("k", "e", ""))
	require.NoError(t, s.SetPaused(ctx, true))
	require.NoError(t, s.SetPaused(ctx, true), "pausing twice is fine")
	accept(t, s, msg("k2", "e", ""))
	require.Empty(t, leaseSeqs(t, s, 10), "paused")
	st := stats(t, s)
	require.True(t, st.Paused)
	require.Equal(t, int64(2), st.Queued)

	if r := f.replica(t, s); r != nil {
		p, err := r.Paused(ctx)
		require.NoError(t, err)
		require.True(t, p, "replicas share the state")
		require.Empty(t, leaseSeqs(t, r, 10), "a replica leases nothing either")
	}

	s = f.reopen(t, s)
	paused, err = s.Paused(ctx)
	require.NoError(t, err)
	require.True(t, paused, "survives a restart")
	require.Empty(t, leaseSeqs(t, s, 10))

	require.NoError(t, s.SetPaused(ctx, false))
	paused, err = s.Paused(ctx)
	require.NoError(t, err)
	require.False(t, paused)
	require.False(t, stats(t, s).Paused)
	require.Equal(t, seq, leaseSeqs(t, s, 10)[0], "resumed")
}
