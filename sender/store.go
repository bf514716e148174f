package sender

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
)

// openDB opens the Badger database in dir through badgerstore (checksums,
// a damaged store refused with the file named, crash leftovers repaired,
// the free-space reserve minFree, a safe close) with options sized for a
// webhook sender (small memtables and caches) and synchronous writes, so
// that every committed transaction is on disk before the commit returns.
func openDB(dir string, logger *zap.Logger, minFree int64) (*badgerstore.DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).
		WithValueLogFileSize(64 << 20).
		WithMetricsEnabled(false)
	return badgerstore.Open(dir, opts, logger, badgerstore.Config{MinFreeSpace: minFree})
}

// view runs fn in a read transaction; a panic inside Badger (which trusts
// what it reads) becomes an error wrapping badgerstore.ErrDamaged.
func (s *Sender) view(fn func(txn *badger.Txn) error) error {
	return s.db.Safely(func() error { return s.db.View(fn) })
}

// unavailable marks a badgerstore refusal (no space, directory gone, closed)
// as ErrUnavailable, keeping both in the chain.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, badgerstore.ErrNoSpace) || errors.Is(err, badgerstore.ErrDirGone) || errors.Is(err, badgerstore.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// getJSON reads key into v; it returns ErrNotFound if key is absent.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

// setJSON writes v at key, expiring after ttl if ttl > 0.
func setJSON(txn *badger.Txn, key []byte, v any, ttl time.Duration) error {
	var b []byte
	if d, ok := v.(*Delivery); ok && d.encodable() {
		b = d.appendJSON(make([]byte, 0, 384+128*len(d.Attempts)))
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	e := badger.NewEntry(key, b)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return txn.SetEntry(e)
}

// getBytes returns a copy of the value at key, or ErrNotFound.
func getBytes(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// releaseEvent drops one reference to an event's envelope and deletes the
// envelope when no delivery needs it any more.
func releaseEvent(txn *badger.Txn, eventID string) error {
	b, err := getBytes(txn, refsKey(eventID))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var n uint32
	if len(b) == 4 {
		n = binary.BigEndian.Uint32(b)
	}
	if n <= 1 {
		if err := txn.Delete(refsKey(eventID)); err != nil {
			return err
		}
		return txn.Delete(eventKey(eventID))
	}
	return txn.Set(refsKey(eventID), binary.BigEndian.AppendUint32(nil, n-1))
}

// update runs fn in a read-write transaction, retrying it on conflicts.
func update(db *badger.DB, fn func(txn *badger.Txn) error) error {
	var err error
	for range 16 {
		err = db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("committing after repeated conflicts: %w", err)
}
