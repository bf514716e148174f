package pgstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

func schemaVersions(t *testing.T, db *DB) []int {
	t.Helper()
	rows, err := db.pool.Query(context.Background(), `SELECT version FROM webhook_schema ORDER BY version`)
	require.NoError(t, err)
	var out []int
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

func allVersions() []int {
	var out []int
	for v := 1; v <= SchemaVersion; v++ {
		out = append(out, v)
	}
	return out
}

// TestMigrateIdempotent: a second Open finds the schema up to date and
// changes nothing; the data of the first is still there.
func TestMigrateIdempotent(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDB(t, dsn)
	require.Equal(t, allVersions(), schemaVersions(t, db))
	s := openReceiver(t, db, "r")
	accept(t, s, "k")
	require.NoError(t, db.Close())

	core, logs := observer.New(zap.InfoLevel)
	db2 := openDB(t, dsn, func(o *Options) { o.Logger = zap.New(core) })
	require.Equal(t, allVersions(), schemaVersions(t, db2))
	require.Zero(t, logs.FilterMessage("migrated the schema").Len(), "nothing to migrate")
	s2 := openReceiver(t, db2, "r")
	require.EqualValues(t, 1, mustStats(t, s2).Queued)
}

// TestMigrateConcurrent: replicas starting together on an empty database:
// every Open succeeds and the schema is created once.
func TestMigrateConcurrent(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const n = 6
	errs := make([]error, n)
	dbs := make([]*DB, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dbs[i], errs[i] = Open(ctx, dsn, Options{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "open %d", i)
		t.Cleanup(func() { dbs[i].Close() })
	}
	require.Equal(t, allVersions(), schemaVersions(t, dbs[0]))
	// and they work together
	a, b := openReceiver(t, dbs[0], "r"), openReceiver(t, dbs[n-1], "r")
	seq := accept(t, a, "k")
	got, dup := acceptDup(t, b, "k")
	require.True(t, dup)
	require.Equal(t, seq, got)
}

// TestMigrateUpgrade: a database at an older version is migrated to the
// current one on Open, keeping its data.
func TestMigrateUpgrade(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDB(t, dsn)
	s := openReceiver(t, db, "r")
	accept(t, s, "k")
	// back to version 1, as an older build left it
	_, err := db.pool.Exec(context.Background(), `DELETE FROM webhook_schema WHERE version > 1;
ALTER TABLE webhook_receivers DROP COLUMN rate_tat`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	core, logs := observer.New(zap.InfoLevel)
	db2 := openDB(t, dsn, func(o *Options) { o.Logger = zap.New(core) })
	require.Equal(t, allVersions(), schemaVersions(t, db2))
	entries := logs.FilterMessage("migrated the schema").All()
	require.Len(t, entries, 1)
	require.EqualValues(t, 1, entries[0].ContextMap()["from_version"])
	var n int
	require.NoError(t, db2.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.columns WHERE table_name = 'webhook_receivers' AND column_name = 'rate_tat'`).Scan(&n))
	require.Equal(t, 1, n, "migration 2 ran")
	require.EqualValues(t, 1, mustStats(t, openReceiver(t, db2, "r")).Queued, "data kept")
}

// TestMigrateTooNew: a database migrated by a newer build is refused, not
// altered.
func TestMigrateTooNew(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	db := openDB(t, dsn)
	_, err := db.pool.Exec(context.Background(), `INSERT INTO webhook_schema (version) VALUES ($1)`, SchemaVersion+1)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = Open(ctx, dsn, Options{})
	require.ErrorIs(t, err, errSchemaTooNew)
	require.ErrorContains(t, err, "downgrade")
	require.False(t, IsOutage(err), "waiting does not fix it")
}
