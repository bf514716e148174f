package dedupe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openTest(t testing.TB, dir string, mod ...func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: dir}
	for _, f := range mod {
		f(&o)
	}
	s, err := Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func msg(event, key string) *Message {
	return &Message{
		Key: key, Event: event, ID: "msg_" + key, Timestamp: "1614265330",
		Signature: "v1,abc", ContentType: "application/json",
		Body: []byte(`{"event":"` + event + `","data":{"id":"` + key + `"}}`),
	}
}

func accept(t testing.TB, s *Store, m *Message) (uint64, bool) {
	t.Helper()
	seq, dup, err := s.Accept(context.Background(), m, time.Hour)
	require.NoError(t, err)
	return seq, dup
}

// wait runs an async bookkeeping call and returns what done reported.
func wait(call func(done func(error))) error {
	ch := make(chan error, 1)
	call(func(err error) { ch <- err })
	return <-ch
}

func seqsOf(ms []*Message) []uint64 {
	out := make([]uint64, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func TestAcceptDuplicate(t *testing.T) {
	type step struct {
		event, key string
		wantDup    bool
		wantSeq    uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"new then redelivery", []step{
			{"reply.received", "rpl_1", false, 1},
			{"reply.received", "rpl_1", true, 1},
			{"reply.received", "rpl_1", true, 1},
		}},
		{"different keys", []step{
			{"reply.received", "rpl_1", false, 1},
			{"reply.received", "rpl_2", false, 2},
			{"reply.received", "rpl_1", true, 1},
		}},
		{"same key, different events do not collide", []step{
			{"message.sent", "msg_7", false, 1},
			{"message.bounced", "msg_7", false, 2},
			{"message.sent", "msg_7", true, 1},
			{"message.bounced", "msg_7", true, 2},
		}},
		{"event/key boundary does not collide", []step{
			{"a", "bc", false, 1},
			{"ab", "c", false, 2},
		}},
		{"empty key is never a duplicate", []step{
			{"custom.event", "", false, 1},
			{"custom.event", "", false, 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			for i, st := range tt.steps {
				m := msg(st.event, st.key)
				seq, dup := accept(t, s, m)
				assert.Equal(t, st.wantDup, dup, "step %d dup", i)
				assert.Equal(t, st.wantSeq, seq, "step %d seq", i)
				if !dup {
					assert.Equal(t, seq, m.Seq, "step %d m.Seq", i)
				}
			}
			var want int64
			for _, st := range tt.steps {
				if !st.wantDup {
					want++
				}
			}
			ready, err := s.Ready(0, 100)
			require.NoError(t, err)
			assert.Len(t, ready, int(want))
			assert.Equal(t, want, s.Stats().Queued)
		})
	}
}

func TestAcceptStoresMessage(t *testing.T) {
	s := openTest(t, t.TempDir())
	in := msg("reply.received", "rpl_1")
	in.AcceptedAt = time.Unix(1700000000, 123)
	seq, _ := accept(t, s, in)
	out, err := s.Ready(0, 10)
	require.NoError(t, err)
	require.Len(t, out, 1)
	got := out[0]
	assert.Equal(t, seq, got.Seq)
	assert.Equal(t, in.Key, got.Key)
	assert.Equal(t, in.Event, got.Event)
	assert.Equal(t, in.ID, got.ID)
	assert.Equal(t, in.Timestamp, got.Timestamp)
	assert.Equal(t, in.Signature, got.Signature)
	assert.Equal(t, in.ContentType, got.ContentType)
	assert.Equal(t, in.Body, got.Body)
	assert.True(t, in.AcceptedAt.Equal(got.AcceptedAt), "AcceptedAt %v != %v", got.AcceptedAt, in.AcceptedAt)
	assert.True(t, got.NextAttempt.IsZero())
	assert.Zero(t, got.Attempts)
}

func TestAcceptTTLExpiry(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	seq1, dup, err := s.Accept(ctx, msg("reply.received", "rpl_ttl"), time.Second)
	require.NoError(t, err)
	require.False(t, dup)
	_, dup, err = s.Accept(ctx, msg("reply.received", "rpl_ttl"), time.Second)
	require.NoError(t, err)
	require.True(t, dup, "within the TTL")
	// Badger TTLs are whole Unix seconds: expired once the clock passes them.
	time.Sleep(2100 * time.Millisecond)
	seq2, dup, err := s.Accept(ctx, msg("reply.received", "rpl_ttl"), time.Second)
	require.NoError(t, err)
	assert.False(t, dup, "after the TTL")
	assert.Greater(t, seq2, seq1)
}

func TestAcceptConcurrentOneKey(t *testing.T) {
	for _, syncWrites := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", syncWrites), func(t *testing.T) {
			s := openTest(t, t.TempDir(), func(o *Options) { o.SyncWrites = syncWrites })
			const n = 50
			type res struct {
				seq uint64
				dup bool
				err error
			}
			results := make([]res, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					seq, dup, err := s.Accept(context.Background(), msg("reply.received", "rpl_race"), time.Hour)
					results[i] = res{seq, dup, err}
				}()
			}
			close(start)
			wg.Wait()
			fresh := 0
			for i, r := range results {
				require.NoError(t, r.err, "accept %d", i)
				if !r.dup {
					fresh++
				}
				assert.Equal(t, uint64(1), r.seq, "accept %d returns the original seq", i)
			}
			assert.Equal(t, 1, fresh, "exactly one non-duplicate")
			ready, err := s.Ready(0, 100)
			require.NoError(t, err)
			assert.Len(t, ready, 1, "one q/ entry")
		})
	}
}

