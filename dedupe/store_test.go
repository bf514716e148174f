package dedupe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
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
		Key: key, Event: event, ID: "msg_" + key, ContentType: "application/json",
		Headers: []queue.Header{
			{Name: "webhook-id", Value: "msg_" + key},
			{Name: "webhook-timestamp", Value: "1614265330"},
			{Name: "webhook-signature", Value: "v1,abc"},
		},
		Body: []byte(`{"event":"` + event + `","data":{"id":"` + key + `"}}`),
	}
}

func accept(t testing.TB, s *Store, m *Message) (uint64, bool) {
	t.Helper()
	seq, dup, err := s.Accept(context.Background(), m, time.Hour)
	require.NoError(t, err)
	return seq, dup
}

// leased takes up to n messages (n <= 0: all there are).
func leased(t testing.TB, s *Store, n int) []*Message {
	t.Helper()
	if n <= 0 {
		n = 1 << 20
	}
	ms, err := s.Lease(context.Background(), n, time.Minute)
	require.NoError(t, err)
	return ms
}

// settleAs records an outcome and requires it to be stored.
func settleAs(t testing.TB, s *Store, m *Message, v queue.Verdict, next time.Time) {
	t.Helper()
	require.NoError(t, s.Settle(context.Background(), m, queue.Outcome{
		Verdict: v, Attempts: m.Attempts + 1, Next: next, Status: 503, Error: "upstream said 503",
	}))
}

func stats(t testing.TB, s *Store) Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	require.NoError(t, err)
	return st
}

func seqsOf(ms []*Message) []uint64 {
	out := make([]uint64, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
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
			assert.Len(t, leased(t, s, 0), 1, "one q/ entry")
		})
	}
}

// Fresh messages are leased in seq order, each once; Notify signals commits.
func TestLeaseFresh(t *testing.T) {
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
	assert.Equal(t, []uint64{1, 2, 3}, seqsOf(leased(t, s, 3)))
	assert.Equal(t, []uint64{4, 5, 6}, seqsOf(leased(t, s, 3)))
	rest := leased(t, s, 100)
	assert.Equal(t, []uint64{7, 8, 9, 10}, seqsOf(rest))
	assert.Empty(t, leased(t, s, 100), "everything is leased")
	assert.EqualValues(t, 10, stats(t, s).Leased)

	// a released message is leased again first, in seq order
	require.NoError(t, s.Release(context.Background(), rest[1:3]))
	accept(t, s, msg("reply.received", "rpl_new"))
	assert.Equal(t, []uint64{8, 9, 11}, seqsOf(leased(t, s, 100)))
	// releasing with a stale token does nothing
	stale := *rest[0]
	stale.Lease++
	require.NoError(t, s.Release(context.Background(), []*Message{&stale}))
	assert.Empty(t, leased(t, s, 100))
}

// Lanes: one leased message per lane, in seq order; a retrying head holds
// its lane only; a dead head releases it; a delivered head brings the next
// one back although the walk passed it.
func TestLanes(t *testing.T) {
	s := openTest(t, t.TempDir())
	base := time.Now()
	lanes := []string{"a", "b", "a", "", "a", "b"} // seqs 1..6
	for i, l := range lanes {
		m := msg("reply.received", fmt.Sprint("rpl_", i))
		m.Lane = l
		accept(t, s, m)
	}
	first := leased(t, s, 0)
	assert.Equal(t, []uint64{1, 2, 4}, seqsOf(first), "heads of a and b, and the laneless one")
	assert.Empty(t, leased(t, s, 0))

	// a's head retries: a stays blocked, b's next comes once b's head is delivered
	settleAs(t, s, first[0], queue.Retry, base.Add(time.Hour))
	settleAs(t, s, first[1], queue.Delivered, time.Time{})
	settleAs(t, s, first[2], queue.Delivered, time.Time{})
	assert.Equal(t, []uint64{6}, seqsOf(leased(t, s, 0)), "b's next; a held by its retrying head")

	// a's head dies: the lane is free again, in order
	defer func(orig func() time.Time) { now = orig }(now)
	now = func() time.Time { return base.Add(2 * time.Hour) }
	retry := leased(t, s, 0)
	require.Equal(t, []uint64{1}, seqsOf(retry))
	settleAs(t, s, retry[0], queue.Dead, time.Time{})
	next := leased(t, s, 0)
	assert.Equal(t, []uint64{3}, seqsOf(next))
	// released, it comes back, still alone in its lane
	require.NoError(t, s.Release(context.Background(), next))
	next = leased(t, s, 0)
	assert.Equal(t, []uint64{3}, seqsOf(next))
	settleAs(t, s, next[0], queue.Delivered, time.Time{})
	assert.Equal(t, []uint64{5}, seqsOf(leased(t, s, 0)))

	// a replayed dead letter joins the end of its lane
	n, err := s.Replay(context.Background(), queue.Selector{Seqs: []uint64{1}})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Empty(t, leased(t, s, 0), "lane a has 5 leased")
}

