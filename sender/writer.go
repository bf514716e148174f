package sender

import (
	"github.com/dgraph-io/badger/v4"
)

// maxBatch bounds how many mutations one group commit holds.
const maxBatch = 256

// writeReq is a mutation waiting for the writer.
type writeReq struct {
	fn   func(txn *badger.Txn) error
	done chan error
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

// commitAll submits every fn to the writer before waiting for any, so that
// they share commits (up to maxBatch each); errs[i] is fns[i]'s outcome. The
// same rules as commit apply.
func (s *Sender) commitAll(fns []func(txn *badger.Txn) error) []error {
	reqs := make([]writeReq, len(fns))
	for i, fn := range fns {
		reqs[i] = writeReq{fn: fn, done: make(chan error, 1)}
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
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, r := range batch {
				if err := r.fn(txn); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			s.commits.Add(1)
			for _, r := range batch {
				r.done <- nil
			}
			continue
		}
		// A conflict, a batch too big or one failing mutation: redo them
		// one by one so that each gets its own answer.
		for _, r := range batch {
			err := update(s.db, r.fn)
			if err == nil {
				s.commits.Add(1)
			}
			r.done <- err
		}
	}
}
