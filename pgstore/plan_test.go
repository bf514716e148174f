package pgstore

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

// TestPlansWithStaleStatistics: a queue table's statistics say it is nearly
// empty (analyzed while the queue was) while it holds a backlog of thousands
// (what a queue table lives through all the time, until the next
// autoanalyze): every hot statement still finds its rows through an index
// and reads a few pages, instead of reading (and sorting, or joining) the
// whole backlog. Without Open's planner settings and the statements'
// index-only shapes, Lease read the whole backlog (30-50 ms per call).
func TestPlansWithStaleStatistics(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t))
	s := openReceiver(t, db, "r")
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 600 {
				m := testMsg(fmt.Sprint(g, "/", i))
				if g == 0 {
					m.Lane = fmt.Sprint("lane-", i%10)
				}
				if _, _, err := s.Accept(ctx, m, time.Hour); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// half delivered (dead index entries at the head of the queue), some
	// dead letters, 200 leased
	for n := 0; n < 5000; {
		ms, err := s.Lease(ctx, 500, time.Hour)
		require.NoError(t, err)
		for i, m := range ms {
			o := queue.Outcome{Verdict: queue.Delivered, Attempts: 1}
			if i%50 == 0 {
				o.Verdict = queue.Dead
			}
			require.NoError(t, s.Settle(ctx, m, o))
		}
		n += len(ms)
	}
	leased, err := s.Lease(ctx, 200, time.Hour)
	require.NoError(t, err)
	var laned *queue.Message
	var seqs, tokens []int64
	for _, m := range leased {
		if m.Lane != "" && laned == nil {
			laned = m
		}
		seqs, tokens = append(seqs, int64(m.Seq)), append(tokens, int64(m.Lease))
	}
	require.NotNil(t, laned)

	seqs, tokens = seqs[:16], tokens[:16] // a batch's worth
	rids := make([]int32, len(seqs))
	for i := range rids {
		rids[i] = s.id
	}
	sel := append([]any{s.id}, filterArgs(queue.Selector{All: true})...)
	var oldestDead, newestDead int64
	require.NoError(t, db.pool.QueryRow(ctx, `SELECT min(seq), max(seq) FROM webhook_messages WHERE state = 2`).
		Scan(&oldestDead, &newestDead))
	one := append([]any{s.id}, filterArgs(queue.Selector{Seqs: []uint64{uint64(newestDead)}})...)
	tests := []planCase{
		{"lease", sqlLease, []any{s.id, time.Now(), 16, int64(1), int64(time.Minute / time.Microsecond)}, true, false},
		{"settle a lane's head", sqlSettleDone, []any{s.id, int64(laned.Seq), int64(laned.Lease), false, time.Now(), 1, 200, []byte{}, false}, false, false},
		{"delivered in bulk", sqlDeliveredBulk, []any{rids, seqs, tokens}, true, false},
		{"release", sqlRelease, []any{s.id, seqs, tokens}, true, false},
		{"retry", sqlSettleRetry, []any{s.id, seqs[0], tokens[0], time.Now(), 1, 500, []byte{}}, false, false},
		{"accept into a lane", sqlAcceptKeyed, []any{s.id, []byte("new"), nil, time.Now(), []byte("lane-3"), time.Now(), []byte("e"), []byte{1, 0, 0, 0}, []byte{}, int32(0), []byte("e")}, false, false},
		{"next due", sqlNextDue, []any{s.id}, false, false},
		{"dead letters", sqlDeadLetters, []any{s.id, int64(math.MaxInt64), 50}, false, true},
		{"dead letters, the last page", sqlDeadLetters, []any{s.id, oldestDead + 1, 50}, false, true},
		{"replay page", sqlReplaySelect, slices.Concat(sel, []any{int64(0), 16}), false, true},
		{"replay one", sqlReplaySelect, slices.Concat(one, []any{int64(0), 16}), false, true},
		{"purge page", sqlPurge, slices.Concat(sel, []any{int64(0), 16}), true, true},
		{"purge one", sqlPurge, slices.Concat(one, []any{int64(0), 16}), true, true},
		{"dead letter", sqlDeadLetter, []any{s.id, seqs[0]}, false, false},
		{"sweep keys", sqlSweepKeys, []any{time.Now().Add(2 * time.Hour), 100}, true, false},
	}
	for _, stale := range []struct{ name, sql string }{
		{"analyzed when it held one row", `UPDATE pg_class SET reltuples = 1, relpages = 1
WHERE relname LIKE 'webhook_messages%' OR relname LIKE 'webhook_keys%'`},
		{"analyzed when it held ten rows on its pages", `UPDATE pg_class SET reltuples = 10
WHERE relname LIKE 'webhook_messages%' OR relname LIKE 'webhook_keys%'`},
	} {
		t.Run(stale.name, func(t *testing.T) {
			_, err = db.pool.Exec(ctx, "ANALYZE webhook_messages; ANALYZE webhook_keys; "+stale.sql)
			require.NoError(t, err)
			checkPlans(t, db, s, tests)
		})
	}
}

