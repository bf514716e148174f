package dedupe

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
	"github.com/leadterra/caddy-webhooks/queue"
)

// Leases. One process owns a Badger store, so leases live in memory: a
// restart (or Close) ends them all, which is what a lease expiring means for
// a shared store. The hold duration of Lease is therefore not needed.
//
// Fresh messages are walked in q/ order with a cursor (the highest q/ seq
// handed out or passed over): q/ seqs only grow, so nothing new appears below
// it. What the walk passed over and may become leasable later (a released
// lease, a message whose lane was busy) goes to revisit, which Lease serves
// before walking on, in seq order.
//
// Lanes: a message with a lane is leasable only when it is the first l/ entry
// of its lane (the oldest message of the lane not delivered or dead) and no
// message of the lane is leased. Lanes cost nothing in memory while idle:
// only leased lanes and lanes waiting to be looked at again are held.

// leaseTable is the lease bookkeeping, guarded by Store.lmu.
type leaseTable struct {
	bySeq    map[uint64]*lease
	laneBusy map[string]uint64 // lane -> the seq leased in it
	cursor   uint64            // highest q/ seq the walk handed out or passed over
	revisit  seqHeap           // q/ seqs <= cursor to look at again
	lanes    []string          // lanes whose head may have changed: look for it again
	sweep    bool              // a message of an unknown lane left: look for stale l/ entries
	token    uint64            // last lease token handed out
	taken    []*Message        // leases taken by the Lease call under way, in order
	unread   error             // the first read error of an envelope the call skipped
}

type lease struct {
	token uint64
	key   []byte // where the message is stored (q/ or r/)
	loc   location
	lane  string
	raw   []byte // a corrupt message's stored bytes, moved as they are to d/

	settling *settleWait // the outcome being stored, if any (guarded by lmu)
}

// settleWait is an outcome op under way: a Settle of the same lease asked
// again meanwhile (its caller timed out) waits for it instead of storing a
// second one.
type settleWait struct {
	done chan struct{} // closed once the op completed
	err  error         // its result, set before done is closed
}

func (t *leaseTable) init() {
	t.bySeq = make(map[uint64]*lease)
	t.laneBusy = make(map[string]uint64)
}

