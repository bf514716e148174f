package dedupe

import (
	"context"

	"github.com/dgraph-io/badger/v4"
)

// seqsPerOp is how many dead letters one Replay/Purge op carries; the writer
// still splits an op across transactions when the messages are large. Each
// message moves (or is deleted) atomically.
const seqsPerOp = 256

// Replay moves the dead letters that filter accepts (nil = all) back to q/
// under new sequence numbers, so that a forwarder walking q/ with a cursor
// sees them, with Attempts, LastStatus, LastError and DeadAt reset and
// AcceptedAt = now (the oldest-age statistic counts from the replay). It
// returns how many moved; durable like Accept.
func (s *Store) Replay(ctx context.Context, filter func(*Message) bool) (int, error) {
	seqs, err := s.deadSeqs(ctx, filter)
	if err != nil {
		return 0, err
	}
	return s.ReplaySeqs(ctx, seqs)
}

// ReplaySeqs replays the given dead letters; seqs that are not dead letters
// are skipped (not counted).
func (s *Store) ReplaySeqs(ctx context.Context, seqs []uint64) (int, error) {
	return s.deadOps(ctx, opReplay, seqs)
}

// Purge deletes the dead letters that filter accepts (nil = all) and returns
// how many.
func (s *Store) Purge(ctx context.Context, filter func(*Message) bool) (int, error) {
	seqs, err := s.deadSeqs(ctx, filter)
	if err != nil {
		return 0, err
	}
	return s.PurgeSeqs(ctx, seqs)
}

// PurgeSeqs deletes the given dead letters; absent seqs are skipped.
func (s *Store) PurgeSeqs(ctx context.Context, seqs []uint64) (int, error) {
	return s.deadOps(ctx, opPurge, seqs)
}

func (s *Store) deadOps(ctx context.Context, kind opKind, seqs []uint64) (int, error) {
	total := 0
	for len(seqs) > 0 {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := min(len(seqs), seqsPerOp)
		o := &op{kind: kind, seqs: seqs[:n:n], res: make(chan *op, 1)}
		seqs = seqs[n:]
		if err := s.submit(o); err != nil {
			return total, err
		}
		select {
		case <-o.res:
		case <-ctx.Done():
			return total, ctx.Err()
		}
		total += o.n
		if o.err != nil {
			return total, o.err
		}
	}
	return total, nil
}

// deadSeqs lists the dead letters filter accepts, oldest first.
func (s *Store) deadSeqs(ctx context.Context, filter func(*Message) bool) ([]uint64, error) {
	var seqs []uint64
	err := s.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixDead
		opts.PrefetchValues = filter != nil
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			seq, ok := parseSeqKey(item.Key())
			if !ok {
				continue
			}
			if filter != nil {
				m, err := messageFromItem(item)
				if err != nil {
					return err
				}
				if !filter(m) {
					continue
				}
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	return seqs, err
}
