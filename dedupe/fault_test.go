package dedupe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// faultOn makes the store's reads at point at of key fail with what do
// does (return an error, or panic) until the test ends or it is cleared.
func faultOn(t *testing.T, s *Store, at faultPoint, key []byte, do func() error) {
	t.Helper()
	f := func(p faultPoint, k []byte) error {
		if p == at && bytes.Equal(k, key) {
			return do()
		}
		return nil
	}
	s.readFault.Store(&f)
	t.Cleanup(func() { s.readFault.Store(nil) })
}

// A Badger panic reading one leased message's value is that message's
// damage: it is handed out as corrupt (and can only become a dead letter),
// the others of the call are handed out, and forwarding goes on. It used
// to fail the whole Lease, leaving seq 1's lease held for good and
// panicking again on every later Lease.
func TestLeaseSurvivesValuePanic(t *testing.T) {
	s := openTest(t, t.TempDir())
	for _, k := range []string{"a", "b", "c"} {
		accept(t, s, msg("reply.received", k))
	}
	faultOn(t, s, faultValue, queueKey(2), func() error { panic("runtime error: slice bounds out of range") })

	got := leased(t, s, 10)
	require.Equal(t, []uint64{1, 2, 3}, seqsOf(got))
	assert.False(t, got[0].Corrupt)
	assert.True(t, got[1].Corrupt, "the message whose read panicked")
	assert.Nil(t, got[1].Body)
	assert.False(t, got[2].Corrupt)
	assert.Equal(t, int64(3), stats(t, s).Leased)

	require.NoError(t, s.Settle(context.Background(), got[1], queue.Outcome{Verdict: queue.Dead, Corrupt: true, Error: "unreadable"}))
	settleAs(t, s, got[0], queue.Delivered, time.Time{})
	settleAs(t, s, got[2], queue.Delivered, time.Time{})
	d, err := s.DeadLetter(context.Background(), 2)
	require.NoError(t, err)
	assert.True(t, d.Corrupt)
	assert.Empty(t, leased(t, s, 10))
	assert.Zero(t, stats(t, s).Leased)
}

// A panic elsewhere in a Lease walk (here: looking up a lane's head) fails
// the call; the leases it took before are given back, not held until a
// restart, and the messages it walked past are leasable once reads work.
func TestLeaseGivesBackOnPanic(t *testing.T) {
	s := openTest(t, t.TempDir())
	accept(t, s, msg("reply.received", "free"))
	laned := msg("reply.received", "laned")
	laned.Lane = "L"
	accept(t, s, laned)
	faultOn(t, s, faultLane, lanePrefix("L"), func() error { panic("runtime error: index out of range") })

	ms, err := s.Lease(context.Background(), 10, time.Minute)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Empty(t, ms)
	assert.Zero(t, stats(t, s).Leased, "seq 1's lease is given back")
	s.lmu.Lock()
	assert.Empty(t, s.leases.laneBusy)
	s.lmu.Unlock()

	s.readFault.Store(nil)
	assert.Equal(t, []uint64{1, 2}, seqsOf(leased(t, s, 10)))
}

