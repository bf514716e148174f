package dedupe

import (
	"context"
	"errors"
	"math"

	"github.com/dgraph-io/badger/v4"
)

// view runs fn in a read-only transaction unless the store is closed; a
// panic inside Badger becomes an error (unavailable).
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.rclosed {
		return errClosed
	}
	err := s.db.Safely(func() error { return s.db.View(fn) }) // Badger trusts what it reads
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, errCorrupt),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return unavailable(err)
}

// get reads the message stored under key.
func (s *Store) get(key []byte) (*Message, error) {
	var m *Message
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		m, err = messageFromItem(item)
		return err
	})
	return m, err
}

// messageFromItem decodes a q/, r/ or d/ item. A value that does not decode
// or match its checksum comes back as a message with only its Seq and
// Corrupt set.
func messageFromItem(item *badger.Item) (*Message, error) {
	k := item.Key()
	m := &Message{}
	switch {
	case len(k) == retryKeyLen && k[0] == prefixRetry[0]:
		_, m.Seq, _ = parseRetryKey(k)
	case len(k) == seqKeyLen && (k[0] == prefixQueue[0] || k[0] == prefixDead[0]):
		m.Seq, _ = parseSeqKey(k)
	default:
		return nil, errCorrupt
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if err := decodeMessage(v, m); err != nil {
		return &Message{Seq: m.Seq, Corrupt: true}, nil
	}
	return m, nil
}

func normLimit(limit int) int {
	if limit <= 0 {
		return defaultLimit
	}
	return limit
}

// scan iterates prefix from seek (forward, or backward when reverse) and
// appends decoded messages until limit.
func (s *Store) scan(prefix, seek []byte, reverse bool, limit int) ([]*Message, error) {
	limit = normLimit(limit)
	var out []*Message
	err := s.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = reverse
		opts.PrefetchSize = min(limit, 64)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.Valid() && len(out) < limit; it.Next() {
			m, err := messageFromItem(it.Item())
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// DeadLetters returns up to limit dead letters, newest (highest Seq) first,
// with Seq < before; before = 0 starts from the newest. Page with the last
// Seq returned.
func (s *Store) DeadLetters(_ context.Context, before uint64, limit int) ([]*Message, error) {
	if before == 1 {
		return nil, nil
	}
	seek := deadKey(math.MaxUint64)
	if before > 0 {
		seek = deadKey(before - 1)
	}
	return s.scan(prefixDead, seek, true, limit)
}

// DeadLetter returns the dead letter seq, or ErrNotFound.
func (s *Store) DeadLetter(_ context.Context, seq uint64) (*Message, error) {
	return s.get(deadKey(seq))
}