type planCase struct {
	name string
	sql  string
	args []any
	tid  bool // changes the rows it found by ctid
	// exact: its index scan reads only the rows it wants (none removed by
	// a filter)
	exact bool
}

func checkPlans(t *testing.T, db *DB, s *Store, tests []planCase) {
	t.Run("stats", func(t *testing.T) {
		// reads every message of the receiver (through the partial indexes),
		// never another receiver's
		p := explain(t, db, sqlStats, s.id)
		require.NotContains(t, p, "Seq Scan on webhook_messages", p)
		require.NotContains(t, p, "Bitmap Heap Scan on webhook_messages", p)
	})
	hits := regexp.MustCompile(`Buffers: shared hit=(\d+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := explain(t, db, tt.sql, tt.args...)
			require.NotRegexp(t, "Seq Scan on webhook_(messages|keys)", p)
			require.NotRegexp(t, "Bitmap Heap Scan on webhook_(messages|keys)", p)
			require.NotContains(t, p, "Rows Removed by Join Filter", p)
			if tt.exact {
				require.NotContains(t, p, "Rows Removed by Filter", p)
			}
			if tt.tid {
				require.Regexp(t, "Tid Scan on webhook_(messages m|keys)", p)
			}
			m := hits.FindStringSubmatch(p)
			require.NotNil(t, m, p)
			n, _ := strconv.Atoi(m[1])
			require.Less(t, n, 500, "pages read, of a table of %d\n%s", tableBlocks(t, db), p)
		})
	}
}

// explain runs sql under EXPLAIN ANALYZE with the plan a cached statement
// uses after its first executions (generic), and rolls it back.
func explain(t *testing.T, db *DB, sql string, args ...any) string {
	t.Helper()
	ctx := testCtx(t)
	conn, err := db.pool.Acquire(ctx)
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() {
		// PREPARE outlives the transaction
		tx.Rollback(context.Background())
		conn.Exec(context.Background(), "DEALLOCATE explained")
		conn.Release()
	}()
	_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	// EXPLAIN of the statement itself would plan it for these values; the
	// generic plan is that of a prepared statement's EXECUTE. Its arguments
	// go as literals (simple protocol), typed by the prepared statement.
	_, err = tx.Exec(ctx, "PREPARE explained AS "+sql)
	require.NoError(t, err)
	params := make([]string, len(args))
	for i := range args {
		params[i] = fmt.Sprint("$", i+1)
	}
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE explained("+strings.Join(params, ", ")+")",
		append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	require.NoError(t, err)
	var plan strings.Builder
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan.WriteString(line + "\n")
	}
	require.NoError(t, rows.Err())
	return plan.String()
}

func tableBlocks(t *testing.T, db *DB) int64 {
	var n int64
	require.NoError(t, db.pool.QueryRow(testCtx(t), `SELECT pg_relation_size('webhook_messages') / 8192`).Scan(&n))
	return n
}
