package sender

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// maxBatch bounds how many mutations one group commit holds.
const maxBatch = 256

// writeReq is a mutation waiting for the writer. adds marks the ones that
// add data, refused first when free space runs short (see freespace.go).
type writeReq struct {
	fn    func(txn *badger.Txn) error
	after func() // if not nil: run by the writer once fn is committed
	done  chan error
	adds  bool
}

// commit runs fn in a transaction through the writer, which commits the
// mutations submitted meanwhile together: one synchronous write for the
// batch instead of one per mutation. fn may run more than once (if the batch
// has to be retried one by one), so it must reset whatever it captures. The
// caller must hold the life lock (acquire).
func (s *Sender) commit(fn func(txn *badger.Txn) error) error {
	req := writeReq{fn: fn, done: make(chan error, 1)}
	s.writes <- req
	return <-req.done
}

// commitThen is commit, with after run by the writer once fn is committed,
// before any later commit: in-memory state that mirrors what fn stored is
// changed in commit order there.
func (s *Sender) commitThen(fn func(txn *badger.Txn) error, after func()) error {
	req := writeReq{fn: fn, after: after, done: make(chan error, 1)}
	s.writes <- req
	return <-req.done
}

// commitAdding is commit for a mutation that adds data (a publish, a
// registration, a replay, a new account or key): it is refused with
// ErrUnavailable as soon as free space falls below the reserve.
func (s *Sender) commitAdding(fn func(txn *badger.Txn) error) error {
	req := writeReq{fn: fn, done: make(chan error, 1), adds: true}
	s.writes <- req
	return <-req.done
}

// leftAlone is what a mutation returns (through leave) when it refuses its
// own request before writing anything — the delivery is unknown or not in
// the state asked for. The writer hands err to that caller and still commits
// the rest of the batch.
type leftAlone struct{ err error }

func (l leftAlone) Error() string { return l.err.Error() }
func (l leftAlone) Unwrap() error { return l.err }

// leave marks err as a refusal that wrote nothing (see leftAlone).
func leave(err error) error { return leftAlone{err} }

// outcome is what a caller is told of its mutation's err: a refusal is
// passed on as the plain error.
func outcome(err error) error {
	var l leftAlone
	if errors.As(err, &l) {
		return l.err
	}
	return err
}

// commitAll submits every fn to the writer before waiting for any, so that
// they share commits (up to maxBatch each); errs[i] is fns[i]'s outcome. The
// same rules as commit (or commitAdding, if adds) apply.
func (s *Sender) commitAll(adds bool, fns []func(txn *badger.Txn) error) []error {
	reqs := make([]writeReq, len(fns))
	for i, fn := range fns {
		reqs[i] = writeReq{fn: fn, done: make(chan error, 1), adds: adds}
		s.writes <- reqs[i]
	}
	errs := make([]error, len(fns))
	for i, r := range reqs {
		errs[i] = <-r.done
	}
	return errs
}

// writer is the group-commit goroutine; it exits when s.writes is closed.
func (s *Sender) writer() {
	defer close(s.writerDone)
	batch := make([]writeReq, 0, maxBatch)
	for req := range s.writes {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		batch = s.refuseOverReserve(batch)
		if len(batch) == 0 {
			continue
		}
		results := make([]error, len(batch))
		err := s.update(func(txn *badger.Txn) error {
			for i, r := range batch {
				err := r.fn(txn)
				var l leftAlone
				if errors.As(err, &l) {
					results[i] = l.err // wrote nothing: the rest commits
					continue
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			s.commits.Add(1)
			for i, r := range batch {
				if results[i] == nil && r.after != nil {
					r.after()
				}
				r.done <- results[i]
			}
			continue
		}
		// A conflict, a batch too big or one failing (or panicking)
		// mutation: redo them one by one so that each gets its own answer.
		for _, r := range batch {
			err := s.db.Safely(func() error { return update(s.db.DB, r.fn) })
			if err == nil {
				s.commits.Add(1)
				if r.after != nil {
					r.after()
				}
			}
			r.done <- outcome(err)
		}
	}
}

// update runs fn in one read-write transaction. The mutations read the store
// too, and Badger panics on data it cannot trust: a panic becomes an error
// wrapping badgerstore.ErrDamaged (Badger discards the transaction), as in
// view, so that the writer — and the process — carries on.
func (s *Sender) update(fn func(txn *badger.Txn) error) error {
	return s.db.Safely(func() error { return s.db.Update(fn) })
}

// refuseOverReserve answers the mutations of batch that the store's guard
// does not allow (badgerstore's Check: below the free-space reserve what
// adds data, below half of it, or with the directory gone, everything) with
// ErrUnavailable, and returns the others.
func (s *Sender) refuseOverReserve(batch []writeReq) []writeReq {
	addErr, allErr := s.db.Check()
	if addErr == nil && allErr == nil {
		if s.spaceLow {
			s.spaceLow = false
			s.cfg.Load().Logger.Info("the store takes every write again", zap.String("storage", s.db.Dir()))
		}
		return batch
	}
	addErr, allErr = unavailable(addErr), unavailable(allErr)
	if addErr == nil {
		addErr = allErr
	}
	if !s.spaceLow {
		s.spaceLow = true
		s.cfg.Load().Logger.Error("the store refuses writes that add data (503), or all of them", zap.Error(addErr))
	}
	kept := batch[:0]
	for _, r := range batch {
		switch {
		case allErr != nil:
			r.done <- allErr
		case r.adds:
			r.done <- addErr
		default:
			kept = append(kept, r)
		}
	}
	return kept
}
