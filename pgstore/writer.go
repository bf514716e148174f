package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadterra/caddy-webhooks/queue"
)

// The writers: group commit.
//
// Accept and Settle append an op to db.queue and wait. Each writer goroutine
// takes what is queued (up to maxBatchOps / maxBatchBytes) and sends it as
// one pgx batch: one round trip, one implicit transaction, one commit (one
// WAL flush, as durable as the server's synchronous_commit). Only after that
// commit are the ops completed: nobody is acked before their commit. If the
// batch fails, every op in it fails with ErrUnavailable (the transaction
// rolled back as a whole); a batch that never reached the server, or that
// the server aborted for a deadlock, is sent once more.
//
// Backlog. An accept whose caller stops waiting before a writer took it is
// abandoned: no writer sends it (its caller was told it failed and sends it
// again; a hanging server must not store it later nor keep it in memory).
// Once taken it may commit: the caller's retry is then a duplicate. The
// accepts of callers still waiting are capped at maxQueuedAccepts bytes;
// beyond, Accept fails at once with ErrUnavailable.
//
// Statements. The messages without a lane of a batch are accepted by one
// statement (unnest of arrays), and the delivered ones without a lane
// deleted by one: a statement per message costs the server about twice the
// CPU (BenchmarkAccept: 100 → 50-65 µs per accept). Messages of lanes get a
// statement each, run in order: each sees the ones before it.
//
// Locks. A batch first takes the advisory locks of the lanes it touches, in
// order, then inserts its keys in (receiver, key) order and settles in
// (receiver, seq) order: two batches (of two writers, or of two replicas)
// take their locks in the same order and do not deadlock.

type opKind uint8

const (
	opAccept opKind = iota
	opSettle
)

type op struct {
	kind opKind
	rid  int32

	// accept
	env     envelope
	sum     int32
	expires *time.Time // key expiry, nil = never
	now     time.Time

	// settle
	seq     int64
	lease   int64
	verdict queue.Verdict
	outcome queue.Outcome
	lastErr []byte
	lane    []byte // the lane the caller's copy names (for its lock)

	first *op // the batch's first accept of the same key (this one is its duplicate)

	// Guarded by db.qmu: taken once a writer took it (it may commit from
	// then on); abandoned once its caller stopped waiting before that (no
	// writer sends it then); charge is what it counts in db.qbytes.
	taken, abandoned bool
	charge           int64

	// results
	resSeq   int64
	dup      bool
	settled  bool
	promoted bool
	err      error
	done     chan struct{}
}

func (o *op) finish(err error) {
	o.err = err
	close(o.done)
}

// laneKey is a lane's advisory lock: (receiver, 32-bit FNV-1a of the lane).
type laneKey struct{ rid, hash int32 }

func laneLock(rid int32, lane []byte) laneKey {
	h := fnv.New32a()
	h.Write(lane)
	return laneKey{rid, int32(h.Sum32())}
}

// maxQueuedAccepts caps the bytes of accepts waiting for a writer (their
// envelopes, plus opOverhead each). While the server hangs, the accepts of
// callers still waiting pile up: beyond this, new ones fail at once with
// ErrUnavailable instead of filling memory. A backstop for library users:
// in Caddy, max_body_in_flight (64 MiB by default) bounds the waiting
// bodies first. A var for tests.
var maxQueuedAccepts int64 = 128 << 20

// opOverhead is what an accept counts in maxQueuedAccepts besides its
// envelope: the op and its slices.
const opOverhead = 512

// errAbandoned finishes an op that its caller stopped waiting for before a
// writer took it (nobody reads it).
var errAbandoned = errors.New("pgstore: abandoned by its caller")

// submit queues o for a writer. It fails o if db is closed, and refuses an
// accept when maxQueuedAccepts bytes of them wait already.
func (db *DB) submit(o *op) error {
	o.done = make(chan struct{})
	db.qmu.Lock()
	if db.qclosed {
		db.qmu.Unlock()
		o.finish(queue.Closed)
		return nil
	}
	if o.kind == opAccept {
		o.charge = int64(o.env.size()) + opOverhead
		if db.qbytes > 0 && db.qbytes+o.charge > maxQueuedAccepts {
			db.qmu.Unlock()
			return unavailable("accepting", fmt.Errorf("%d MiB of accepts already wait for the server", maxQueuedAccepts>>20))
		}
		db.qbytes += o.charge
	}
	db.queue = append(db.queue, o)
	db.qmu.Unlock()
	select {
	case db.wake <- struct{}{}:
	default:
	}
	return nil
}

