package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Accept stores m in q/ under a new sequence number, together with its dedupe
// key k/<m.Event, m.Key> (Badger TTL = ttl; ttl <= 0 = never expires), in one
// transaction; with SyncWrites it returns only once both are durable. On
// success m.Seq is set (and m.AcceptedAt, if it was zero).
//
// If the dedupe key is already present (and not expired), nothing is written
// and Accept returns the original seq with duplicate = true; of concurrent
// Accepts of one key exactly one is not a duplicate. A message with an empty
// Key is never a duplicate.
//
// Storage failures (disk full, I/O errors, closed store) return an error
// matching ErrUnavailable, and nothing was written. If ctx ends first, Accept
// returns ctx.Err() without waiting further: the write may still land.
func (s *Store) Accept(ctx context.Context, m *Message, ttl time.Duration) (seq uint64, duplicate bool, err error) {
	if m == nil {
		return 0, false, errors.New("dedupe: nil message")
	}
	if len(m.Event)+len(m.Key) > MaxKeyLen {
		return 0, false, fmt.Errorf("%w: event and key longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	if m.AcceptedAt.IsZero() {
		m.AcceptedAt = now()
	}
	o := getAcceptOp()
	o.ttl, o.at = ttl, m.AcceptedAt.UnixNano()
	stored := *m
	stored.NextAttempt, stored.DeadAt = time.Time{}, time.Time{}
	stored.LastError = truncate(stored.LastError)
	// One buffer: value | k/ key | q/ key | k/ value.
	need := encodedSize(&stored) + len(prefixKey) + len(m.Event) + 1 + len(m.Key) + seqKeyLen + 8
	buf := o.buf
	if cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	buf = appendMessage(buf[:0], &stored)
	v := len(buf)
	if len(buf) > s.maxValue {
		return 0, false, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(buf))
	}
	if m.Key != "" {
		buf = appendDedupeKey(buf, m.Event, m.Key)
	}
	k := len(buf)
	buf = append(buf, make([]byte, seqKeyLen+8)...)
	o.buf = buf
	o.value = buf[:v:v]
	if k > v {
		o.kkey = buf[v:k:k]
	}
	o.qkey, o.seqVal = buf[k:k+seqKeyLen:k+seqKeyLen], buf[k+seqKeyLen:]
	if err := s.submit(o); err != nil {
		return 0, false, err
	}
	select {
	case <-o.res:
	case <-ctx.Done():
		return 0, false, ctx.Err() // o stays with the writer
	}
	seq, duplicate, err = o.resSeq, o.dup, o.err
	putAcceptOp(o)
	if err != nil {
		return 0, false, err
	}
	if !duplicate {
		m.Seq, m.loc, m.due = seq, locQueue, 0
	}
	return seq, duplicate, nil
}

// The bookkeeping calls below are asynchronous: the writer batches them with
// everything else queued. done (may be nil) is called after the commit
// (durable with SyncWrites) with nil, an error matching ErrUnavailable, or
// ErrNotFound when m is no longer where this copy of it says (delivered,
// rescheduled or killed meanwhile). done runs on the writer goroutine: it
// must return quickly and must not wait for the store (it may call
// Delivered, Reschedule or Kill, which only queue). After Close, done runs on
// a goroutine of its own with ErrClosed.
//
// m itself is never modified: after Reschedule or Kill, the stored copy has
// the new state and m still names the old place. Read the message again (Due,
// DeadLetters) before acting on it again.

// pendingKey is where m waits (q/ or r/); a dead letter is not pending.
func (m *Message) pendingKey() ([]byte, error) {
	if m.loc == locDead {
		return nil, fmt.Errorf("%w: message %d is a dead letter", ErrNotFound, m.Seq)
	}
	return m.storageKey()
}

// Delivered deletes m (from q/ or r/).
func (s *Store) Delivered(m *Message, done func(error)) {
	key, err := m.pendingKey()
	if err != nil {
		callDone(done, err)
		return
	}
	s.submitAsync(&op{kind: opDelivered, seq: m.Seq, oldKey: key, oldLoc: m.loc, done: done})
}

// Reschedule moves m to r/ for a retry at next, recording status (0 = none)
// and errMsg (truncated to 1 KiB) as LastStatus and LastError. The caller
// counts attempts: set m.Attempts (attempts made so far) before calling; the
// stored copy takes every exported field of m as it is now, NextAttempt =
// next, LastStatus, LastError.
func (s *Store) Reschedule(m *Message, next time.Time, status int, errMsg string, done func(error)) {
	key, err := m.pendingKey()
	if err != nil {
		callDone(done, err)
		return
	}
	stored := *m
	stored.NextAttempt, stored.DeadAt = next, time.Time{}
	stored.LastStatus, stored.LastError = status, truncate(errMsg)
	due := dueNanos(next)
	s.submitAsync(&op{
		kind: opReschedule, seq: m.Seq, oldKey: key, oldLoc: m.loc,
		newKey: retryKeyAt(due, m.Seq), newDue: due, value: encodeMessage(&stored), done: done,
	})
}

// Kill moves m to the dead letters (d/) with DeadAt = now, recording status
// and errMsg as LastStatus and LastError (m.Attempts as set by the caller).
func (s *Store) Kill(m *Message, status int, errMsg string, done func(error)) {
	key, err := m.pendingKey()
	if err != nil {
		callDone(done, err)
		return
	}
	stored := *m
	stored.NextAttempt, stored.DeadAt = time.Time{}, now()
	stored.LastStatus, stored.LastError = status, truncate(errMsg)
	s.submitAsync(&op{
		kind: opKill, seq: m.Seq, oldKey: key, oldLoc: m.loc,
		newKey: deadKey(m.Seq), value: encodeMessage(&stored), done: done,
	})
}

func callDone(done func(error), err error) {
	if done != nil {
		go done(err)
	}
}

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	return strings.ToValidUTF8(s[:maxErrorLen], "")
}
