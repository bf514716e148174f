package dedupe

import (
	"context"

	"github.com/dgraph-io/badger/v4"

	"github.com/leadterra/caddy-webhooks/queue"
)

// seqsPerOp is how many dead letters one Replay/Purge op carries; the writer
// still splits an op across transactions when the messages are large. Each
// message moves (or is deleted) atomically.
const seqsPerOp = 256

// Replay moves the dead letters sel chooses back to q/ under new sequence
// numbers, so that the forwarder's walk of q/ sees them, with Attempts,
// LastStatus, LastError and DeadAt reset and AcceptedAt = now (retry_for and
// the oldest-age figure count from the replay); corrupt ones stay. It returns
// how many moved; durable like Accept.
func (s *Store) Replay(ctx context.Context, sel queue.Selector) (int, error) {
	seqs, err := s.deadSeqs(ctx, sel)
	if err != nil {
		return 0, err
	}
	return s.deadOps(ctx, opReplay, seqs)
}

// Purge deletes the dead letters sel chooses and returns how many.
func (s *Store) Purge(ctx context.Context, sel queue.Selector) (int, error) {
	seqs, err := s.deadSeqs(ctx, sel)
	if err != nil {
		return 0, err
	}
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

// deadSeqs lists the dead letters sel chooses, oldest first. Seqs alone are
// taken as they are (absent ones are skipped by the writer); any other filter
// reads the dead letters (a corrupt one matches only a selector without
// filters).
func (s *Store) deadSeqs(ctx context.Context, sel queue.Selector) ([]uint64, error) {
	filtered := sel.Event != "" || !sel.Since.IsZero() || !sel.Until.IsZero()
	if sel.Empty() {
		return nil, nil
	}
	if len(sel.Seqs) > 0 && !filtered {
		return sel.Seqs, nil
	}
	var wanted map[uint64]bool
	if len(sel.Seqs) > 0 {
		wanted = make(map[uint64]bool, len(sel.Seqs))
		for _, q := range sel.Seqs {
			wanted[q] = true
		}
	}
	var seqs []uint64
	err := s.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixDead
		opts.PrefetchValues = filtered
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			seq, ok := parseSeqKey(item.Key())
			if !ok || (wanted != nil && !wanted[seq]) {
				continue
			}
			if filtered {
				m, err := messageFromItem(item)
				if err != nil {
					return err
				}
				if m.Corrupt || !sel.Match(m) {
					continue
				}
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	return seqs, err
}