// abandon is called when o's caller stops waiting for it: if no writer took
// o yet, no writer ever will (the caller was told it failed; a retry of it
// must not find it stored, nor must it wait in memory through an outage).
// Once taken, o may commit: its caller's retry is then a duplicate.
func (db *DB) abandon(o *op) {
	db.qmu.Lock()
	defer db.qmu.Unlock()
	if o.taken || o.abandoned || db.qclosed {
		return
	}
	o.abandoned = true
	db.qbytes -= o.charge
	o.env = envelope{} // its body may go now
	db.qabandoned++
	// Compact when abandoned ops are most of the queue (amortised O(1) each).
	if db.qabandoned > 64 && 2*db.qabandoned > len(db.queue) {
		db.queue = slices.DeleteFunc(db.queue, func(o *op) bool {
			if o.abandoned {
				o.finish(errAbandoned)
			}
			return o.abandoned
		})
		db.qabandoned = 0
	}
}

// take removes the next batch from the queue, and the abandoned ops before
// it.
func (db *DB) take() []*op {
	db.qmu.Lock()
	defer db.qmu.Unlock()
	var ops []*op
	i, size := 0, 0
	for ; i < len(db.queue) && len(ops) < maxBatchOps; i++ {
		o := db.queue[i]
		if o.abandoned {
			db.qabandoned--
			o.finish(errAbandoned)
			continue
		}
		size += o.env.size()
		if len(ops) > 0 && size > maxBatchBytes {
			break
		}
		o.taken = true
		db.qbytes -= o.charge
		ops = append(ops, o)
	}
	clear(db.queue[:i])
	db.queue = db.queue[i:]
	if len(db.queue) > 0 {
		// more for another writer (or this one's next round)
		select {
		case db.wake <- struct{}{}:
		default:
		}
	}
	return ops
}

func (db *DB) writer() {
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-db.wake:
		}
		for {
			ops := db.take()
			if len(ops) == 0 {
				break
			}
			db.commit(ops)
		}
	}
}

// commit runs ops in one transaction and completes them.
func (db *DB) commit(ops []*op) {
	sortOps(ops)
	gen := db.health.begin()
	var err error
	for try := 0; try < 2; try++ {
		err = db.runBatch(ops)
		if err == nil || !isRetryable(err) || db.ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if db.ctx.Err() != nil {
			err = queue.Closed
		} else {
			err = internal(err)
			db.health.failed(err)
			err = unavailable("committing", err)
		}
		for _, o := range ops {
			o.finish(err)
		}
		return
	}
	db.health.ok(gen)
	db.commits.Add(1)
	announced := map[int32]bool{}
	for _, o := range ops {
		if o.kind == opAccept {
			db.accepts.Add(1)
		}
		if (o.kind == opAccept && !o.dup || o.promoted) && !announced[o.rid] {
			announced[o.rid] = true
			db.announce(o.rid)
		}
		o.finish(nil)
	}
}

// sortOps puts ops in lock order: accepts by (receiver, event, key), keyless last,
// then settles by (receiver, seq). The sort is stable: two accepts of one
// key keep their arrival order (the first is the one stored).
func sortOps(ops []*op) {
	slices.SortStableFunc(ops, func(a, b *op) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		if c := cmp.Compare(a.rid, b.rid); c != 0 {
			return c
		}
		if a.kind == opSettle {
			return cmp.Compare(a.seq, b.seq)
		}
		if (a.env.key == nil) != (b.env.key == nil) {
			if a.env.key == nil {
				return 1
			}
			return -1
		}
		return cmp.Or(slices.Compare(a.env.kevent, b.env.kevent), slices.Compare(a.env.key, b.env.key))
	})
}

// runBatch sends ops as one batch and reads their results into them.
//
// Accepts of one key in the batch after the first are not sent: they are
// duplicates of the first (same seq). Messages without a lane are accepted
// by one bulk statement, delivered ones without a lane deleted by another;
// messages of lanes, retries and dead letters get a statement each.
func (db *DB) runBatch(ops []*op) error {
	b := &pgx.Batch{}
	var locks []laneKey
	var followers []*op // accepts of a key already in the batch: dups of its first
	type dedupeID struct {
		rid        int32
		event, key string
	}
	first := map[dedupeID]*op{} // the first accept of each (receiver, event, key)
	var bulk, delivered []*op
	for _, o := range ops {
		o.resSeq, o.dup, o.settled, o.promoted, o.first = 0, false, false, false, nil
		switch {
		case o.kind == opAccept && o.env.key != nil:
			id := dedupeID{o.rid, string(o.env.kevent), string(o.env.key)}
			if f := first[id]; f != nil {
				o.first = f
				followers = append(followers, o)
				continue
			}
			first[id] = o
		}
		switch {
		case o.kind == opAccept && o.env.lane != nil:
			locks = append(locks, laneLock(o.rid, o.env.lane))
		case o.kind == opAccept:
			bulk = append(bulk, o)
		case o.kind == opSettle && o.verdict == queue.Delivered && o.lane == nil:
			delivered = append(delivered, o)
		case o.kind == opSettle && o.verdict != queue.Retry && o.lane != nil:
			locks = append(locks, laneLock(o.rid, o.lane))
		}
	}
	slices.SortFunc(locks, func(a, b laneKey) int {
		return cmp.Or(cmp.Compare(a.rid, b.rid), cmp.Compare(a.hash, b.hash))
	})
	for _, k := range slices.Compact(locks) {
		b.Queue(sqlLaneLock, k.rid, k.hash)
	}

	t := now()
	for _, o := range ops {
		switch {
		case o.first != nil:
		case o.kind == opAccept && o.env.lane != nil:
			queueAccept(b, o)
		case o.kind == opSettle && !(o.verdict == queue.Delivered && o.lane == nil):
			queueSettle(b, o)
		}
	}
	if len(bulk) > 0 {
		queueAcceptBulk(b, bulk, t)
	}
	if len(delivered) > 0 {
		queueDeliveredBulk(b, delivered)
	}

	ctx, cancel := context.WithTimeout(db.ctx, db.o.WriteTimeout)
	defer cancel()
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	for _, o := range followers {
		o.resSeq, o.dup = o.first.resSeq, true
	}
	return nil
}

