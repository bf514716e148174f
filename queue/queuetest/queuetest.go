// Package queuetest is the contract suite every queue.Store passes: run it
// from the store's own tests with Run.
//
// The suite uses the store's public API only (plus the Factory's hooks), and
// real time: TTLs and lease holds are a second or two and polled for with
// generous deadlines, so it passes on a loaded machine and on stores whose
// clocks have one-second granularity (Badger's TTL).
package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// Factory opens stores for the suite.
type Factory struct {
	// Open returns a new, empty store (its own directory or namespace).
	// The suite closes it (Close may then be called again at the end of the
	// test: a second Close must be harmless).
	Open func(t *testing.T) queue.Store
	// Reopen closes s and opens the same data again: what a restart sees
	// (leases held by s are gone with it).
	Reopen func(t *testing.T, s queue.Store) queue.Store
	// Replica, when not nil, opens a second handle on the data of s, as
	// another process would (a shared store); nil for a one-process store.
	// The suite closes it.
	Replica func(t *testing.T, s queue.Store) queue.Store
	// Corrupt, when not nil, damages the stored bytes of the message seq of
	// s (in any of its states) behind the store's back.
	Corrupt func(t *testing.T, s queue.Store, seq uint64)

	// TimePrecision is how finely the store keeps times (AcceptedAt,
	// NextAttempt, DeadAt): times read back are compared with this
	// tolerance. Default: 1ms.
	TimePrecision time.Duration

	// Skip names sub-tests the store is known to fail, each with the reason
	// (a bug to fix, not a way to disagree with the contract): they are
	// skipped and the reason is logged. Names are as "go test -run" matches
	// them below the suite, e.g. "Close/Release" or
	// "AcceptDuplicate/event/key_boundary_with_a_NUL_does_not_collide".
	Skip map[string]string
}

// run runs fn as the sub-test name of t, unless the Factory skips it.
func (f Factory) run(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		for path, reason := range f.Skip {
			if strings.HasSuffix(t.Name(), "/"+path) {
				t.Skipf("known issue of this store: %s", reason)
			}
		}
		fn(t)
	})
}

// Run runs the whole contract suite against the stores f opens.
func Run(t *testing.T, f Factory) {
	t.Helper()
	require.NotNil(t, f.Open, "Factory.Open")
	require.NotNil(t, f.Reopen, "Factory.Reopen")
	if f.TimePrecision <= 0 {
		f.TimePrecision = time.Millisecond
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f Factory)
	}{
		{"Accept", testAccept},
		{"AcceptDuplicate", testAcceptDuplicate},
		{"AcceptNamespaces", testAcceptNamespaces},
		{"AcceptTTL", testAcceptTTL},
		{"AcceptLongKeys", testAcceptLongKeys},
		{"AcceptConcurrentOneKey", testAcceptConcurrent},
		{"AcceptContext", testAcceptContext},
		{"LeaseOrder", testLeaseOrder},
		{"LeaseOnce", testLeaseOnce},
		{"LeaseExpiry", testLeaseExpiry},
		{"SettleDelivered", testSettleDelivered},
		{"SettleRetry", testSettleRetry},
		{"SettleDead", testSettleDead},
		{"SettleStaleLease", testSettleStale},
		{"Release", testRelease},
		{"NextDue", testNextDue},
		{"Notify", testNotify},
		{"Lanes", testLanes},
		{"Pause", testPause},
		{"DeadLetters", testDeadLetters},
		{"ReplayPurge", testReplayPurge},
		{"ReplayMessage", testReplayMessage},
		{"Stats", testStats},
		{"CrashRecovery", testCrashRecovery},
		{"Corrupt", testCorrupt},
		{"Close", testClose},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) { tt.run(t, f) })
	}
}

// ---------------------------------------------------------------- helpers