func TestReadyCursor(t *testing.T) {
	s := openTest(t, t.TempDir())
	select {
	case <-s.Notify():
		t.Fatal("notified before any commit")
	default:
	}
	for i := range 10 {
		accept(t, s, msg("reply.received", fmt.Sprint("rpl_", i)))
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("no notification after accepts")
	}
	tests := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, []uint64{1, 2, 3}},
		{3, 3, []uint64{4, 5, 6}},
		{8, 100, []uint64{9, 10}},
		{10, 100, []uint64{}},
		{^uint64(0), 100, []uint64{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after=%d,limit=%d", tt.after, tt.limit), func(t *testing.T) {
			got, err := s.Ready(tt.after, tt.limit)
			require.NoError(t, err)
			assert.Equal(t, tt.want, seqsOf(got))
		})
	}
}

func TestRescheduleDue(t *testing.T) {
	s := openTest(t, t.TempDir())
	base := time.Now().Truncate(time.Second)
	var ms []*Message
	for i := range 3 {
		m := msg("reply.received", fmt.Sprint("rpl_", i))
		accept(t, s, m)
		ms = append(ms, m)
	}
	// seq 1 due last, seq 2 first, seq 3 in between
	dues := []time.Time{base.Add(3 * time.Second), base.Add(time.Second), base.Add(2 * time.Second)}
	for i, m := range ms {
		m.Attempts = 1
		require.NoError(t, wait(func(done func(error)) {
			s.Reschedule(m, dues[i], 503, "upstream said 503", done)
		}))
	}
	ready, err := s.Ready(0, 10)
	require.NoError(t, err)
	assert.Empty(t, ready, "rescheduled messages left q/")

	next, ok := s.NextDueExcept(nil)
	require.True(t, ok)
	assert.True(t, next.Equal(dues[1]), "NextDue = %v", next)

	tests := []struct {
		name string
		now  time.Time
		want []uint64
	}{
		{"none due", base, []uint64{}},
		{"first due exactly", base.Add(time.Second), []uint64{2}},
		{"two due", base.Add(2500 * time.Millisecond), []uint64{2, 3}},
		{"all due, by time", base.Add(time.Hour), []uint64{2, 3, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Due(tt.now, 10)
			require.NoError(t, err)
			assert.Equal(t, tt.want, seqsOf(got))
		})
	}

	due, err := s.Due(base.Add(time.Hour), 10)
	require.NoError(t, err)
	got := due[0]
	assert.Equal(t, 1, got.Attempts)
	assert.Equal(t, 503, got.LastStatus)
	assert.Equal(t, "upstream said 503", got.LastError)
	assert.True(t, got.NextAttempt.Equal(dues[1]))

	// reschedule again from r/: moves within r/
	got.Attempts = 2
	require.NoError(t, wait(func(done func(error)) { s.Reschedule(got, base.Add(10*time.Second), 0, "timeout", done) }))
	due, err = s.Due(base.Add(time.Hour), 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{3, 1, 2}, seqsOf(due))
	assert.Equal(t, int64(3), s.Stats().Retrying)
	assert.Equal(t, int64(0), s.Stats().Queued)

	// the stale copy (still says r/ at the old due) is refused
	err = wait(func(done func(error)) { s.Reschedule(got, base.Add(20*time.Second), 0, "x", done) })
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestDelivered(t *testing.T) {
	s := openTest(t, t.TempDir())
	a, b := msg("reply.received", "a"), msg("reply.received", "b")
	accept(t, s, a)
	accept(t, s, b)
	require.NoError(t, wait(func(done func(error)) { s.Reschedule(b, time.Now(), 500, "", done) }))
	due, err := s.Due(time.Now().Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, due, 1)

	require.NoError(t, wait(func(done func(error)) { s.Delivered(a, done) }), "from q/")
	require.NoError(t, wait(func(done func(error)) { s.Delivered(due[0], done) }), "from r/")
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(a, done) }), ErrNotFound, "twice")
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(b, done) }), ErrNotFound, "stale copy")
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(&Message{Seq: 9}, done) }), ErrNotFound, "not from the store")

	ready, err := s.Ready(0, 10)
	require.NoError(t, err)
	assert.Empty(t, ready)
	due, err = s.Due(time.Now().Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Empty(t, due)
	assert.Equal(t, Stats{}, s.Stats())

	// the dedupe key outlives delivery
	_, dup := accept(t, s, msg("reply.received", "a"))
	assert.True(t, dup)

	// nil done is fine
	c := msg("reply.received", "c")
	accept(t, s, c)
	s.Delivered(c, nil)
	require.Eventually(t, func() bool { return s.Stats().Queued == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestKillDeadLetters(t *testing.T) {
	s := openTest(t, t.TempDir())
	for i := range 7 {
		m := msg("reply.received", fmt.Sprint("rpl_", i))
		accept(t, s, m)
		m.Attempts = 8
		if i%2 == 0 { // some die from r/
			require.NoError(t, wait(func(done func(error)) { s.Reschedule(m, time.Now(), 502, "bad gateway", done) }))
			due, err := s.Due(time.Now().Add(time.Hour), 10)
			require.NoError(t, err)
			m = due[0]
		}
		require.NoError(t, wait(func(done func(error)) { s.Kill(m, 410, "gone", done) }))
	}
	st := s.Stats()
	assert.Equal(t, Stats{Dead: 7}, st)

	pages := []struct {
		before uint64
		want   []uint64
	}{
		{0, []uint64{7, 6, 5}},
		{5, []uint64{4, 3, 2}},
		{2, []uint64{1}},
		{1, []uint64{}},
	}
	for _, p := range pages {
		got, err := s.DeadLetters(p.before, 3)
		require.NoError(t, err)
		assert.Equal(t, p.want, seqsOf(got), "before=%d", p.before)
	}

	d, err := s.DeadLetter(3)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), d.Seq)
	assert.Equal(t, 8, d.Attempts)
	assert.Equal(t, 410, d.LastStatus)
	assert.Equal(t, "gone", d.LastError)
	assert.False(t, d.DeadAt.IsZero())
	assert.True(t, d.NextAttempt.IsZero())
	assert.Equal(t, "rpl_2", d.Key)

	_, err = s.DeadLetter(99)
	assert.ErrorIs(t, err, ErrNotFound)

	// dead letters cannot be delivered/killed again
	assert.ErrorIs(t, wait(func(done func(error)) { s.Kill(d, 0, "", done) }), ErrNotFound)
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(d, done) }), ErrNotFound)
}