// seqHeap is a min-heap of seqs.
type seqHeap []uint64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seqHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Lease hands out up to n messages ready now (see queue.Store): due retries
// first, then fresh messages in seq order, lane heads only.
func (s *Store) Lease(ctx context.Context, n int, _ time.Duration) ([]*Message, error) {
	if n <= 0 || s.paused.Load() {
		return nil, s.alive()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.applyEnded()
	t := &s.leases
	cursor := t.cursor
	defer func() {
		clear(t.taken)
		t.taken = t.taken[:0]
		t.unread = nil
	}()
	var out []*Message
	err := s.view(func(txn *badger.Txn) error {
		s.resolveLanes(txn)
		var err error
		if out, err = s.leaseDue(txn, out, n); err != nil {
			return err
		}
		if out, err = s.leaseRevisit(txn, out, n); err != nil {
			return err
		}
		out, err = s.leaseFresh(txn, out, n)
		return err
	})
	if err != nil {
		// A panic (view recovers it) leaves leases taken in this call that
		// out does not hold: give them back, and walk again from where
		// this call began (what it passed over is looked at again).
		s.giveBack(t.taken[len(out):])
		t.cursor = cursor
		// What was picked is handed out all the same: its leases are taken.
		if len(out) > 0 {
			return out, nil
		}
		return nil, err
	}
	if len(out) == 0 && t.unread != nil {
		return nil, t.unread // the envelopes it skipped are all there was
	}
	return out, nil
}

// skip notes that an envelope could not be read for now (err): it stays
// where it is, not leased, and the walk goes on. Caller holds lmu.
func (s *Store) skip(err error) {
	if s.leases.unread == nil {
		s.leases.unread = err
	}
}

// giveBack ends the leases of ms (those still held under their token): taken
// by a Lease call but not handed out, or released. Caller holds lmu.
func (s *Store) giveBack(ms []*Message) {
	t := &s.leases
	for _, m := range ms {
		l := t.bySeq[m.Seq]
		if l == nil || l.token != m.Lease {
			continue
		}
		delete(t.bySeq, m.Seq)
		if l.lane != "" && t.laneBusy[l.lane] == m.Seq {
			delete(t.laneBusy, l.lane)
		}
		if l.loc == locQueue {
			heap.Push(&t.revisit, m.Seq)
		}
	}
}

// take records the lease of m, stored under key at loc, and fills m.Lease.
func (s *Store) take(m *Message, key []byte, loc location, raw []byte) {
	t := &s.leases
	t.token++
	m.Lease = t.token
	t.bySeq[m.Seq] = &lease{token: t.token, key: key, loc: loc, lane: m.Lane, raw: raw}
	if m.Lane != "" {
		t.laneBusy[m.Lane] = m.Seq
	}
	t.taken = append(t.taken, m)
}

// leaseDue takes due retries (r/), earliest first.
func (s *Store) leaseDue(txn *badger.Txn, out []*Message, n int) ([]*Message, error) {
	bound := retryBound(now())
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefixRetry
	opts.PrefetchSize = min(n, 64)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid() && len(out) < n; it.Next() {
		item := it.Item()
		k := item.Key()
		if bytes.Compare(k, bound) >= 0 {
			break
		}
		_, seq, ok := parseRetryKey(k)
		if !ok || s.leases.bySeq[seq] != nil {
			continue
		}
		m, raw, err := s.readItem(item, seq)
		if err != nil {
			s.skip(err)
			continue
		}
		if ok, err := s.laneFree(txn, m); err != nil || !ok {
			if err != nil {
				return out, err
			}
			continue
		}
		s.take(m, item.KeyCopy(nil), locRetry, raw)
		out = append(out, m)
	}
	return out, nil
}

// leaseRevisit takes fresh messages the walk passed over that may be
// leasable now, in seq order.
func (s *Store) leaseRevisit(txn *badger.Txn, out []*Message, n int) ([]*Message, error) {
	t := &s.leases
	var skipped []uint64 // looked at again by the next call
	defer func() {
		for _, seq := range skipped {
			heap.Push(&t.revisit, seq)
		}
	}()
	for len(out) < n && t.revisit.Len() > 0 {
		seq := t.revisit[0]
		if t.bySeq[seq] != nil {
			heap.Pop(&t.revisit)
			continue
		}
		key := queueKey(seq)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			heap.Pop(&t.revisit) // delivered, retrying or dead meanwhile
			continue
		}
		if err != nil {
			return out, err
		}
		m, raw, err := s.readItem(item, seq)
		if err != nil {
			heap.Pop(&t.revisit)
			skipped = append(skipped, seq)
			s.skip(err)
			continue
		}
		ok, err := s.laneFree(txn, m)
		if err != nil {
			return out, err // seq stays in revisit
		}
		heap.Pop(&t.revisit)
		if !ok {
			continue // its lane will bring it back
		}
		s.take(m, key, locQueue, raw)
		out = append(out, m)
	}
	return out, nil
}

