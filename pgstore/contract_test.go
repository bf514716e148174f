package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/queue/queuetest"
)

// openDB opens a DB on dsn, closed at the end of t.
func openDB(t testing.TB, dsn string, mod ...func(*Options)) *DB {
	t.Helper()
	o := Options{Logger: zaptest.NewLogger(t), PollInterval: 500 * time.Millisecond}
	for _, f := range mod {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := Open(ctx, dsn, o)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func openReceiver(t testing.TB, db *DB, name string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := db.Receiver(ctx, name)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the queue contract suite. Every store is a receiver of
// its own DB (its own pool and listener, as another process would have) on
// one database; Replica opens another DB on the same receiver name.
func TestContract(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var (
		mu    sync.Mutex
		dbs   = map[*Store]*DB{}
		names atomic.Int64
	)
	open := func(t *testing.T, name string) *Store {
		db := openDB(t, dsn)
		s := openReceiver(t, db, name)
		mu.Lock()
		dbs[s] = db
		mu.Unlock()
		return s
	}
	queuetest.Run(t, queuetest.Factory{
		Open: func(t *testing.T) queue.Store {
			return open(t, fmt.Sprintf("receiver-%d", names.Add(1)))
		},
		Reopen: func(t *testing.T, s queue.Store) queue.Store {
			ps := s.(*Store)
			mu.Lock()
			db := dbs[ps]
			mu.Unlock()
			require.NoError(t, ps.Close())
			require.NoError(t, db.Close())
			return open(t, ps.Name())
		},
		Replica: func(t *testing.T, s queue.Store) queue.Store {
			return open(t, s.(*Store).Name())
		},
		Corrupt: func(t *testing.T, s queue.Store, seq uint64) {
			ps := s.(*Store)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tag, err := ps.db.pool.Exec(ctx, `UPDATE webhook_messages
SET body = CASE WHEN length(body) > 0 THEN set_byte(body, 0, get_byte(body, 0) # 1) ELSE body END,
	meta = CASE WHEN length(body) = 0 THEN meta || '\x00'::bytea ELSE meta END
WHERE receiver = $1 AND seq = $2`, ps.id, int64(seq))
			require.NoError(t, err)
			require.EqualValues(t, 1, tag.RowsAffected(), "no message %d to damage", seq)
		},
		TimePrecision: time.Millisecond,
	})
}
