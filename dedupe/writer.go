package dedupe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The single writer.
//
// Every mutation is an op appended to s.queue. One goroutine takes whatever is
// queued, applies it in one Badger transaction (reads through txn.Get see the
// transaction's own earlier writes, so two Accepts of one key in one batch are
// resolved: the second is a duplicate), commits, and only then completes the
// ops. As nothing else writes, there are no conflicts (DetectConflicts is off).
//
// Durability. With SyncWrites, txn.Commit returns after Badger's write
// goroutine ran writeRequests for it, which (badger v4.9.6 db.go) does, per
// request (= per commit):
//
//	vlog.write(reqs)               // values >= ValueThreshold; msync'd if SyncWrites
//	ensureRoomForWrite()           // may rotate: db.mt = new memtable + new WAL
//	writeToLSM(b)                  // puts every entry into db.mt (and its WAL) ...
//	    if SyncWrites { db.mt.SyncWAL() } // ... then msyncs THAT WAL
//
// Rotation happens before the entries are written, and writeRequests is the
// only place that rotates (serially, one batch at a time), so all entries of
// a commit land in one WAL and that WAL is synced before Commit returns. A
// commit acknowledged before a rotation was synced in its own (old) WAL at the
// time. This is why acks rely on SyncWrites and not on db.Sync(), which syncs
// only the current memtable's WAL and would miss a commit left in the WAL of
// a memtable rotated out since. Batching all queued ops in one transaction
// turns Badger's sync-per-commit into group commit: one msync per batch.
//
// Caveat (Badger): vlog.write logs but does not return a failed vlog sync.
// Only values of 1 MiB or more (encoded message) go to the value log.

type opKind uint8

const (
	opAccept opKind = iota
	opDelivered
	opReschedule
	opKill
	opReplay
	opPurge
	opPause
	opDrop
)

type op struct {
	kind opKind

	kkey   []byte        // accept: k/ key, nil = no dedupe
	lkey   []byte        // accept: l/ key without its seq, nil = no lane; settle: l/ key to delete
	qkey   []byte        // accept: room for q/<seq>, filled by the writer
	seqVal []byte        // accept: room for the k/ value (seq)
	buf    []byte        // accept: backs value, kkey, qkey and seqVal (pooled)
	ttl    time.Duration // accept
	value  []byte        // accept, reschedule, kill: the encoded message to store
	at     int64         // accept: AcceptedAt (unix nanos)

	seq    uint64   // delivered, reschedule, kill
	oldKey []byte   // delivered, reschedule, kill: where it is
	oldLoc location //
	newKey []byte   // reschedule, kill: where it goes
	newDue uint64   // reschedule

	seqs   []uint64 // replay, purge
	paused bool     // pause
	keys   [][]byte // drop: keys to delete

	// results
	resSeq uint64
	dup    bool
	n      int
	err    error

	charged bool        // accept: len(buf) counts in the store's acceptBytes until complete
	applied bool        // all units applied: complete at the next commit
	done    func(error) // bookkeeping after the commit, on the writer goroutine
	res     chan *op    // the caller waiting
}

// acceptOps recycles Accept ops (and their buffer) once Accept has returned.
var acceptOps = sync.Pool{New: func() any { return &op{res: make(chan *op, 1)} }}

func getAcceptOp() *op {
	o := acceptOps.Get().(*op)
	*o = op{kind: opAccept, res: o.res, buf: o.buf[:0]}
	return o
}

func putAcceptOp(o *op) {
	if cap(o.buf) > 64<<10 {
		o.buf = nil // do not pin large bodies
	}
	acceptOps.Put(o)
}

// complete hands the op's result over: done (on the writer goroutine), then
// the waiting caller.
func (o *op) complete(s *Store) {
	if o.charged {
		s.acceptBytes.Add(-int64(len(o.buf)))
		o.charged = false
	}
	if o.done != nil {
		o.done(o.err)
	}
	if o.res != nil {
		o.res <- o
	}
}