// leaseFresh walks q/ past the cursor.
func (s *Store) leaseFresh(txn *badger.Txn, out []*Message, n int) ([]*Message, error) {
	t := &s.leases
	if len(out) >= n || t.cursor == math.MaxUint64 {
		return out, nil
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefixQueue
	opts.PrefetchSize = min(n, 64)
	it := txn.NewIterator(opts)
	defer it.Close()
	passed := 0 // lane-blocked messages walked past: bounded, so that one call stays short
	for it.Seek(queueKey(t.cursor + 1)); it.Valid() && len(out) < n && passed < maxPassedPerLease; it.Next() {
		item := it.Item()
		seq, ok := parseSeqKey(item.Key())
		if !ok {
			continue
		}
		m, raw, err := s.readItem(item, seq)
		t.cursor = seq
		if err != nil {
			heap.Push(&t.revisit, seq) // looked at again by the next call
			s.skip(err)
			continue
		}
		if t.bySeq[seq] != nil {
			continue
		}
		if ok, err := s.laneFree(txn, m); err != nil || !ok {
			if err != nil {
				heap.Push(&t.revisit, seq)
				return out, err
			}
			passed++
			continue // its lane will bring it back
		}
		s.take(m, item.KeyCopy(nil), locQueue, raw)
		out = append(out, m)
	}
	if passed >= maxPassedPerLease {
		s.signal() // more may be leasable further on: look again at once
	}
	return out, nil
}

// maxPassedPerLease bounds how many lane-blocked messages one Lease walks
// past (each is a read): the walk holds lmu, and the next call goes on.
const maxPassedPerLease = 2048

// readItem decodes a q/ or r/ item. A value that does not decode or does not
// match its checksum is handed out as Corrupt (without a body), with the
// stored bytes kept for the move to d/; its fields are what could be read
// without the checksum, for the logs. A value that cannot be read is read
// again once in a fresh transaction (readAgain); when that fails too, a
// value damaged for good (valueDamaged) is handed out as corrupt, so that
// it becomes a dead letter instead of failing every Lease, and any other
// error is returned: the envelope stays, and the caller skips it. A panic
// reading the value (Badger trusts what it reads) counts as damage:
// recovered here, per item.
func (s *Store) readItem(item *badger.Item, seq uint64) (*Message, []byte, error) {
	v, err := s.readValue(item)
	if err != nil && !valueDamaged(err) || err == nil && len(v) == 0 {
		v, err = s.readAgain(item.KeyCopy(nil))
	}
	if err == nil && len(v) == 0 {
		// No stored envelope is empty: Badger could not read it twice.
		err = errValueLost
	}
	if err != nil {
		if !valueDamaged(err) {
			// Perhaps passing (an I/O error): the envelope stays, not
			// leased, and is read again by a later Lease.
			return nil, nil, unavailable(fmt.Errorf("reading stored envelope %d: %w", seq, err))
		}
		s.log.Error("stored envelope cannot be read; it will become a dead letter marked corrupt",
			zap.Uint64("seq", seq), zap.Error(err))
		return &Message{Seq: seq, Corrupt: true}, []byte{}, nil
	}
	m := &Message{Seq: seq}
	if decodeMessage(v, m) == nil {
		return m, nil, nil
	}
	c := &Message{Seq: seq, Corrupt: true}
	s.log.Error("stored envelope does not match its checksum; it will become a dead letter marked corrupt and is never forwarded",
		zap.Uint64("seq", seq))
	return c, v, nil
}

// readValue reads item's value; a panic inside Badger becomes an error
// wrapping badgerstore.ErrDamaged.
func (s *Store) readValue(item *badger.Item) ([]byte, error) {
	var v []byte
	err := s.db.Safely(func() error {
		if err := s.fault(faultValue, item.Key()); err != nil {
			return err
		}
		var err error
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}

// readAgain reads the value stored under key in a fresh transaction. Badger
// logs a value-log read error and answers an empty value (badger v4.9.6
// iterator.go yieldItemValue), a file gone as a checksum mismatch. A file
// gone may be passing: value-log GC moves the values of a file and, with no
// iterator open, deletes it at once (value.go rewrite), while a read
// outside an iterator (a revisit's txn.Get) may still point into it. The
// moved value is in the LSM tree before the file goes: a fresh transaction
// finds it.
func (s *Store) readAgain(key []byte) ([]byte, error) {
	var v []byte
	err := s.db.Safely(func() error {
		return s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil {
				return err
			}
			v, err = s.readValue(item)
			return err
		})
	})
	return v, err
}

// errValueLost: Badger read a stored envelope as empty twice (it logged why).
var errValueLost = errors.New("badger could not read the stored value (see its log)")

// valueDamaged reports whether err, from reading a stored value, says that
// the value is damaged for good: a panic inside Badger (ErrDamaged), a value
// read empty twice (errValueLost), or one of the errors Badger's value log
// read returns for a checksum or a value pointer that does not hold (badger
// v4.9.6 value.go Read, getFileRLocked, memtable.go logFile.read; v4.9.6
// logs them and answers an empty value instead, see readAgain). Badger
// builds most of them with fmt.Errorf, and y.Wrapf keeps only the text, so
// they are matched by their text. Anything else (an I/O error, a closed
// value log, a value-log file gone: GC may have moved the value) may pass:
// not damage.
func valueDamaged(err error) bool {
	if errors.Is(err, badgerstore.ErrDamaged) || errors.Is(err, errValueLost) {
		return true
	}
	msg := err.Error()
	for _, damage := range valueDamage {
		if strings.Contains(msg, damage) {
			return true
		}
	}
	return false
}

// valueDamage are the texts of Badger's errors for a damaged value.
var valueDamage = []string{
	y.ErrChecksumMismatch.Error(),  // "value corrupted for vp: … err: checksum mismatch"
	y.ErrEOF.Error(),               // offset or length past the value log file's end
	"Invalid read: Len:",           // the entry is shorter than its header says
	"Invalid value pointer offset", // pointer past the written part of the value log
}

// laneFree reports whether m may be leased as far as its lane goes: it is
// the lane's head and nothing of the lane is leased.
func (s *Store) laneFree(txn *badger.Txn, m *Message) (bool, error) {
	if m.Lane == "" || m.Corrupt {
		return true, nil
	}
	if _, busy := s.leases.laneBusy[m.Lane]; busy {
		return false, nil
	}
	if err := s.fault(faultLane, lanePrefix(m.Lane)); err != nil {
		return false, err
	}
	head, ok, err := s.laneHead(txn, m.Lane)
	if err != nil {
		return false, err
	}
	return !ok || head == m.Seq, nil
}

// laneHead returns the oldest pending seq of lane (false if none). Entries
// whose message is no longer pending (left by a corrupt value whose lane
// could not be read) are skipped and dropped.
func (s *Store) laneHead(txn *badger.Txn, lane string) (uint64, bool, error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = lanePrefix(lane)
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	var stale [][]byte
	defer func() {
		if len(stale) > 0 {
			s.submitAsync(&op{kind: opDrop, keys: stale})
		}
	}()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		seq, ok := parseLaneSeq(k)
		if !ok {
			continue
		}
		if s.isPending(seq) {
			return seq, true, nil
		}
		stale = append(stale, it.Item().KeyCopy(nil))
	}
	return 0, false, nil
}

