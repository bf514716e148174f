package dedupe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadterra/caddy-webhooks/queue"
)

// Accept stores m in q/ under a new sequence number, together with its dedupe
// key k/<m.Event, m.Key> (Badger TTL = ttl; ttl <= 0 = never expires) and,
// with a lane, its l/ entry, in one transaction; with SyncWrites it returns
// only once all are durable (see queue.Store).
func (s *Store) Accept(ctx context.Context, m *Message, ttl time.Duration) (seq uint64, duplicate bool, err error) {
	if m == nil {
		return 0, false, errors.New("dedupe: nil message")
	}
	m.Key = queue.StoredKey(m.Key)
	m.Lane = queue.StoredKey(m.Lane)
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
	stored.Corrupt, stored.Lease = false, 0
	kevent := keyEvent(m.Event)
	// One buffer: value | k/ key | q/ key | k/ value.
	need := encodedSize(&stored) + len(prefixKey) + len(kevent) + 1 + len(m.Key) + seqKeyLen + 8
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
		buf = appendDedupeKey(buf, kevent, m.Key)
	}
	k := len(buf)
	buf = append(buf, make([]byte, seqKeyLen+8)...)
	o.buf = buf
	o.value = buf[:v:v]
	if k > v {
		o.kkey = buf[v:k:k]
	}
	o.qkey, o.seqVal = buf[k:k+seqKeyLen:k+seqKeyLen], buf[k+seqKeyLen:]
	if m.Lane != "" {
		o.lkey = lanePrefix(m.Lane)
	}
	n := int64(len(o.buf))
	if total := s.acceptBytes.Add(n); total > maxQueuedAccepts && total > n {
		s.acceptBytes.Add(-n)
		putAcceptOp(o)
		return 0, false, unavailable(fmt.Errorf("dedupe: %d MiB of accepts already wait for the disk", maxQueuedAccepts>>20))
	}
	o.charged = true
	if err := s.submit(o); err != nil {
		s.acceptBytes.Add(-n)
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
		m.Seq = seq
	}
	return seq, duplicate, nil
}

// keyEvent is the event as it stands in a k/ key (k/<event>\x00<key>): as
// it is, unless it is long or holds a NUL byte (which would make the split
// between event and key ambiguous: "a\x00b"+"c" against "a"+"b\x00c"); then
// a NUL and the hex SHA-256 of the event, which no plain event can equal
// (plain ones hold no NUL) and which holds no NUL itself. Keys written before
// this rule stay valid: the events the receivers produce never held a NUL.
func keyEvent(event string) string {
	if len(event) <= queue.MaxKeyLen && !strings.Contains(event, "\x00") {
		return event
	}
	sum := sha256.Sum256([]byte(event))
	return "\x00" + hex.EncodeToString(sum[:])
}

func truncate(s string) string {
	if len(s) <= queue.MaxErrorLen {
		return s
	}
	return strings.ToValidUTF8(s[:queue.MaxErrorLen], "")
}