func (o *op) fail(s *Store, err error) {
	o.err = err
	o.resSeq, o.dup = 0, false
	o.complete(s)
}

// submit queues o for the writer, or fails it with errClosed.
func (s *Store) submit(o *op) error {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		return errClosed
	}
	s.queue = append(s.queue, o)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// submitAsync queues o; if the store is closed, done runs on its own
// goroutine with errClosed.
func (s *Store) submitAsync(o *op) {
	if err := s.submit(o); err != nil && o.done != nil {
		go o.done(err)
	}
}

func (s *Store) writer() {
	defer close(s.writerDone)
	var taken, spare []*op
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			s.failQueued(nil)
			return
		}
		for {
			s.qmu.Lock()
			taken, s.queue = s.queue, spare[:0]
			s.qmu.Unlock()
			if len(taken) == 0 {
				spare = taken
				break
			}
			for len(taken) > 0 {
				select {
				case <-s.quit:
					s.failQueued(taken)
					return
				default:
				}
				n := min(len(taken), maxOpsPerBatch)
				s.apply(taken[:n])
				clear(taken[:n])
				taken = taken[n:]
			}
			spare = taken[:0]
		}
	}
}

func (s *Store) failQueued(taken []*op) {
	s.qmu.Lock()
	rest := s.queue
	s.queue = nil
	s.qmu.Unlock()
	for _, o := range taken {
		o.fail(s, errClosed)
	}
	for _, o := range rest {
		o.fail(s, errClosed)
	}
}

// batch is the writer's current transaction.
type batch struct {
	s    *Store
	txn  *badger.Txn
	size int64
	n    int64
	ops  []*op // ops with units in this transaction, to complete after it
	chg  []change
	seqs bool // assigned seqs: write m/seq
}

type changeKind uint8

const (
	chAdd    changeKind = iota // new q/ message (seq, at)
	chRetry                    // q/ or r/ -> r/ (from, due)
	chDone                     // q/ or r/ -> gone (from)
	chKill                     // q/ or r/ -> d/ (from)
	chReplay                   // d/ -> q/ (seq = new seq, at, o)
	chPurge                    // d/ -> gone (o)
	chPause                    // m/paused changed (o.paused)
)

type change struct {
	kind changeKind
	from location
	seq  uint64
	due  int64 // chRetry
	at   int64 // chAdd, chReplay: AcceptedAt
	o    *op   // chReplay, chPurge
}

func (s *Store) apply(ops []*op) {
	addErr, allErr := s.db.Check() // free-space reserve, storage directory still there
	if addErr != nil {
		addErr = unavailable(addErr)
	}
	if allErr != nil {
		allErr = unavailable(allErr)
	}
	b := &batch{s: s}
	for _, o := range ops {
		switch {
		case allErr != nil:
			o.fail(s, allErr)
		case addErr != nil && (o.kind == opAccept || o.kind == opReplay):
			o.fail(s, addErr)
		default:
			s.applyOp(b, o)
		}
	}
	b.commit()
}

// entrySize mirrors badger's Txn.checkSize estimate for one entry.
func (s *Store) entrySize(keyLen, valueLen int) int64 {
	if int64(valueLen) < s.valueThreshold {
		return int64(keyLen+valueLen) + 2 + 10
	}
	return int64(keyLen) + 12 + 2 + 10
}

// room makes sure size bytes in n entries fit in the current transaction,
// committing it first if needed. False if they cannot fit even alone.
func (b *batch) room(size, n int64) bool {
	if size > b.s.txnMaxSize || n > b.s.txnMaxCount {
		return false
	}
	if b.size+size > b.s.txnMaxSize || b.n+n > b.s.txnMaxCount {
		b.commit()
	}
	b.size += size
	b.n += n
	return true
}

// tx returns the current transaction, starting one if needed.
func (b *batch) tx() *badger.Txn {
	if b.txn == nil {
		b.txn = b.s.db.NewTransaction(true)
	}
	return b.txn
}