// open opens a new store, closed at the end of t.
func (f Factory) open(t *testing.T) queue.Store {
	t.Helper()
	s := f.Open(t)
	require.NotNil(t, s)
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen restarts s, the new handle being closed at the end of t.
func (f Factory) reopen(t *testing.T, s queue.Store) queue.Store {
	t.Helper()
	s2 := f.Reopen(t, s)
	require.NotNil(t, s2)
	t.Cleanup(func() { s2.Close() })
	return s2
}

// replica opens a second handle on s's data, or nil if the store has none.
func (f Factory) replica(t *testing.T, s queue.Store) queue.Store {
	t.Helper()
	if f.Replica == nil {
		return nil
	}
	r := f.Replica(t, s)
	require.NotNil(t, r)
	t.Cleanup(func() { r.Close() })
	return r
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// msg returns a message with every field set, its body and id derived from key.
func msg(key, event, lane string) *queue.Message {
	return &queue.Message{
		Key:   key,
		Event: event,
		Lane:  lane,
		ID:    "msg_" + key,
		Headers: []queue.Header{
			{Name: "Webhook-Id", Value: "msg_" + key},
			{Name: "Webhook-Timestamp", Value: "1614265330"},
			{Name: "Webhook-Signature", Value: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		},
		ContentType: "application/json",
		Body:        []byte(`{"type":"` + event + `","data":{"id":"` + key + `"}}`),
	}
}

// accept stores m (ttl 1h) and requires it new.
func accept(t *testing.T, s queue.Store, m *queue.Message) uint64 {
	t.Helper()
	seq, dup, err := s.Accept(ctxOf(t), m, time.Hour)
	require.NoError(t, err)
	require.False(t, dup, "key %q: unexpected duplicate", m.Key)
	require.NotZero(t, seq)
	require.Equal(t, seq, m.Seq, "Accept sets m.Seq")
	return seq
}

// acceptN accepts n messages (keys prefix0…), returns their seqs in order.
func acceptN(t *testing.T, s queue.Store, prefix string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = accept(t, s, msg(prefix+strconv.Itoa(i), "test.event", ""))
	}
	return seqs
}

func lease(t *testing.T, s queue.Store, n int, hold time.Duration) []*queue.Message {
	t.Helper()
	ms, err := s.Lease(ctxOf(t), n, hold)
	require.NoError(t, err)
	return ms
}

// leaseSeqs leases up to n messages for an hour and returns their seqs.
func leaseSeqs(t *testing.T, s queue.Store, n int) []uint64 {
	t.Helper()
	return seqsOf(lease(t, s, n, time.Hour))
}

func seqsOf(ms []*queue.Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func settle(t *testing.T, s queue.Store, m *queue.Message, o queue.Outcome) {
	t.Helper()
	require.NoError(t, s.Settle(ctxOf(t), m, o), "settling %d", m.Seq)
}

// leaseOne leases exactly the message seq (and requires that it is the only
// one handed out when n = 1).
func leaseOne(t *testing.T, s queue.Store, seq uint64) *queue.Message {
	t.Helper()
	ms := lease(t, s, 1, time.Hour)
	require.Len(t, ms, 1, "leasing %d", seq)
	require.Equal(t, seq, ms[0].Seq)
	return ms[0]
}

// kill leases the next message, which must be seq, and dead-letters it.
func kill(t *testing.T, s queue.Store, seq uint64, o queue.Outcome) {
	t.Helper()
	m := leaseOne(t, s, seq)
	o.Verdict = queue.Dead
	settle(t, s, m, o)
}

func stats(t *testing.T, s queue.Store) queue.Stats {
	t.Helper()
	st, err := s.Stats(ctxOf(t))
	require.NoError(t, err)
	return st
}

// counts is the comparable part of Stats.
type counts struct{ Queued, Retrying, Leased, Dead int64 }

func countsOf(t *testing.T, s queue.Store) counts {
	t.Helper()
	st := stats(t, s)
	return counts{st.Queued, st.Retrying, st.Leased, st.Dead}
}

// drain empties a Notify channel.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// signalled reports whether ch receives within d.
func signalled(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// eventually polls cond every 50ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			require.Fail(t, "condition not met in "+limit.String(), msgAndArgs...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func withinTime(t *testing.T, f Factory, want, got time.Time, what string) {
	t.Helper()
	assert.WithinDuration(t, want, got, f.TimePrecision, what)
}

// sameEnvelope checks that got carries want's envelope unchanged.
func sameEnvelope(t *testing.T, want, got *queue.Message) {
	t.Helper()
	assert.Equal(t, want.Key, got.Key, "Key")
	assert.Equal(t, want.Event, got.Event, "Event")
	assert.Equal(t, want.Lane, got.Lane, "Lane")
	assert.Equal(t, want.ID, got.ID, "ID")
	assert.Equal(t, want.Headers, got.Headers, "Headers")
	assert.Equal(t, want.ContentType, got.ContentType, "ContentType")
	assert.True(t, bytes.Equal(want.Body, got.Body), "Body: want %q, got %q", want.Body, got.Body)
	assert.False(t, got.Corrupt, "Corrupt")
}

func isNotFound(err error) bool { return errors.Is(err, queue.ErrNotFound) }

func fmtSeqs(seqs []uint64) string { return fmt.Sprint(seqs) }
