package dedupe

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/queue/queuetest"
)

// TestContract runs the queue contract suite against the Badger store (one
// process: no Replica).
func TestContract(t *testing.T) {
	var (
		mu   sync.Mutex
		dirs = map[queue.Store]string{}
	)
	open := func(t *testing.T, dir string) queue.Store {
		s := openTest(t, dir)
		mu.Lock()
		dirs[s] = dir
		mu.Unlock()
		return s
	}
	queuetest.Run(t, queuetest.Factory{
		Open: func(t *testing.T) queue.Store { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, s queue.Store) queue.Store {
			mu.Lock()
			dir := dirs[s]
			mu.Unlock()
			require.NoError(t, s.Close())
			return open(t, dir)
		},
		Corrupt: func(t *testing.T, s queue.Store, seq uint64) {
			corruptSeq(t, s.(*Store), seq)
		},
	})
}

// corruptSeq flips a byte of the stored message seq, wherever it is (q/, r/
// or d/), behind the store's back.
func corruptSeq(t *testing.T, s *Store, seq uint64) {
	t.Helper()
	var seqBytes [8]byte
	binary.BigEndian.PutUint64(seqBytes[:], seq)
	err := s.db.Update(func(txn *badger.Txn) error {
		var key []byte
		for _, k := range [][]byte{queueKey(seq), deadKey(seq)} {
			if _, err := txn.Get(k); err == nil {
				key = k
			}
		}
		if key == nil {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRetry})
			for it.Rewind(); it.Valid(); it.Next() {
				if k := it.Item().KeyCopy(nil); bytes.HasSuffix(k, seqBytes[:]) {
					key = k
				}
			}
			it.Close()
		}
		require.NotNil(t, key, "no message %d to damage", seq)
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)-10] ^= 0x01
		return txn.Set(key, v)
	})
	require.NoError(t, err)
}
