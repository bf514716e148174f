package dedupe

import (
	"bytes"
	"context"
	"errors"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// view runs fn in a read-only transaction unless the store is closed.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.rclosed {
		return errClosed
	}
	err := s.db.View(fn)
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

// messageFromItem decodes a q/, r/ or d/ item.
func messageFromItem(item *badger.Item) (*Message, error) {
	k := item.Key()
	m := &Message{}
	switch {
	case len(k) == retryKeyLen && k[0] == prefixRetry[0]:
		due, seq, _ := parseRetryKey(k)
		m.Seq, m.loc, m.due = seq, locRetry, uint64(due)
	case len(k) == seqKeyLen && k[0] == prefixQueue[0]:
		m.Seq, _ = parseSeqKey(k)
		m.loc = locQueue
	case len(k) == seqKeyLen && k[0] == prefixDead[0]:
		m.Seq, _ = parseSeqKey(k)
		m.loc = locDead
	default:
		return nil, errCorrupt
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if err := decodeMessage(v, m); err != nil {
		return nil, err
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
// appends decoded messages until limit or until stop says so.
func (s *Store) scan(prefix, seek []byte, reverse bool, limit int, stop func(k []byte) bool) ([]*Message, error) {
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
			item := it.Item()
			if stop != nil && stop(item.Key()) {
				break
			}
			m, err := messageFromItem(item)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Ready returns up to limit queued messages (q/) with Seq > after, in
// ascending Seq order (limit <= 0 means 100). Walk the queue with a cursor:
// Ready(lastSeq, n).
func (s *Store) Ready(after uint64, limit int) ([]*Message, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	return s.scan(prefixQueue, queueKey(after+1), false, limit, nil)
}

// Due returns up to limit retrying messages (r/) whose NextAttempt is at or
// before now, earliest first.
func (s *Store) Due(now time.Time, limit int) ([]*Message, error) {
	bound := retryBound(now)
	return s.scan(prefixRetry, prefixRetry, false, limit, func(k []byte) bool {
		return bytes.Compare(k, bound) >= 0
	})
}

// NextDueExcept returns the earliest retry time in r/ among the messages
// for which skip (may be nil: all) is false, reading keys only; false if
// there is none (or the store is closed). The forwarder skips the ones it has in flight.
func (s *Store) NextDueExcept(skip func(seq uint64) bool) (time.Time, bool) {
	var due int64
	var ok bool
	_ = s.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRetry
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			d, seq, valid := parseRetryKey(it.Item().Key())
			if valid && (skip == nil || !skip(seq)) {
				due, ok = d, true
				return nil
			}
		}
		return nil
	})
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, due), true
}

// DeadLetters returns up to limit dead letters, newest (highest Seq) first,
// with Seq < before; before = 0 starts from the newest. Page with the last
// Seq returned.
func (s *Store) DeadLetters(before uint64, limit int) ([]*Message, error) {
	if before == 1 {
		return nil, nil
	}
	seek := deadKey(math.MaxUint64)
	if before > 0 {
		seek = deadKey(before - 1)
	}
	return s.scan(prefixDead, seek, true, limit, nil)
}

// DeadLetter returns the dead letter seq, or ErrNotFound.
func (s *Store) DeadLetter(seq uint64) (*Message, error) {
	return s.get(deadKey(seq))
}
