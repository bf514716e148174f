package queuetest

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// testDeadLetters: paging newest first with before; DeadLetter of anything
// but a dead letter is ErrNotFound.
func testDeadLetters(t *testing.T, f Factory) {
	s := f.open(t)
	ctx := ctxOf(t)
	seqs := acceptN(t, s, "d", 5)
	for i, seq := range seqs {
		kill(t, s, seq, queue.Outcome{Attempts: i + 1, Status: 500 + i, Error: "boom"})
	}
	queued := accept(t, s, msg("queued", "e", ""))

	pages := []struct {
		name   string
		before uint64
		limit  int
		want   []uint64
	}{
		{"first page", 0, 2, []uint64{seqs[4], seqs[3]}},
		{"second page", seqs[3], 2, []uint64{seqs[2], seqs[1]}},
		{"last page", seqs[1], 2, []uint64{seqs[0]}},
		{"past the end", seqs[0], 2, []uint64{}},
		{"before a queued seq", queued, 10, []uint64{seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}},
		{"all", 0, 100, []uint64{seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}},
	}
	for _, p := range pages {
		f.run(t, p.name, func(t *testing.T) {
			ms, err := s.DeadLetters(ctx, p.before, p.limit)
			require.NoError(t, err)
			require.Equal(t, fmtSeqs(p.want), fmtSeqs(seqsOf(ms)))
		})
	}

	f.run(t, "one", func(t *testing.T) {
		d, err := s.DeadLetter(ctx, seqs[2])
		require.NoError(t, err)
		sameEnvelope(t, msg("d2", "test.event", ""), d)
		assert.Equal(t, 3, d.Attempts)
		assert.Equal(t, 502, d.LastStatus)
		assert.Equal(t, "boom", d.LastError)
		assert.False(t, d.DeadAt.IsZero())
	})
	for name, seq := range map[string]uint64{"queued": queued, "unknown": queued + 1000, "zero": 0} {
		f.run(t, "not a dead letter: "+name, func(t *testing.T) {
			_, err := s.DeadLetter(ctx, seq)
			require.ErrorIs(t, err, queue.ErrNotFound)
		})
	}
}

// deadSet is the store testReplayPurge works on: five dead letters, one of
// them marked corrupt, and a queued message no selector may touch.
type deadSet struct {
	s      queue.Store
	d      []uint64 // d[0..4]
	queued uint64
	t0     time.Time
}