// read runs fn, one of the writer's own reads of key in the current
// transaction, and turns a panic inside Badger (which trusts what it reads:
// a damaged block) into an error wrapping badgerstore.ErrDamaged, so that
// only the op reading fails (unavailable and damaged: readFailed) instead
// of the process. Only reads are guarded, not apply as a whole: an op whose
// writes panicked half-way could be completed twice.
func (b *batch) read(key []byte, fn func(txn *badger.Txn) error) error {
	return b.s.db.Safely(func() error {
		if err := b.s.fault(faultWriter, key); err != nil {
			return err
		}
		return fn(b.tx())
	})
}

func (b *batch) track(o *op) {
	if len(b.ops) == 0 || b.ops[len(b.ops)-1] != o {
		b.ops = append(b.ops, o)
	}
}

// commit commits the transaction, publishes its changes, and completes the
// ops that are finished. The next read or write starts a new transaction.
func (b *batch) commit() {
	s := b.s
	if b.txn == nil { // nothing read or written since the last commit
		b.finish(nil)
		return
	}
	var err error
	if b.seqs {
		err = b.txn.Set(keySeqHighMark, encodeSeq(s.seq))
	}
	if f := s.commitFault.Load(); f != nil && err == nil {
		err = (*f)()
	}
	if err == nil {
		s.commits.Add(1)
		err = b.txn.Commit()
	}
	// Every transaction must end in Discard (Commit does it, except when its
	// precheck fails): an open one holds Badger's read watermark back, and
	// compaction would then keep every deleted version.
	b.txn.Discard()
	b.txn = nil
	if err != nil {
		b.finish(unavailable(fmt.Errorf("committing: %w", err)))
		return
	}
	s.publish(b.chg)
	b.finish(nil)
}

// abort discards the transaction after a write failed half-way (which the
// size budget should prevent): every op in it fails, nothing is half-written.
func (b *batch) abort(err error) {
	b.txn.Discard()
	b.txn = nil
	b.finish(unavailable(err))
}

// finish fails the transaction's ops with err (if any), completes those that
// are fully applied, and resets the batch for the next transaction.
func (b *batch) finish(err error) {
	for _, o := range b.ops {
		if err != nil && o.err == nil {
			o.err = err
			o.resSeq, o.dup = 0, false
		}
		if o.applied {
			o.complete(b.s)
		}
	}
	clear(b.ops)
	b.ops, b.chg, b.seqs, b.size, b.n = b.ops[:0], b.chg[:0], false, 0, 0
}