// Lane order survives a reopen (leases end with the process).
func TestLanesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	for i := range 4 {
		m := msg("reply.received", fmt.Sprint("rpl_", i))
		m.Lane = "x"
		accept(t, s, m)
	}
	assert.Equal(t, []uint64{1}, seqsOf(leased(t, s, 0)))
	require.NoError(t, s.Close())
	s = openTest(t, dir)
	got := leased(t, s, 0)
	assert.Equal(t, []uint64{1}, seqsOf(got), "the unsettled head comes back, alone")
	settleAs(t, s, got[0], queue.Delivered, time.Time{})
	assert.Equal(t, []uint64{2}, seqsOf(leased(t, s, 0)))
}

func killAll(t *testing.T, s *Store) []*Message {
	t.Helper()
	ms := leased(t, s, 0)
	for _, m := range ms {
		m.Attempts = 2
		settleAs(t, s, m, queue.Dead, time.Time{})
	}
	return ms
}

// Issue 11 item 5: a stored envelope whose bytes no longer match its
// checksum is handed out as Corrupt (never its body), becomes a dead letter
// marked corrupt, and is not replayed.
func TestCorruptValue(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	accept(t, s, msg("reply.received", "ok_1"))
	bad := msg("reply.received", "bad")
	bad.Lane = "L"
	accept(t, s, bad)
	accept(t, s, msg("reply.received", "ok_2"))
	follower := msg("reply.received", "after")
	follower.Lane = "L"
	accept(t, s, follower)

	// flip one byte of message 2's body behind the store's back
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(queueKey(2))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)-10] ^= 0x01
		return txn.Set(queueKey(2), v)
	}))

	got := leased(t, s, 0)
	require.Equal(t, []uint64{1, 2, 3}, seqsOf(got), "the lane's follower waits behind the corrupt head")
	assert.False(t, got[0].Corrupt)
	assert.True(t, got[1].Corrupt)
	assert.Nil(t, got[1].Body, "a damaged body is never handed out")
	assert.False(t, got[2].Corrupt)
	require.NoError(t, s.Settle(context.Background(), got[1], queue.Outcome{Verdict: queue.Dead, Attempts: 0, Corrupt: true, Error: "checksum mismatch"}))

	d, err := s.DeadLetter(context.Background(), 2)
	require.NoError(t, err)
	assert.True(t, d.Corrupt)
	n, err := s.Replay(context.Background(), queue.Selector{All: true})
	require.NoError(t, err)
	assert.Zero(t, n, "a corrupt dead letter is not replayed")
	assert.Equal(t, []uint64{4}, seqsOf(leased(t, s, 0)), "the stale lane entry of the damaged head is dropped")
	n, err = s.Purge(context.Background(), queue.Selector{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "but it can be purged")
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
			_, _, err := s.Accept(context.Background(), m, time.Hour)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			got := leased(t, s, 1)
			require.Len(t, got, 1)
			assert.Equal(t, m.Body, got[0].Body)
			assert.False(t, got[0].Corrupt)
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
	assert.Equal(t, int64(n), stats(t, s).Queued)

	// kills and replay across transactions too
	assert.Len(t, killAll(t, s), n)
	moved, err := s.Replay(context.Background(), queue.Selector{All: true})
	require.NoError(t, err)
	assert.Equal(t, n, moved)
	assert.Len(t, leased(t, s, 0), n)
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(Options{})
	assert.Error(t, err)

	dir := t.TempDir()
	s := openTest(t, dir)
	_, err = Open(Options{Dir: dir})
	require.Error(t, err, "second open of one directory")
	assert.Contains(t, err.Error(), dir)
	_ = s
	assert.False(t, errors.Is(err, ErrClosed))
}