// isPending reports whether seq is a message not yet delivered or dead. A seq
// above the last published one counts as pending: its commit may have landed
// before its publication.
func (s *Store) isPending(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seq > s.published || s.pending.find(seq) >= 0
}

// resolveLanes looks again at lanes whose head may have changed (a lane
// message delivered, dead or released): a head the walk passed over goes to
// revisit.
func (s *Store) resolveLanes(txn *badger.Txn) {
	t := &s.leases
	if t.sweep {
		t.sweep = false
		s.sweepLanes(txn)
	}
	for _, lane := range t.lanes {
		head, ok, err := s.laneHead(txn, lane)
		if err != nil || !ok {
			continue
		}
		if head <= t.cursor && t.bySeq[head] == nil {
			heap.Push(&t.revisit, head)
		}
	}
	clear(t.lanes)
	t.lanes = t.lanes[:0]
}

// sweepLanes finds the lanes of l/ entries whose message is no longer
// pending: a corrupt message left without its lane being readable. It reads
// keys only, and runs only after such a (rare) message.
func (s *Store) sweepLanes(txn *badger.Txn) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefixLane
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		lane, seq, ok := parseLaneKey(it.Item().Key())
		if !ok {
			continue
		}
		if !s.isPending(seq) {
			s.leases.lanes = append(s.leases.lanes, lane)
		}
	}
}

// Settle records the outcome of an attempt of a leased message (see
// queue.Store). The lease ends when the outcome is committed; when storing
// it fails, the message keeps its lease (the caller may try again, or
// Release it). A corrupt message can only become a dead letter. A Settle
// asked again while the lease's outcome is still being stored (the first
// call ran out of time) stores nothing more: it waits for that outcome and
// returns its result.
func (s *Store) Settle(ctx context.Context, m *Message, out queue.Outcome) error {
	switch out.Verdict {
	case queue.Delivered, queue.Retry, queue.Dead:
	default:
		return fmt.Errorf("dedupe: unknown verdict %d", out.Verdict)
	}
	s.lmu.Lock()
	s.applyEnded()
	l := s.leases.bySeq[m.Seq]
	if l == nil || l.token != m.Lease || m.Lease == 0 {
		s.lmu.Unlock()
		return fmt.Errorf("%w: message %d is not leased under this lease", ErrNotFound, m.Seq)
	}
	if w := l.settling; w != nil {
		select {
		case <-w.done:
			if w.err == nil || errors.Is(w.err, ErrNotFound) {
				s.lmu.Unlock()
				return w.err // recorded (its lease ends at the next applyEnded)
			}
			// it failed: store this one
		default:
			s.lmu.Unlock()
			return w.wait(ctx)
		}
	}
	w := &settleWait{done: make(chan struct{})}
	l.settling = w
	s.lmu.Unlock()

	if l.raw != nil {
		out.Verdict, out.Corrupt = queue.Dead, true
	}
	o := &op{seq: m.Seq, oldKey: l.key, oldLoc: l.loc}
	if l.lane != "" && out.Verdict != queue.Retry {
		o.lkey = laneKey(l.lane, m.Seq)
	}
	stored := *m
	stored.Lease, stored.Attempts = 0, out.Attempts
	stored.LastStatus, stored.LastError = out.Status, truncate(out.Error)
	switch out.Verdict {
	case queue.Delivered:
		o.kind = opDelivered
	case queue.Retry:
		due := dueNanos(out.Next)
		stored.NextAttempt, stored.DeadAt = out.Next, time.Time{}
		o.kind, o.newKey, o.newDue = opReschedule, retryKeyAt(due, m.Seq), due
		o.value = encodeMessage(&stored)
	case queue.Dead:
		o.kind, o.newKey = opKill, deadKey(m.Seq)
		if l.raw != nil {
			o.value = l.raw // damaged bytes stay as found, for the operator
		} else {
			stored.NextAttempt, stored.DeadAt = time.Time{}, now()
			stored.Corrupt = out.Corrupt
			o.value = encodeMessage(&stored)
		}
	}
	o.done = func(err error) {
		if err == nil || errors.Is(err, ErrNotFound) {
			s.endLease(m.Seq, l, out.Verdict != queue.Retry)
		}
		w.err = err
		close(w.done)
	}
	if err := s.submit(o); err != nil {
		w.err = err
		close(w.done)
		return err
	}
	return w.wait(ctx)
}

