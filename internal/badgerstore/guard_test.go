package badgerstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// openTest opens a store in dir for a test and closes it at the end.
func openTest(t *testing.T, dir string, cfg Config) (*DB, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	db, err := Open(dir, testOptions(), zap.New(core), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, logs
}

// writeKeys commits keys [from, to) with their test values.
func writeKeys(t *testing.T, db *DB, from, to int) {
	t.Helper()
	for i := from; i < to; i += 20 {
		require.NoError(t, db.Update(func(txn *badger.Txn) error {
			for j := i; j < min(i+20, to); j++ {
				if err := txn.Set(testKey(j), testValue(j)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// tickClock makes the package clock move 1 s per call, so that the
// free-space check never answers from its cache.
func tickClock(t *testing.T) {
	t.Helper()
	var at time.Time
	old := now
	now = func() time.Time { at = at.Add(time.Second); return at }
	t.Cleanup(func() { now = old })
}

// TestCheckDirectoryGone: once the storage directory is deleted, moved away
// or replaced, every write is refused with ErrDirGone (Badger would go on
// writing into unlinked files), logged once at error level, and Close
// returns without flushing (Badger would retry its flush forever).
func TestCheckDirectoryGone(t *testing.T) {
	for _, c := range []struct {
		name string
		do   func(t *testing.T, dir string)
	}{
		{"deleted", func(t *testing.T, dir string) { require.NoError(t, os.RemoveAll(dir)) }},
		{"moved away", func(t *testing.T, dir string) { require.NoError(t, os.Rename(dir, dir+".old")) }},
		{"replaced", func(t *testing.T, dir string) {
			require.NoError(t, os.Rename(dir, dir+".old"))
			require.NoError(t, os.Mkdir(dir, 0o700))
		}},
		{"deleted and recreated", func(t *testing.T, dir string) {
			require.NoError(t, os.RemoveAll(dir))
			require.NoError(t, os.Mkdir(dir, 0o700))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			db, logs := openTest(t, dir, Config{MinFreeSpace: 1 << 20})
			writeKeys(t, db, 0, 500) // a memtable Close would have to flush
			addErr, allErr := db.Check()
			require.NoError(t, addErr)
			require.NoError(t, allErr)

			c.do(t, dir)
			for range 3 {
				addErr, allErr = db.Check()
				assert.ErrorIs(t, addErr, ErrDirGone)
				assert.ErrorIs(t, allErr, ErrDirGone)
				assert.Contains(t, allErr.Error(), dir)
			}
			gone := logs.FilterMessageSnippet("storage directory gone").All()
			require.Len(t, gone, 1, "logged once")
			assert.Equal(t, zapcore.ErrorLevel, gone[0].Level)
			assert.Error(t, db.RunValueLogGC(0.5), "GC is a write")

			closed := make(chan error, 1)
			go func() { closed <- db.Close() }()
			select {
			case err := <-closed:
				assert.ErrorIs(t, err, ErrDirGone, "Close says why it left Badger open")
			case <-time.After(time.Minute):
				t.Fatal("Close hung on a deleted directory")
			}
			_, allErr = db.Check()
			assert.ErrorIs(t, allErr, ErrClosed)
		})
	}
}

// TestCheckIntact: nothing is refused while the directory is in place and
// space is plentiful, and a chmod does not count as gone.
func TestCheckIntact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, logs := openTest(t, dir, Config{MinFreeSpace: 1 << 20})
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	for range 3 {
		addErr, allErr := db.Check()
		assert.NoError(t, addErr)
		assert.NoError(t, allErr)
	}
	assert.Empty(t, logs.FilterLevelExact(zapcore.ErrorLevel).All())
	require.NoError(t, os.Chmod(dir, 0o700))
	require.NoError(t, db.Close())
	_, allErr := db.Check()
	assert.ErrorIs(t, allErr, ErrClosed)
}

// TestOpenErrorsNameTheDirectory: Open's own refusals.
func TestOpenErrorsNameTheDirectory(t *testing.T) {
	_, err := Open("", testOptions(), nil, Config{})
	assert.Error(t, err)

	// A second open of an open store is refused before it looks at (let
	// alone repairs) the other's files: an empty .mem of a live store is
	// one being created.
	dir := filepath.Join(t.TempDir(), "db")
	db, _ := openTest(t, dir, Config{})
	creating := filepath.Join(dir, "00099.mem")
	require.NoError(t, os.WriteFile(creating, nil, 0o644))
	_, err = Open(dir, testOptions(), nil, Config{})
	require.Error(t, err, "a second open of the same directory")
	assert.Contains(t, err.Error(), "opening store at "+dir)
	assert.FileExists(t, creating, "the open store's files were left alone")
	require.NoError(t, os.Remove(creating))
	require.NoError(t, db.Close())

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = Open(file, testOptions(), nil, Config{})
	require.Error(t, err, "not a directory")
	assert.Contains(t, err.Error(), file)
}

// BenchmarkCheck: the guard's cost per write batch (two stat calls, a
// statfs every 10 ms while space is plentiful).
func BenchmarkCheck(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "db"), testOptions(), zap.NewNop(), Config{MinFreeSpace: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for b.Loop() {
		if _, allErr := db.Check(); allErr != nil {
			b.Fatal(allErr)
		}
	}
}
