package badgerstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVerifiedTablesRecord: a graceful close records the tables, and the
// next open verifies none of them; a table touched since (here only its
// times) is verified again, and a missing or garbled record makes every
// table verified.
func TestVerifiedTablesRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, _ := openTest(t, dir, Config{})
	writeKeys(t, db, 0, 6000) // several flushes: tables
	require.NoError(t, db.Close())
	ssts := files(t, dir, "*.sst")
	require.GreaterOrEqual(t, len(ssts), 2)
	assert.Len(t, readVerified(dir), len(ssts), "every table recorded at close")

	reopen := func() int64 {
		t.Helper()
		before := tablesVerified.Load()
		db, _ := openTest(t, dir, Config{})
		require.NoError(t, db.Close())
		return tablesVerified.Load() - before
	}
	assert.Zero(t, reopen(), "unchanged tables are not verified again")

	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(ssts[0], later, later))
	assert.EqualValues(t, 1, reopen(), "the touched table is verified")
	assert.Zero(t, reopen(), "and recorded again")

	require.NoError(t, os.WriteFile(filepath.Join(dir, VerifiedFile), []byte("garbage\n1 2 3 4 5\n"), 0o600))
	assert.EqualValues(t, len(ssts), reopen(), "a garbled record trusts nothing")
	require.NoError(t, os.Remove(filepath.Join(dir, VerifiedFile)))
	assert.EqualValues(t, len(ssts), reopen(), "nor does a missing one")
}