func newDeadSet(t *testing.T, f Factory) *deadSet {
	ds := &deadSet{s: f.open(t), t0: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	events := []string{"a", "b", "a", "b", "a"}
	for i, ev := range events {
		m := msg("d"+string(rune('0'+i)), ev, "")
		m.AcceptedAt = ds.t0.Add(time.Duration(i) * time.Hour)
		ds.d = append(ds.d, accept(t, ds.s, m))
	}
	for i, seq := range ds.d {
		kill(t, ds.s, seq, queue.Outcome{Attempts: 3, Status: 500, Corrupt: i == 4})
	}
	ds.queued = accept(t, ds.s, msg("queued", "a", ""))
	return ds
}

// testReplayPurge: every Selector field, alone and combined, chooses the same
// dead letters for Replay and Purge; corrupt ones are never replayed, and
// only Seqs and All choose them (their event and time are unknown).
func testReplayPurge(t *testing.T, f Factory) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	tests := []struct {
		name string
		sel  func(ds *deadSet) queue.Selector
		want []int // indexes into d chosen (d4 is corrupt: never replayed)
	}{
		{"zero selector chooses nothing", func(*deadSet) queue.Selector { return queue.Selector{} }, nil},
		{"all", func(*deadSet) queue.Selector { return queue.Selector{All: true} }, []int{0, 1, 2, 3, 4}},
		{"seqs", func(ds *deadSet) queue.Selector { return queue.Selector{Seqs: []uint64{ds.d[1], ds.d[3]}} }, []int{1, 3}},
		{"seqs of a queued and an unknown message are skipped", func(ds *deadSet) queue.Selector {
			return queue.Selector{Seqs: []uint64{ds.d[2], ds.queued, ds.queued + 1000}}
		}, []int{2}},
		{"seqs, repeated", func(ds *deadSet) queue.Selector { return queue.Selector{Seqs: []uint64{ds.d[0], ds.d[0]}} }, []int{0}},
		{"event", func(*deadSet) queue.Selector { return queue.Selector{Event: "a"} }, []int{0, 2, 4}},
		{"event nobody has", func(*deadSet) queue.Selector { return queue.Selector{Event: "zzz"} }, nil},
		{"since (inclusive)", func(*deadSet) queue.Selector { return queue.Selector{Since: hour(1)} }, []int{1, 2, 3, 4}},
		{"until (exclusive)", func(*deadSet) queue.Selector { return queue.Selector{Until: hour(2)} }, []int{0, 1}},
		{"since and until", func(*deadSet) queue.Selector { return queue.Selector{Since: hour(1), Until: hour(3)} }, []int{1, 2}},
		{"all and event", func(*deadSet) queue.Selector { return queue.Selector{All: true, Event: "b"} }, []int{1, 3}},
		{"seqs and event", func(ds *deadSet) queue.Selector {
			return queue.Selector{Seqs: []uint64{ds.d[0], ds.d[1]}, Event: "a"}
		}, []int{0}},
		{"event and since", func(*deadSet) queue.Selector { return queue.Selector{Event: "a", Since: hour(1)} }, []int{2, 4}},
		{"seqs, event and until", func(ds *deadSet) queue.Selector {
			return queue.Selector{Seqs: []uint64{ds.d[0], ds.d[2], ds.d[4]}, Event: "a", Until: hour(3)}
		}, []int{0, 2}},
	}
	for _, tt := range tests {
		f.run(t, "purge/"+tt.name, func(t *testing.T) {
			ds := newDeadSet(t, f)
			sel := tt.sel(ds)
			want := tt.want
			if sel.Event != "" || !sel.Since.IsZero() || !sel.Until.IsZero() {
				// the fields of a corrupt dead letter are unknown: no filter
				// on them chooses it (Seqs and All do)
				want = slices.DeleteFunc(slices.Clone(want), func(i int) bool { return i == 4 })
			}
			n, err := ds.s.Purge(ctxOf(t), sel)
			require.NoError(t, err)
			require.Equal(t, len(want), n, "purged")
			var left []uint64
			for i, seq := range ds.d {
				if !slices.Contains(want, i) {
					left = append(left, seq)
				}
			}
			ds.checkDead(t, left)
			require.Equal(t, counts{Queued: 1, Dead: int64(len(left))}, countsOf(t, ds.s))
		})
		f.run(t, "replay/"+tt.name, func(t *testing.T) {
			ds := newDeadSet(t, f)
			before := time.Now()
			n, err := ds.s.Replay(ctxOf(t), tt.sel(ds))
			require.NoError(t, err)
			var replayed, left []uint64
			for i, seq := range ds.d {
				if slices.Contains(tt.want, i) && i != 4 {
					replayed = append(replayed, seq)
				} else {
					left = append(left, seq)
				}
			}
			require.Equal(t, len(replayed), n, "replayed (the corrupt d4 stays)")
			ds.checkDead(t, left)
			require.Equal(t, counts{Queued: 1 + int64(n), Dead: int64(len(left))}, countsOf(t, ds.s))

			ms := lease(t, ds.s, 100, time.Hour)
			require.Len(t, ms, 1+n)
			require.Equal(t, ds.queued, ms[0].Seq, "the queued message comes first")
			events := []string{"a", "b", "a", "b", "a"}
			seen := map[string]bool{}
			for _, m := range ms[1:] {
				require.Greater(t, m.Seq, ds.queued, "replayed under a new seq")
				assert.Zero(t, m.Attempts, "attempts reset")
				assert.Zero(t, m.LastStatus)
				assert.Empty(t, m.LastError)
				assert.False(t, m.AcceptedAt.Before(before.Add(-f.TimePrecision)), "AcceptedAt = now")
				idx := -1
				for i := range ds.d {
					if m.Key == "d"+string(rune('0'+i)) {
						idx = i
					}
				}
				require.True(t, idx >= 0 && slices.Contains(replayed, ds.d[idx]), "replayed %q was chosen", m.Key)
				require.False(t, seen[m.Key], "replayed once: %q", m.Key)
				seen[m.Key] = true
				sameEnvelope(t, msg(m.Key, events[idx], ""), m)
			}
		})
	}
}

// checkDead requires exactly the dead letters seqs (newest first) to be left.
func (ds *deadSet) checkDead(t *testing.T, seqs []uint64) {
	t.Helper()
	ms, err := ds.s.DeadLetters(ctxOf(t), 0, 100)
	require.NoError(t, err)
	want := slices.Clone(seqs)
	slices.Reverse(want)
	require.Equal(t, fmtSeqs(append([]uint64{}, want...)), fmtSeqs(seqsOf(ms)), "dead letters left")
}