func killAll(t *testing.T, s *Store, ms ...*Message) {
	t.Helper()
	for _, m := range ms {
		m.Attempts = 3
		require.NoError(t, wait(func(done func(error)) { s.Kill(m, 500, "boom", done) }))
	}
}

func TestReplay(t *testing.T) {
	s := openTest(t, t.TempDir())
	var ms []*Message
	for i := range 6 {
		ev := "reply.received"
		if i%2 == 1 {
			ev = "message.sent"
		}
		m := msg(ev, fmt.Sprint("id_", i))
		accept(t, s, m)
		ms = append(ms, m)
	}
	// the forwarder has seen everything up to 6
	cursor := uint64(6)
	killAll(t, s, ms...)
	<-s.Notify() // drain

	n, err := s.Replay(context.Background(), func(m *Message) bool { return m.Event == "message.sent" })
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	select {
	case <-s.Notify():
	default:
		t.Error("replay did not notify")
	}

	ready, err := s.Ready(cursor, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{7, 8, 9}, seqsOf(ready), "new seqs past the cursor")
	for _, m := range ready {
		assert.Equal(t, "message.sent", m.Event)
		assert.Zero(t, m.Attempts)
		assert.Zero(t, m.LastStatus)
		assert.Empty(t, m.LastError)
		assert.True(t, m.DeadAt.IsZero())
	}
	assert.Equal(t, Stats{Queued: 3, Dead: 3, OldestAccepted: s.Stats().OldestAccepted}, s.Stats())

	dead, err := s.DeadLetters(0, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{5, 3, 1}, seqsOf(dead))

	// ReplaySeqs: present and absent seqs
	n, err = s.ReplaySeqs(context.Background(), []uint64{3, 4, 99})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	ready, err = s.Ready(9, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{10}, seqsOf(ready))
	assert.Equal(t, "id_2", ready[0].Key)

	// a replayed key is still a duplicate for the provider
	_, dup := accept(t, s, msg("reply.received", "id_2"))
	assert.True(t, dup)

	// replay all
	n, err = s.Replay(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, int64(0), s.Stats().Dead)
	assert.Equal(t, int64(6), s.Stats().Queued)
}

