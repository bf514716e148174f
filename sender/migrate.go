package sender

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// layoutVersion is the version of the key layout (keys.go) this code
// writes.
const layoutVersion = 2

// migrateBatch bounds the keys one migration transaction writes.
const migrateBatch = 1000

// migrate brings the store in db to layoutVersion:
//
//   - 1 → 2 (accounts): every webhook and delivery of a layout-1 store is
//     DefaultAccount's. Their records are left as they are (an empty
//     account reads as DefaultAccount); the default account's record and the
//     by-account index of the failed deliveries (g/default/…) are written,
//     then m/version. Each step is idempotent, so a crash midway is
//     finished by the next Open.
//
// A new store gets the default account and m/version. A store of a newer
// layout is refused.
func migrate(db *badger.DB, now time.Time, log *zap.Logger) error {
	version, err := readVersion(db)
	if err != nil {
		return err
	}
	switch {
	case version == layoutVersion:
		return nil
	case version > layoutVersion:
		return fmt.Errorf("the store has layout version %d, newer than this build's %d: it was written by a newer version", version, layoutVersion)
	}

	// 1 → 2.
	err = update(db, func(txn *badger.Txn) error {
		_, err := txn.Get(accountKey(DefaultAccount))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return setJSON(txn, accountKey(DefaultAccount), &Account{ID: DefaultAccount, Name: "Default", CreatedAt: now.Truncate(time.Millisecond)}, 0)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("creating the %s account: %w", DefaultAccount, err)
	}
	indexed := 0
	for after := []byte(nil); ; {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixFailed)})
			defer it.Close()
			it.Rewind()
			if after != nil {
				it.Seek(after)
				if it.Valid() && string(it.Item().Key()) == string(after) {
					it.Next()
				}
			}
			for ; it.Valid() && len(keys) < migrateBatch; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading failed deliveries: %w", err)
		}
		if len(keys) == 0 {
			break
		}
		err = update(db, func(txn *badger.Txn) error {
			for _, k := range keys {
				at, id, ok := parseTimeKey(prefixFailed, k)
				if !ok {
					continue
				}
				if err := txn.Set(failedByKey(DefaultAccount, at, id), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("indexing failed deliveries by account: %w", err)
		}
		indexed += len(keys)
		after = keys[len(keys)-1]
	}
	err = update(db, func(txn *badger.Txn) error {
		return txn.Set([]byte(keyVersion), binary.BigEndian.AppendUint32(nil, layoutVersion))
	})
	if err != nil {
		return fmt.Errorf("writing the layout version: %w", err)
	}
	if version > 0 {
		log.Info("sender store migrated", zap.Int("from_version", version), zap.Int("to_version", layoutVersion),
			zap.Int("failed_deliveries_indexed", indexed))
	}
	return nil
}

// readVersion returns the store's layout version: m/version, or 1 for a
// store of before accounts (which has webhooks but no version), or 0 for a
// new, empty store.
func readVersion(db *badger.DB) (int, error) {
	version := 0
	err := db.View(func(txn *badger.Txn) error {
		b, err := getBytes(txn, []byte(keyVersion))
		if err == nil {
			if len(b) != 4 {
				return fmt.Errorf("malformed layout version %x", b)
			}
			version = int(binary.BigEndian.Uint32(b))
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		if it.Rewind(); it.Valid() {
			version = 1
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading the layout version: %w", err)
	}
	return version, nil
}