// testReplayMessage: a replayed message is a new message: its old seq is gone,
// it can die again, and its dedupe key still points where it did.
func testReplayMessage(t *testing.T, f Factory) {
	s := f.open(t)
	ctx := ctxOf(t)
	seq := accept(t, s, msg("k", "e", ""))
	kill(t, s, seq, queue.Outcome{Attempts: 5, Status: 500})
	n, err := s.Replay(ctx, queue.Selector{Seqs: []uint64{seq}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.DeadLetter(ctx, seq)
	require.ErrorIs(t, err, queue.ErrNotFound, "the old seq is gone")
	n, err = s.Replay(ctx, queue.Selector{Seqs: []uint64{seq}})
	require.NoError(t, err)
	require.Zero(t, n, "replaying it again does nothing")

	m := lease(t, s, 10, time.Hour)
	require.Len(t, m, 1)
	settle(t, s, m[0], queue.Outcome{Verdict: queue.Dead, Attempts: 1, Status: 400})
	d, err := s.DeadLetter(ctx, m[0].Seq)
	require.NoError(t, err)
	assert.Equal(t, 1, d.Attempts)
	_, dup, err := s.Accept(ctx, msg("k", "e", ""), time.Hour)
	require.NoError(t, err)
	require.True(t, dup, "a replay does not forget the key")
}

// testStats: the counts of every state, the oldest message not delivered or
// dead, and the pause state. A leased message counts in its state (queued
// or retrying) and in Leased.
func testStats(t *testing.T, f Factory) {
	s := f.open(t)
	require.Equal(t, queue.Stats{}, stats(t, s), "empty store")

	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	var seqs []uint64
	for i := range 6 {
		m := msg("s"+string(rune('0'+i)), "e", "")
		m.AcceptedAt = t0.Add(time.Duration(i) * time.Minute)
		seqs = append(seqs, accept(t, s, m))
	}
	st := stats(t, s)
	require.Equal(t, counts{Queued: 6}, counts{st.Queued, st.Retrying, st.Leased, st.Dead})
	withinTime(t, f, t0, st.OldestAccepted, "OldestAccepted")

	ms := lease(t, s, 4, time.Hour) // s0..s3
	settle(t, s, ms[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
	settle(t, s, ms[1], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now().Add(time.Hour)})
	settle(t, s, ms[2], queue.Outcome{Verdict: queue.Dead, Attempts: 1})
	st = stats(t, s)
	require.Equal(t, counts{Queued: 3, Retrying: 1, Leased: 1, Dead: 1}, counts{st.Queued, st.Retrying, st.Leased, st.Dead},
		"s3 (leased), s4, s5 queued; s1 retrying; s2 dead")
	withinTime(t, f, t0.Add(time.Minute), st.OldestAccepted, "OldestAccepted: s1, retrying (s0 delivered)")
	require.False(t, st.Paused)

	require.NoError(t, s.SetPaused(ctxOf(t), true))
	st = stats(t, s)
	require.True(t, st.Paused)

	if r := f.replica(t, s); r != nil {
		rst := stats(t, r)
		require.Equal(t, st.Queued, rst.Queued)
		require.Equal(t, st.Leased, rst.Leased, "leases of every replica")
		require.Equal(t, st.Dead, rst.Dead)
		require.True(t, rst.Paused)
	}
}

// testCrashRecovery: after a restart, messages leased but not settled are
// available again, and nothing accepted, settled or remembered is lost.
func testCrashRecovery(t *testing.T, f Factory) {
	s := f.open(t)
	seqs := acceptN(t, s, "c", 10)
	ms := lease(t, s, 5, time.Hour)
	settle(t, s, ms[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
	settle(t, s, ms[1], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now().Add(time.Hour), Status: 503})
	settle(t, s, ms[2], queue.Outcome{Verdict: queue.Dead, Attempts: 1, Status: 400})
	// ms[3], ms[4] stay leased, as by a forwarder in the middle of attempts

	s = f.reopen(t, s)
	require.Equal(t, counts{Queued: 7, Retrying: 1, Dead: 1}, countsOf(t, s))
	got := leaseSeqs(t, s, 100)
	want := append([]uint64{seqs[3], seqs[4]}, seqs[5:]...)
	require.Equal(t, fmtSeqs(want), fmtSeqs(got), "leased messages are available again")
	_, err := s.DeadLetter(ctxOf(t), seqs[2])
	require.NoError(t, err)
	at, ok, err := s.NextDue(ctxOf(t))
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.After(time.Now().Add(30*time.Minute)), "the retry kept its time")
	for i, seq := range seqs {
		got, dup, err := s.Accept(ctxOf(t), msg("c"+string(rune('0'+i)), "test.event", ""), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "key c%d remembered", i)
		require.Equal(t, seq, got)
	}
}

// testCorrupt: a message whose stored bytes were damaged is handed out once
// with Corrupt set (never as if sound), its neighbours unharmed; as a dead
// letter it keeps the mark and is never replayed.
func testCorrupt(t *testing.T, f Factory) {
	if f.Corrupt == nil {
		t.Skip("the Factory cannot damage stored bytes")
	}
	s := f.open(t)
	ctx := ctxOf(t)
	seqs := acceptN(t, s, "x", 3)
	f.Corrupt(t, s, seqs[1])
	ms := lease(t, s, 10, time.Hour)
	require.Equal(t, seqs, seqsOf(ms))
	sameEnvelope(t, msg("x0", "test.event", ""), ms[0])
	sameEnvelope(t, msg("x2", "test.event", ""), ms[2])
	require.True(t, ms[1].Corrupt, "damaged message marked Corrupt")
	if ms[1].Body != nil {
		require.NotEqual(t, msg("x1", "test.event", "").Body, ms[1].Body, "if a body comes with it, it is the damaged one")
	}
	settle(t, s, ms[1], queue.Outcome{Verdict: queue.Dead, Attempts: 0, Corrupt: true, Error: "checksum mismatch"})
	d, err := s.DeadLetter(ctx, seqs[1])
	require.NoError(t, err)
	require.True(t, d.Corrupt, "the dead letter keeps the mark")

	// damaged as a dead letter, and while waiting for a retry
	settle(t, s, ms[2], queue.Outcome{Verdict: queue.Dead, Attempts: 1})
	f.Corrupt(t, s, seqs[2])
	d, err = s.DeadLetter(ctx, seqs[2])
	require.NoError(t, err)
	require.True(t, d.Corrupt, "damaged dead letter")
	dl, err := s.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []uint64{seqs[2], seqs[1]}, seqsOf(dl))
	require.True(t, dl[0].Corrupt && dl[1].Corrupt, "listed with the mark")
	n, err := s.Replay(ctx, queue.Selector{All: true})
	require.NoError(t, err)
	require.Zero(t, n, "corrupt dead letters are never replayed")
	require.Equal(t, counts{Queued: 1, Leased: 1, Dead: 2}, countsOf(t, s))

	settle(t, s, ms[0], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now().Add(-time.Second)})
	f.Corrupt(t, s, seqs[0])
	r := lease(t, s, 10, time.Hour)
	require.Equal(t, []uint64{seqs[0]}, seqsOf(r))
	require.True(t, r[0].Corrupt, "damaged retry")

	n, err = s.Purge(ctx, queue.Selector{All: true})
	require.NoError(t, err)
	require.Equal(t, 2, n, "corrupt dead letters can be purged")
}

// testClose: every call after Close fails with ErrClosed (which is also
// ErrUnavailable); a second Close is harmless.
func testClose(t *testing.T, f Factory) {
	s := f.open(t)
	seq := accept(t, s, msg("k", "e", ""))
	leased := lease(t, s, 1, time.Hour)
	require.NoError(t, s.Close())
	ctx := ctxOf(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"Accept", func() error { _, _, err := s.Accept(ctx, msg("k2", "e", ""), time.Hour); return err }},
		{"Lease", func() error { _, err := s.Lease(ctx, 1, time.Hour); return err }},
		{"Settle", func() error {
			return s.Settle(ctx, leased[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
		}},
		{"Release", func() error { return s.Release(ctx, leased) }},
		{"NextDue", func() error { _, _, err := s.NextDue(ctx); return err }},
		{"Stats", func() error { _, err := s.Stats(ctx); return err }},
		{"DeadLetters", func() error { _, err := s.DeadLetters(ctx, 0, 10); return err }},
		{"DeadLetter", func() error { _, err := s.DeadLetter(ctx, seq); return err }},
		{"Replay", func() error { _, err := s.Replay(ctx, queue.Selector{All: true}); return err }},
		{"Purge", func() error { _, err := s.Purge(ctx, queue.Selector{All: true}); return err }},
		{"SetPaused", func() error { return s.SetPaused(ctx, true) }},
		{"Paused", func() error { _, err := s.Paused(ctx); return err }},
	}
	for _, c := range calls {
		f.run(t, c.name, func(t *testing.T) {
			err := c.call()
			require.ErrorIs(t, err, queue.ErrClosed)
			require.ErrorIs(t, err, queue.ErrUnavailable)
		})
	}
	require.NotPanics(t, func() { s.Close() }, "second Close")
}