// A failed commit fails every op of its batch, writes nothing, leaves the
// counters alone, and the store serves later ops.
func TestCommitFailure(t *testing.T) {
	s := openTest(t, t.TempDir())
	accept(t, s, msg("reply.received", "keep"))
	keep := leased(t, s, 1)[0]

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
	assert.ErrorIs(t, s.Settle(context.Background(), keep, queue.Outcome{Verdict: queue.Delivered}), ErrUnavailable)
	assert.Equal(t, int64(1), stats(t, s).Queued)
	assert.Equal(t, int64(1), stats(t, s).Leased, "a failed outcome keeps its lease")

	s.commitFault.Store(nil)
	assert.Empty(t, leased(t, s, 0), "nothing of the failed batches was written")
	for i := range 10 {
		_, dup := accept(t, s, msg("reply.received", fmt.Sprint("k", i)))
		assert.False(t, dup, "the failed batch left no dedupe key k%d", i)
	}
	require.NoError(t, s.Settle(context.Background(), keep, queue.Outcome{Verdict: queue.Delivered}))
	assert.Equal(t, int64(10), stats(t, s).Queued)
}

// TestDefaultMinFreeSpace: the reserve is 128 MiB, or 128 × the largest
// body when that is larger (the README's default).
func TestDefaultMinFreeSpace(t *testing.T) {
	assert.EqualValues(t, 128<<20, openTest(t, t.TempDir()).db.MinFreeSpace())
	big := openTest(t, t.TempDir(), func(o *Options) { o.MaxValueSize = 2 << 20 })
	assert.EqualValues(t, 256<<20, big.db.MinFreeSpace())
}

// Lanes cost memory only while leased or waiting to be looked at again:
// 50,000 envelopes in 50,000 distinct lanes go through, and nothing of
// them is held afterwards (issue 15: bounded with millions of values).
func TestLanesHoldNothingIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 envelopes")
	}
	s := openTest(t, t.TempDir())
	const n = 50_000
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				m := msg("message.sent", fmt.Sprint("m", i))
				m.Lane = fmt.Sprint("campaignId=cmp_", i)
				if _, _, err := s.Accept(context.Background(), m, time.Hour); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	done := 0
	for done < n {
		ms := leased(t, s, 512)
		require.NotEmpty(t, ms, "lanes left envelopes behind after %d", done)
		s.lmu.Lock()
		busy := len(s.leases.laneBusy)
		s.lmu.Unlock()
		assert.Equal(t, len(ms), busy, "one busy lane per leased envelope")
		for _, m := range ms {
			settleAs(t, s, m, queue.Delivered, time.Time{})
		}
		done += len(ms)
	}
	assert.Zero(t, stats(t, s).Leased) // applies the last leases ended
	s.lmu.Lock()
	defer s.lmu.Unlock()
	assert.Empty(t, s.leases.laneBusy)
	assert.Empty(t, s.leases.bySeq)
	assert.Zero(t, s.leases.revisit.Len())
}

// The writer goroutine never waits for the leases' lock: an outcome commits
// (and its caller, and every ack behind it, gets its answer) while a long
// Lease walk holds the lock. It used to end the lease under that lock, so a
// walk over a big blocked lane stalled every accept.
func TestSettleDoesNotWaitForLease(t *testing.T) {
	s := openTest(t, t.TempDir())
	accept(t, s, msg("reply.received", "a"))
	m := leased(t, s, 1)[0]
	// Hold the writer inside the outcome's commit, then take the leases'
	// lock as a Lease walk would, then let the commit finish.
	inCommit, release := make(chan struct{}), make(chan struct{})
	hold := func() error { close(inCommit); <-release; return nil }
	s.commitFault.Store(&hold)
	done := make(chan error, 1)
	go func() {
		done <- s.Settle(context.Background(), m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
	}()
	<-inCommit
	s.commitFault.Store(nil)
	s.lmu.Lock() // a Lease walk under way
	close(release)
	accepted := make(chan error, 1)
	go func() {
		_, _, err := s.Accept(context.Background(), msg("reply.received", "b"), time.Hour)
		accepted <- err
	}()
	for _, ch := range []chan error{done, accepted} {
		select {
		case err := <-ch:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			s.lmu.Unlock()
			t.Fatal("the writer waited for the leases' lock")
		}
	}
	s.lmu.Unlock()
	assert.Zero(t, stats(t, s).Leased, "the ended lease is applied by the next holder of the lock")
}