// A Badger panic in one of the writer's own reads fails that op only
// (unavailable, and damaged: asking again will not help, so the forwarder
// does not ask again for good); the writer, and the process, go on. It used
// to crash the process (the writer goroutine had no recover), then answered
// unavailable only, which the forwarder asked again every 5 s until Stop,
// holding the slot.
func TestWriterReadPanicFailsOneOp(t *testing.T) {
	boom := func() error { panic("runtime error: slice bounds out of range") }
	tests := []struct {
		name string
		key  func(s *Store) []byte
		do   func(t *testing.T, s *Store) error
	}{
		{
			name: "accept reads its dedupe key",
			key:  func(*Store) []byte { return dedupeKey("reply.received", "fresh") },
			do: func(t *testing.T, s *Store) error {
				_, _, err := s.Accept(context.Background(), msg("reply.received", "fresh"), time.Hour)
				return err
			},
		},
		{
			name: "settle reads where the message is",
			key:  func(*Store) []byte { return queueKey(1) },
			do: func(t *testing.T, s *Store) error {
				m := leased(t, s, 1)[0]
				return s.Settle(context.Background(), m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
			},
		},
		{
			name: "replay reads the dead letter",
			key:  func(*Store) []byte { return deadKey(1) },
			do: func(t *testing.T, s *Store) error {
				m := leased(t, s, 1)[0]
				settleAs(t, s, m, queue.Dead, time.Time{})
				_, err := s.Replay(context.Background(), queue.Selector{All: true})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			accept(t, s, msg("reply.received", "first"))
			faultOn(t, s, faultWriter, tt.key(s), boom)
			err := tt.do(t, s)
			require.ErrorIs(t, err, ErrUnavailable)
			require.ErrorIs(t, err, queue.ErrDamaged)
			assert.Contains(t, err.Error(), "badger panicked")
			s.readFault.Store(nil)
			_, dup := accept(t, s, msg("reply.received", "after"))
			assert.False(t, dup, "the writer goes on")
		})
	}
}

// Only an error that says the stored value is damaged for good turns the
// envelope into a corrupt dead letter (an empty one: nothing could be
// read); any other read error leaves the envelope queued and skips it for
// this Lease (the others are handed out), which fails only when nothing
// else could be leased; the envelope is read again once reads work. Every
// read error used to become a corrupt, empty dead letter, losing an
// envelope to a passing I/O error; then any other read error ended the
// whole walk, so that one unreadable envelope stopped all leasing; and a
// value-log file gone ("file with ID: N not found") counted as damage,
// though value-log GC deletes a file whose values it moved while a read
// outside an iterator may still point into it.
func TestLeaseValueReadErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		corrupt bool
	}{
		{name: "I/O error", err: errors.New("read /data/000001.vlog: input/output error")},
		{name: "value log closed", err: errors.New("value log closed")},
		{name: "value log file gone", err: errors.New("file with ID: 7 not found")},
		{name: "checksum", err: errors.New("value corrupted for vp: {Fid:1 Len:42 Offset:20} err: checksum mismatch"), corrupt: true},
		{name: "short entry", err: errors.New("Invalid read: Len: 3 read at:[0:10]"), corrupt: true},
		{name: "past the end", err: errors.New("Invalid value pointer offset: 900 greater than current offset: 20"), corrupt: true},
		{name: "past the file's end", err: errors.New("reading value: ErrEOF: End of file"), corrupt: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			accept(t, s, msg("reply.received", "a"))
			accept(t, s, msg("reply.received", "b"))
			faultOn(t, s, faultValue, queueKey(1), func() error { return tt.err })
			ms, err := s.Lease(context.Background(), 10, time.Minute)
			require.NoError(t, err)
			if tt.corrupt {
				require.Equal(t, []uint64{1, 2}, seqsOf(ms))
				assert.True(t, ms[0].Corrupt)
				return
			}
			require.Equal(t, []uint64{2}, seqsOf(ms), "seq 1 skipped, seq 2 leased")
			ms, err = s.Lease(context.Background(), 10, time.Minute)
			require.ErrorIs(t, err, ErrUnavailable, "nothing else to lease: the read error")
			assert.ErrorIs(t, err, tt.err)
			assert.Empty(t, ms)
			assert.Equal(t, int64(1), stats(t, s).Leased)
			s.readFault.Store(nil)
			ms = leased(t, s, 10)
			require.Equal(t, []uint64{1}, seqsOf(ms))
			assert.False(t, ms[0].Corrupt, "the envelope was kept")
			assert.Equal(t, "msg_a", ms[0].ID)
		})
	}
}

// A due retry whose value cannot be read for now is skipped; the retries
// after it are handed out. It used to end the walk: no retry was leased.
func TestLeaseSkipsAnUnreadableRetry(t *testing.T) {
	s := openTest(t, t.TempDir())
	accept(t, s, msg("reply.received", "a"))
	accept(t, s, msg("reply.received", "b"))
	for _, m := range leased(t, s, 10) {
		settleAs(t, s, m, queue.Retry, time.Now().Add(-time.Second))
	}
	ioErr := errors.New("read /data/000001.vlog: input/output error")
	f := func(p faultPoint, k []byte) error {
		if _, seq, ok := parseRetryKey(k); p == faultValue && ok && seq == 1 {
			return ioErr
		}
		return nil
	}
	s.readFault.Store(&f)
	t.Cleanup(func() { s.readFault.Store(nil) })
	ms, err := s.Lease(context.Background(), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []uint64{2}, seqsOf(ms))
	s.readFault.Store(nil)
	ms = leased(t, s, 10)
	require.Equal(t, []uint64{1}, seqsOf(ms))
	assert.False(t, ms[0].Corrupt)
}