// publish applies a committed transaction's changes to the in-memory state.
func (s *Store) publish(chg []change) {
	if len(chg) == 0 {
		return
	}
	added := false
	s.mu.Lock()
	for _, c := range chg {
		switch c.from {
		case locQueue:
			s.queued--
		case locRetry:
			s.retrying--
		case locDead:
			s.dead--
		}
		switch c.kind {
		case chAdd, chReplay:
			s.queued++
			s.pending.add(c.seq, dueQueued)
			if f, _ := s.pending.oldest(); f.seq == c.seq {
				s.oldestSeq, s.oldestAt = c.seq, time.Unix(0, c.at)
			}
			added = true
			if c.o != nil {
				c.o.n++
			}
		case chRetry:
			s.retrying++
			s.pending.move(c.seq, c.due)
		case chDone:
			s.pending.remove(c.seq)
		case chKill:
			s.dead++
			s.pending.remove(c.seq)
		case chPurge:
			c.o.n++
		case chPause:
			s.paused.Store(c.o.paused)
			added = added || !c.o.paused // a resume is new work
		}
		if c.kind == chAdd || c.kind == chReplay {
			s.published = max(s.published, c.seq)
		}
	}
	s.mu.Unlock()
	if added {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func (s *Store) applyOp(b *batch, o *op) {
	switch o.kind {
	case opAccept:
		s.applyAccept(b, o)
	case opDelivered, opReschedule, opKill:
		s.applyMove(b, o)
	case opReplay, opPurge:
		for _, seq := range o.seqs {
			s.applyDead(b, o, seq)
		}
	case opPause:
		s.applyPause(b, o)
	case opDrop:
		s.applyDrop(b, o)
	}
	// Complete o after the commit of the current transaction, even if it
	// wrote nothing there: a duplicate may have been found among this
	// transaction's own writes, and an earlier part of o may have been
	// committed already.
	o.applied = true
	b.track(o)
}

func (s *Store) applyAccept(b *batch, o *op) {
	size := s.entrySize(seqKeyLen, len(o.value))
	n := int64(1)
	if o.kkey != nil {
		size += s.entrySize(len(o.kkey), 8)
		n++
	}
	if o.lkey != nil {
		size += s.entrySize(len(o.lkey)+8, 0)
		n++
	}
	if !b.room(size, n) {
		o.err = ErrTooLarge
		return
	}
	b.track(o)
	if o.kkey != nil {
		err := b.read(o.kkey, func(txn *badger.Txn) error {
			item, err := txn.Get(o.kkey)
			if err != nil {
				return err
			}
			return item.Value(func(v []byte) error {
				seq, ok := decodeSeq(v)
				if !ok {
					return errCorrupt
				}
				o.resSeq, o.dup = seq, true
				return nil
			})
		})
		switch {
		case err == nil:
			return // a duplicate
		case !errors.Is(err, badger.ErrKeyNotFound):
			o.resSeq, o.dup = 0, false
			o.err = readFailed(err)
			return
		}
	}
	seq := s.seq + 1
	qkey, seqVal := o.qkey, o.seqVal // room made by Accept
	copy(qkey, prefixQueue)
	binary.BigEndian.PutUint64(qkey[prefixLen:], seq)
	binary.BigEndian.PutUint64(seqVal, seq)
	if err := b.tx().Set(qkey, o.value); err != nil {
		b.abort(err)
		return
	}
	if o.kkey != nil {
		e := badger.NewEntry(o.kkey, seqVal)
		if o.ttl > 0 {
			e = e.WithTTL(o.ttl)
		}
		if err := b.tx().SetEntry(e); err != nil {
			b.abort(err)
			return
		}
	}
	if o.lkey != nil {
		if err := b.tx().Set(binary.BigEndian.AppendUint64(o.lkey[:len(o.lkey):len(o.lkey)], seq), nil); err != nil {
			b.abort(err)
			return
		}
	}
	s.seq = seq
	b.seqs = true
	o.resSeq = seq
	b.chg = append(b.chg, change{kind: chAdd, seq: seq, at: o.at})
}

// applyMove handles Delivered, Reschedule and Kill: the message must still be
// where the lease says.
func (s *Store) applyMove(b *batch, o *op) {
	size := s.entrySize(len(o.oldKey), 0)
	n := int64(1)
	if o.newKey != nil {
		size += s.entrySize(len(o.newKey), len(o.value))
		n++
	}
	if o.lkey != nil {
		size += s.entrySize(len(o.lkey), 0)
		n++
	}
	if !b.room(size, n) {
		o.err = ErrTooLarge
		return
	}
	b.track(o)
	if err := b.read(o.oldKey, func(txn *badger.Txn) error {
		_, err := txn.Get(o.oldKey)
		return err
	}); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			o.err = fmt.Errorf("%w: message %d is no longer there", ErrNotFound, o.seq)
		} else {
			o.err = readFailed(err)
		}
		return
	}
	if o.lkey != nil {
		if err := b.tx().Delete(o.lkey); err != nil {
			b.abort(err)
			return
		}
	}
	if string(o.oldKey) != string(o.newKey) {
		if err := b.tx().Delete(o.oldKey); err != nil {
			b.abort(err)
			return
		}
	}
	if o.newKey != nil {
		if err := b.tx().Set(o.newKey, o.value); err != nil {
			b.abort(err)
			return
		}
	}
	c := change{from: o.oldLoc, seq: o.seq}
	switch o.kind {
	case opDelivered:
		c.kind = chDone
	case opReschedule:
		c.kind, c.due = chRetry, int64(o.newDue)
	case opKill:
		c.kind = chKill
	}
	b.chg = append(b.chg, c)
}