func TestPurge(t *testing.T) {
	s := openTest(t, t.TempDir())
	var ms []*Message
	for i := range 5 {
		m := msg("reply.received", fmt.Sprint("id_", i))
		accept(t, s, m)
		ms = append(ms, m)
	}
	killAll(t, s, ms...)
	n, err := s.Purge(context.Background(), func(m *Message) bool { return m.Seq%2 == 0 })
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	dead, err := s.DeadLetters(0, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{5, 3, 1}, seqsOf(dead))
	assert.Equal(t, int64(3), s.Stats().Dead)

	n, err = s.PurgeSeqs(context.Background(), []uint64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.Purge(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, Stats{}, s.Stats())
}

func TestStatsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	t0 := time.Unix(1_800_000_000, 0)
	check := func(step string, want Stats) {
		t.Helper()
		assert.Equal(t, want.Queued, s.Stats().Queued, "%s: queued", step)
		assert.Equal(t, want.Retrying, s.Stats().Retrying, "%s: retrying", step)
		assert.Equal(t, want.Dead, s.Stats().Dead, "%s: dead", step)
		got := s.Stats().OldestAccepted
		assert.True(t, want.OldestAccepted.Equal(got), "%s: oldest %v, want %v", step, got, want.OldestAccepted)
	}
	check("empty", Stats{})
	var ms []*Message
	for i := range 4 {
		m := msg("reply.received", fmt.Sprint("id_", i))
		m.AcceptedAt = t0.Add(time.Duration(i) * time.Minute)
		accept(t, s, m)
		ms = append(ms, m)
	}
	check("accepted 4", Stats{Queued: 4, OldestAccepted: t0})
	accept(t, s, msg("reply.received", "id_0"))
	check("duplicate", Stats{Queued: 4, OldestAccepted: t0})

	require.NoError(t, wait(func(done func(error)) { s.Reschedule(ms[0], time.Now(), 500, "", done) }))
	check("rescheduled #1", Stats{Queued: 3, Retrying: 1, OldestAccepted: t0})
	require.NoError(t, wait(func(done func(error)) { s.Kill(ms[1], 500, "", done) }))
	check("killed #2", Stats{Queued: 2, Retrying: 1, Dead: 1, OldestAccepted: t0})

	require.NoError(t, s.Close())
	s = openTest(t, dir)
	check("reopened", Stats{Queued: 2, Retrying: 1, Dead: 1, OldestAccepted: t0})

	due, err := s.Due(time.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	require.NoError(t, wait(func(done func(error)) { s.Delivered(due[0], done) }))
	check("delivered #1", Stats{Queued: 2, Dead: 1, OldestAccepted: t0.Add(2 * time.Minute)})

	ready, err := s.Ready(0, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{3, 4}, seqsOf(ready))
	for _, m := range ready {
		require.NoError(t, wait(func(done func(error)) { s.Delivered(m, done) }))
	}
	check("all delivered", Stats{Dead: 1})

	// after reopen with an empty queue, seqs continue and keys are remembered
	require.NoError(t, s.Close())
	s = openTest(t, dir)
	check("reopened again", Stats{Dead: 1})
	_, dup := accept(t, s, msg("reply.received", "id_3"))
	assert.True(t, dup, "dedupe key survives reopen")
	seq, dup := accept(t, s, msg("reply.received", "id_new"))
	assert.False(t, dup)
	assert.Equal(t, uint64(5), seq, "seqs are never reused")
	d, err := s.DeadLetter(2)
	require.NoError(t, err)
	assert.Equal(t, "id_1", d.Key)

	n, err := s.Replay(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	check("replayed", Stats{Queued: 2, OldestAccepted: s.Stats().OldestAccepted})
	ready, err = s.Ready(0, 10)
	require.NoError(t, err)
	assert.Equal(t, []uint64{5, 6}, seqsOf(ready))
}

func TestClosed(t *testing.T) {
	s := openTest(t, t.TempDir())
	m := msg("reply.received", "a")
	accept(t, s, m)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "idempotent")

	_, _, err := s.Accept(context.Background(), msg("reply.received", "b"), time.Hour)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(m, done) }), ErrClosed)
	_, err = s.Ready(0, 10)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.DeadLetter(1)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Replay(context.Background(), nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, ok := s.NextDueExcept(nil)
	assert.False(t, ok)
	_ = s.Stats()
}

