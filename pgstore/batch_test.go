package pgstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestBatchMixed: concurrent accepts that the writers batch together — two
// receivers sharing keys, repeated keys, no keys, lanes — each get the
// right answer: per receiver and key exactly one is new and every one
// reports its seq; everything new is stored once.
func TestBatchMixed(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t), func(o *Options) { o.Writers = 1 })
	stores := []*Store{openReceiver(t, db, "a"), openReceiver(t, db, "b")}
	type result struct {
		store   int
		key     string
		lane    string
		seq     uint64
		dup     bool
		err     error
		unkeyed bool
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	ctx := testCtx(t)
	for g := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				r := result{store: (g + i) % 2, key: fmt.Sprint("k", i%7)}
				switch g % 4 {
				case 1:
					r.lane = fmt.Sprint("lane", i%3)
				case 2:
					r.key, r.unkeyed = "", true
				}
				m := testMsg(r.key)
				m.Lane = r.lane
				r.seq, r.dup, r.err = stores[r.store].Accept(ctx, m, time.Hour)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	fresh := map[string]uint64{} // store/key -> seq of the new one
	unkeyed := map[int]int{}
	for _, r := range results {
		require.NoError(t, r.err)
		if r.unkeyed {
			require.False(t, r.dup)
			unkeyed[r.store]++
			continue
		}
		id := fmt.Sprint(r.store, "/", r.key)
		if !r.dup {
			_, seen := fresh[id]
			require.False(t, seen, "%s: two accepts were new", id)
			fresh[id] = r.seq
		}
	}
	for _, r := range results {
		if !r.unkeyed {
			require.Equal(t, fresh[fmt.Sprint(r.store, "/", r.key)], r.seq, "every accept of a key reports its seq")
		}
	}
	require.Len(t, fresh, 14, "7 keys in each of 2 receivers")
	for i, s := range stores {
		st := mustStats(t, s)
		require.EqualValues(t, 7+unkeyed[i], st.Queued, "receiver %d stores each new message once", i)
	}
	require.Greater(t, db.accepts.Load()/max(1, db.commits.Load()), int64(1), "accepts were batched")
}