// applyDead replays or purges one dead letter; a seq that is not (or no
// longer) a dead letter, and a corrupt one for a replay, is skipped. Each
// message moves atomically.
func (s *Store) applyDead(b *batch, o *op, seq uint64) {
	key := deadKey(seq)
	for committed := false; ; committed = true {
		var v []byte // a replay's stored message
		err := b.read(key, func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil || o.kind != opReplay {
				return err
			}
			v, err = item.ValueCopy(nil)
			return err
		})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return
		}
		if err != nil {
			if o.err == nil {
				o.err = readFailed(err)
			}
			return
		}
		var m *Message
		size, n := s.entrySize(len(key), 0), int64(1)
		if o.kind == opReplay {
			m = &Message{}
			if decodeMessage(v, m) != nil || m.Corrupt {
				return // a corrupt dead letter stays where operators can see it
			}
			// the re-encoded value may be a few bytes longer (AcceptedAt)
			size += s.entrySize(seqKeyLen, len(v)+16)
			n++
			if m.Lane != "" {
				size += s.entrySize(len(lanePrefix(m.Lane))+8, 0)
				n++
			}
		}
		if size > s.txnMaxSize || n > s.txnMaxCount {
			if o.err == nil {
				o.err = ErrTooLarge
			}
			return
		}
		if b.size+size > s.txnMaxSize || b.n+n > s.txnMaxCount {
			if committed { // cannot happen: the size fits an empty transaction
				if o.err == nil {
					o.err = ErrTooLarge
				}
				return
			}
			b.commit() // then read again in the new transaction
			continue
		}
		b.size += size
		b.n += n
		b.track(o)
		if o.kind == opPurge {
			if err := b.tx().Delete(key); err != nil {
				b.abort(err)
				return
			}
			b.chg = append(b.chg, change{kind: chPurge, from: locDead, seq: seq, o: o})
			return
		}
		at := now()
		m.Attempts, m.LastStatus, m.LastError = 0, 0, ""
		m.NextAttempt, m.DeadAt, m.AcceptedAt = time.Time{}, time.Time{}, at
		newSeq := s.seq + 1
		if err := b.tx().Set(queueKey(newSeq), encodeMessage(m)); err != nil {
			b.abort(err)
			return
		}
		if m.Lane != "" {
			if err := b.tx().Set(laneKey(m.Lane, newSeq), nil); err != nil {
				b.abort(err)
				return
			}
		}
		if err := b.tx().Delete(key); err != nil {
			b.abort(err)
			return
		}
		s.seq = newSeq
		b.seqs = true
		b.chg = append(b.chg, change{kind: chReplay, from: locDead, seq: newSeq, at: at.UnixNano(), o: o})
		return
	}
}

// applyPause records the pause state.
func (s *Store) applyPause(b *batch, o *op) {
	if !b.room(s.entrySize(len(keyPaused), 1), 1) {
		o.err = ErrTooLarge
		return
	}
	b.track(o)
	v := []byte{0}
	if o.paused {
		v[0] = 1
	}
	if err := b.tx().Set(keyPaused, v); err != nil {
		b.abort(err)
		return
	}
	b.chg = append(b.chg, change{kind: chPause, o: o})
}

// applyDrop deletes keys (stale lane entries).
func (s *Store) applyDrop(b *batch, o *op) {
	for _, k := range o.keys {
		if !b.room(s.entrySize(len(k), 0), 1) {
			o.err = ErrTooLarge
			return
		}
		b.track(o)
		if err := b.tx().Delete(k); err != nil {
			b.abort(err)
			return
		}
	}
}