func TestCloseFailsPending(t *testing.T) {
	s := openTest(t, t.TempDir(), func(o *Options) { o.SyncWrites = true })
	// Hold the writer inside its first commit so that the other Accepts are
	// still queued when Close comes.
	release := make(chan struct{})
	hold := func() error { <-release; return nil }
	s.commitFault.Store(&hold)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Accept(context.Background(), msg("e", fmt.Sprint(i)), time.Hour)
			errs <- err
		}()
	}
	queued := func() int {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return len(s.queue)
	}
	require.Eventually(t, func() bool { return queued() > 0 }, 5*time.Second, time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	require.Eventually(t, func() bool {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return s.qclosed
	}, 5*time.Second, time.Millisecond)
	s.commitFault.Store(nil)
	close(release)
	require.NoError(t, <-closed)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			assert.ErrorIs(t, err, ErrClosed)
			assert.ErrorIs(t, err, ErrUnavailable)
		}
	}
	assert.Positive(t, failed, "Accepts still queued at Close fail with ErrClosed")
}

func TestAcceptContext(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Accept(ctx, msg("e", "k"), time.Hour)
	assert.ErrorIs(t, err, context.Canceled)
	ready, err := s.Ready(0, 10)
	require.NoError(t, err)
	assert.Empty(t, ready, "nothing written for a context that was already done")
}

