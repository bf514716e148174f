package sender

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// FailedPage returns up to limit failed deliveries of account (every
// account's if it is ""), most recently failed first, starting after cursor
// ("" = from the newest). next is the cursor of the following page, "" when
// there is none. A cursor stays valid when the delivery it names is replayed
// or purged meanwhile. Cursors are opaque; a malformed one is an
// ErrInvalid. An account that does not exist has none.
func (s *Sender) FailedPage(account, cursor string, limit int) (page []Delivery, next string, err error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: limit must be positive", ErrInvalid)
	}
	prefix := []byte(prefixFailed)
	if account != "" {
		prefix = failedByPrefix(account)
	}
	seek := append(slices.Clone(prefix), 0xff)
	var after []byte
	if cursor != "" {
		rest, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(rest) < 8 {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		after = append(slices.Clone(prefix), rest...)
		seek = after
	}
	if err := s.acquire(); err != nil {
		return nil, "", err
	}
	defer s.release()
	page = []Delivery{}
	var lastKey []byte
	more := false
	err = s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()
			if after != nil && bytes.Equal(k, after) {
				continue // the cursor's own entry ends the previous page
			}
			_, id, ok := parseTimeKey(string(prefix), k)
			if !ok {
				continue
			}
			if len(page) == limit {
				// Another page exists if this entry's delivery does.
				_, err := txn.Get(deliveryKey(id))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // purged meanwhile
				}
				more = err == nil
				return err
			}
			var d Delivery
			err := getJSON(txn, deliveryKey(id), &d)
			if errors.Is(err, ErrNotFound) {
				continue // purged meanwhile
			}
			if err != nil {
				return err
			}
			d.Account = d.account()
			page = append(page, d)
			lastKey = it.Item().KeyCopy(nil)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if more {
		next = base64.RawURLEncoding.EncodeToString(lastKey[len(prefix):])
	}
	return page, next, nil
}