func queueAcceptBulk(b *pgx.Batch, ops []*op, t time.Time) {
	n := len(ops)
	var (
		rids     = make([]int32, n)
		keys     = make([][]byte, n)
		expires  = make([]*time.Time, n)
		at       = make([]time.Time, n)
		events   = make([][]byte, n)
		metas    = make([][]byte, n)
		bodies   = make([][]byte, n)
		checksum = make([]int32, n)
		kevents  = make([][]byte, n)
	)
	for i, o := range ops {
		rids[i], keys[i], expires[i], at[i] = o.rid, o.env.key, o.expires, o.env.at
		events[i], metas[i], bodies[i], checksum[i] = o.env.event, o.env.meta, o.env.body, o.sum
		kevents[i] = o.env.kevent
	}
	b.Queue(sqlAcceptBulk, rids, keys, expires, at, events, metas, bodies, checksum, t, kevents).
		Query(func(rows pgx.Rows) error {
			i := 0
			for rows.Next() {
				if i >= n {
					return errors.New("pgstore: bulk accept returned too many rows")
				}
				var seq, keySeq int64
				if err := rows.Scan(&seq, &keySeq); err != nil {
					return err
				}
				ops[i].resSeq, ops[i].dup = keySeq, keySeq != seq
				i++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if i != n {
				return fmt.Errorf("pgstore: bulk accept returned %d rows for %d messages", i, n)
			}
			return nil
		})
}

func queueDeliveredBulk(b *pgx.Batch, ops []*op) {
	n := len(ops)
	rids, seqs, leases := make([]int32, n), make([]int64, n), make([]int64, n)
	type ref struct {
		rid int32
		seq int64
	}
	byRef := make(map[ref]*op, n)
	for i, o := range ops {
		rids[i], seqs[i], leases[i] = o.rid, o.seq, o.lease
		byRef[ref{o.rid, o.seq}] = o
	}
	b.Queue(sqlDeliveredBulk, rids, seqs, leases).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.rid, &r.seq); err != nil {
				return err
			}
			if o := byRef[r]; o != nil {
				o.settled = true
			}
		}
		return rows.Err()
	})
}

func queueAccept(b *pgx.Batch, o *op) {
	e := &o.env
	if e.key == nil {
		b.Queue(sqlAcceptUnkeyed, o.rid, e.lane, e.at, e.event, e.meta, e.body, o.sum).
			QueryRow(func(row pgx.Row) error { return row.Scan(&o.resSeq) })
		return
	}
	b.Queue(sqlAcceptKeyed, o.rid, e.key, o.expires, o.now, e.lane, e.at, e.event, e.meta, e.body, o.sum, e.kevent).
		QueryRow(func(row pgx.Row) error { return row.Scan(&o.resSeq, &o.dup) })
}

func queueSettle(b *pgx.Batch, o *op) {
	oc := &o.outcome
	if o.verdict == queue.Retry {
		b.Queue(sqlSettleRetry, o.rid, o.seq, o.lease, oc.Next, oc.Attempts, oc.Status, o.lastErr).
			QueryRow(func(row pgx.Row) error {
				var seq int64
				err := row.Scan(&seq)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				o.settled = err == nil
				return err
			})
		return
	}
	dead := o.verdict == queue.Dead
	b.Queue(sqlSettleDone, o.rid, o.seq, o.lease, dead, o.now, oc.Attempts, oc.Status, o.lastErr, oc.Corrupt).
		QueryRow(func(row pgx.Row) error {
			var settled, promoted int64
			if err := row.Scan(&settled, &promoted); err != nil {
				return err
			}
			o.settled, o.promoted = settled > 0, promoted > 0
			return nil
		})
}