func TestLargeMessages(t *testing.T) {
	s := openTest(t, t.TempDir(), func(o *Options) { o.SyncWrites = true })
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"small", 600, nil},
		{"just under the value threshold", 1<<20 - 300, nil},
		{"max value size, in the value log", 1 << 20, nil},
		{"beyond MaxValueSize, in the value log", 2 << 20, nil},
		{"beyond the value log file size", 65 << 20, ErrTooLarge},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := msg("reply.received", fmt.Sprint("big_", i))
			m.Body = make([]byte, tt.size)
			for j := range m.Body {
				m.Body[j] = byte(j)
			}
			seq, _, err := s.Accept(context.Background(), m, time.Hour)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			got, err := s.Ready(seq-1, 1)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, m.Body, got[0].Body)
		})
	}
}

// Many concurrent Accepts whose total exceeds one Badger transaction: the
// writer splits the batch into several commits.
func TestBatchSplitsAcrossTransactions(t *testing.T) {
	s := openTest(t, t.TempDir(), func(o *Options) { o.memTableSize = 1 << 20 }) // 150 KiB per txn
	const n = 256
	body := make([]byte, 4<<10)
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := msg("e", fmt.Sprint(i))
			m.Body = body
			seq, dup, err := s.Accept(context.Background(), m, time.Hour)
			assert.NoError(t, err)
			assert.False(t, dup)
			seqs[i] = seq
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, q := range seqs {
		assert.False(t, seen[q], "seq %d twice", q)
		seen[q] = true
	}
	ready, err := s.Ready(0, 1000)
	require.NoError(t, err)
	assert.Len(t, ready, n)
	assert.Equal(t, int64(n), s.Stats().Queued)

	// replay across transactions too
	for _, m := range ready {
		require.NoError(t, wait(func(done func(error)) { s.Kill(m, 0, "", done) }))
	}
	moved, err := s.Replay(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, n, moved)
	ready, err = s.Ready(n, 1000)
	require.NoError(t, err)
	assert.Len(t, ready, n)
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(Options{})
	assert.Error(t, err)

	dir := t.TempDir()
	s := openTest(t, dir)
	_, err = Open(Options{Dir: dir})
	require.Error(t, err, "second open of one directory")
	assert.Contains(t, err.Error(), "opening store at "+dir)
	_ = s
	assert.False(t, errors.Is(err, ErrClosed))
}

// A failed commit fails every op of its batch, writes nothing, leaves the
// counters alone, and the store serves later ops.
func TestCommitFailure(t *testing.T) {
	s := openTest(t, t.TempDir())
	keep := msg("reply.received", "keep")
	accept(t, s, keep)

	boom := errors.New("injected: no space left on device")
	fault := func() error { return boom }
	s.commitFault.Store(&fault)

	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.Accept(context.Background(), msg("reply.received", fmt.Sprint("k", i%10)), time.Hour)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		assert.ErrorIs(t, err, ErrUnavailable, "accept %d", i)
		assert.ErrorIs(t, err, boom, "accept %d", i)
	}
	assert.ErrorIs(t, wait(func(done func(error)) { s.Delivered(keep, done) }), ErrUnavailable)
	assert.Equal(t, int64(1), s.Stats().Queued)

	s.commitFault.Store(nil)
	ready, err := s.Ready(0, 100)
	require.NoError(t, err)
	assert.Equal(t, []uint64{1}, seqsOf(ready), "nothing of the failed batches was written")
	for i := range 10 {
		_, dup := accept(t, s, msg("reply.received", fmt.Sprint("k", i)))
		assert.False(t, dup, "the failed batch left no dedupe key k%d", i)
	}
	require.NoError(t, wait(func(done func(error)) { s.Delivered(keep, done) }))
	assert.Equal(t, int64(10), s.Stats().Queued)
}

// TestDefaultMinFreeSpace: the reserve is 128 MiB, or 128 × the largest
// body when that is larger (the README's default).
func TestDefaultMinFreeSpace(t *testing.T) {
	assert.EqualValues(t, 128<<20, openTest(t, t.TempDir()).db.MinFreeSpace())
	big := openTest(t, t.TempDir(), func(o *Options) { o.MaxValueSize = 2 << 20 })
	assert.EqualValues(t, 256<<20, big.db.MinFreeSpace())
}