// Badger logs a value-log read error and answers an empty value (badger
// v4.9.6 iterator.go yieldItemValue), a file gone as a checksum mismatch.
// A file gone may be passing: value-log GC moves the values of a file and
// deletes it at once when no iterator is open (value.go rewrite), and a
// read outside an iterator (Lease's revisits) may still point into it; the
// moved value is in the LSM tree before the file goes. So an empty value is
// read again in a fresh transaction, and the envelope becomes a corrupt
// dead letter only when that fails too. It used to become one at once: an
// acknowledged envelope lost, as an empty dead letter.
func TestLeaseReadsAnUnreadableValueAgain(t *testing.T) {
	for _, passing := range []bool{true, false} {
		t.Run(fmt.Sprintf("passing=%v", passing), func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, func(o *Options) { o.memTableSize = 1 << 20 }) // values from 150 KiB in the value log
			big := msg("reply.received", "big")
			big.Body = bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
			accept(t, s, big)
			accept(t, s, msg("reply.received", "small"))
			// Through a revisit (txn.Get, no iterator): leased, then released.
			require.NoError(t, s.Release(context.Background(), leased(t, s, 1)))

			vlogs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
			require.NoError(t, err)
			require.Len(t, vlogs, 1)
			f, err := os.OpenFile(vlogs[0], os.O_RDWR, 0)
			require.NoError(t, err)
			defer f.Close()
			data, err := io.ReadAll(f)
			require.NoError(t, err)
			at := int64(bytes.Index(data, big.Body))
			require.Positive(t, at, "the body is in the value log")
			reads := 0
			faultOn(t, s, faultValue, queueKey(1), func() error {
				reads++
				b := []byte("X") // the first read fails, and the next ones when not passing
				if passing && reads > 1 {
					b = big.Body[:1]
				}
				_, err := f.WriteAt(b, at)
				return err
			})

			ms := leased(t, s, 10)
			require.Equal(t, []uint64{1, 2}, seqsOf(ms))
			if !passing {
				assert.True(t, ms[0].Corrupt, "damaged for good")
				return
			}
			assert.Equal(t, 2, reads, "read again once")
			assert.False(t, ms[0].Corrupt)
			assert.True(t, bytes.Equal(big.Body, ms[0].Body), "the body read again")
		})
	}
}

// A Settle asked again after the first timed out while its op still waits
// for the writer (forward asks again after context.DeadlineExceeded) waits
// for that op instead of storing a second outcome: one op, and the second
// call answers nil. It used to submit a second op, which found the message
// moved by the first and answered ErrNotFound ("lease lost").
func TestSettleAskedAgainJoinsTheFirst(t *testing.T) {
	s := openTest(t, t.TempDir())
	accept(t, s, msg("reply.received", "a"))
	m := leased(t, s, 1)[0]

	// Stall the writer: its bookkeeping after a commit runs on its goroutine.
	stall, stalled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unstall := func() { once.Do(func() { close(stall) }) }
	t.Cleanup(unstall) // before Close, which waits for the writer
	require.NoError(t, s.submit(&op{kind: opPause, done: func(error) { close(stalled); <-stall }}))
	<-stalled

	out := queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Settle(ctx, m, out), context.DeadlineExceeded)
	queued := func() int {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return len(s.queue)
	}
	require.Equal(t, 1, queued(), "the first outcome waits for the writer")

	again := make(chan error, 1)
	go func() { again <- s.Settle(context.Background(), m, out) }()
	assert.Never(t, func() bool { return queued() > 1 }, 200*time.Millisecond, 5*time.Millisecond, "no second op")
	unstall()
	select {
	case err := <-again:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the Settle asked again never returned")
	}
	assert.Zero(t, stats(t, s).Leased)
	assert.Zero(t, stats(t, s).Queued)
	assert.ErrorIs(t, s.Settle(context.Background(), m, out), ErrNotFound, "the lease has ended")
}