// wait returns the outcome op's result, or ctx's error first (the outcome
// may still be recorded).
func (w *settleWait) wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endLease drops a lease; laneMoved says the lane's head may have changed.
// It runs on the writer goroutine, which must never wait for Lease's walk
// (that would hold up every ack): it only queues the change, which the next
// holder of lmu applies (applyEnded).
func (s *Store) endLease(seq uint64, l *lease, laneMoved bool) {
	s.emu.Lock()
	s.ended = append(s.ended, endedLease{seq: seq, l: l, laneMoved: laneMoved})
	s.emu.Unlock()
}

// endedLease is a lease ended on the writer goroutine, not yet applied.
type endedLease struct {
	seq       uint64
	l         *lease
	laneMoved bool
}

// applyEnded applies the leases ended since the last call. Caller holds lmu.
func (s *Store) applyEnded() {
	s.emu.Lock()
	ended := s.ended
	s.ended = nil
	s.emu.Unlock()
	t := &s.leases
	for _, e := range ended {
		if t.bySeq[e.seq] != e.l {
			continue
		}
		delete(t.bySeq, e.seq)
		if e.l.lane != "" {
			if t.laneBusy[e.l.lane] == e.seq {
				delete(t.laneBusy, e.l.lane)
			}
			if e.laneMoved {
				t.lanes = append(t.lanes, e.l.lane)
			}
		}
		if e.l.raw != nil { // a corrupt message: its lane could not be read
			t.sweep = true
		}
	}
}

// Release ends leases without an attempt: the messages are leasable again.
func (s *Store) Release(_ context.Context, ms []*Message) error {
	if err := s.alive(); err != nil {
		return err
	}
	s.lmu.Lock()
	s.applyEnded()
	s.giveBack(ms)
	s.lmu.Unlock()
	s.signal()
	return nil
}

// signal wakes whoever waits on Notify.
func (s *Store) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// NextDue returns when the earliest retry not leased falls due.
func (s *Store) NextDue(context.Context) (time.Time, bool, error) {
	// The leased retries, read first: lmu is never taken inside a read
	// transaction (Lease takes them the other way round).
	s.lmu.Lock()
	s.applyEnded()
	leased := make(map[uint64]bool)
	for seq, l := range s.leases.bySeq {
		if l.loc == locRetry {
			leased[seq] = true
		}
	}
	s.lmu.Unlock()
	var due int64
	var ok bool
	err := s.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRetry
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			d, seq, valid := parseRetryKey(it.Item().Key())
			if !valid {
				continue
			}
			if !leased[seq] {
				due, ok = d, true
				return nil
			}
		}
		return nil
	})
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.Unix(0, due), true, nil
}

// SetPaused records whether forwarding is paused; durable like Accept.
func (s *Store) SetPaused(ctx context.Context, paused bool) error {
	o := &op{kind: opPause, paused: paused, res: make(chan *op, 1)}
	if err := s.submit(o); err != nil {
		return err
	}
	select {
	case <-o.res:
		return o.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Paused reports whether forwarding is paused.
func (s *Store) Paused(context.Context) (bool, error) {
	return s.paused.Load(), s.alive()
}
