package badgerstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// mountTmpfs mounts a tmpfs of size bytes (root only; skipped otherwise, but
// not with CI=true, where a skipped disk-full test would hide a gap).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	require.NoError(t, os.Mkdir(dir, 0o700))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but a tmpfs cannot be mounted: %v", err)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillTo makes the free space of dir's filesystem about free bytes, with a
// filler file in parent (resized on each call).
func fillTo(t *testing.T, dir string, free int64) {
	t.Helper()
	filler := filepath.Join(filepath.Dir(dir), "filler")
	now := freeBytes(dir)
	cur := int64(0)
	if fi, err := os.Stat(filler); err == nil {
		cur = fi.Size()
	}
	want := max(cur+now-free, 0)
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(0))
	if want > 0 {
		require.NoError(t, syscall.Fallocate(int(f.Fd()), 0, 0, want))
	}
}

// fillUp fills dir's filesystem to the last byte.
func fillUp(dir string) error {
	f, err := os.OpenFile(filepath.Join(filepath.Dir(dir), "filler-full"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return err
			}
		}
	}
	return nil
}

// TestCheckFreeSpace: the reserve, on a real filesystem: below half of it
// Open refuses; between half and all of it only writes that add data are
// refused; above it nothing is.
func TestCheckFreeSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	tickClock(t)
	fs := mountTmpfs(t, 64<<20)
	dir := filepath.Join(fs, "db")
	const reserve = 16 << 20
	db, _ := openTest(t, dir, Config{MinFreeSpace: reserve})
	writeKeys(t, db, 0, 200)
	for _, c := range []struct {
		name        string
		free        int64
		refuseAdd   bool
		refuseAll   bool
		openRefused bool
	}{
		{"plenty", 40 << 20, false, false, false},
		{"just above the reserve", reserve + 1<<20, false, false, false},
		{"below the reserve", reserve - 1<<20, true, false, false},
		{"just above half the reserve", reserve/2 + 1<<20, true, false, false},
		{"below half the reserve", reserve/2 - 1<<20, true, true, true},
		{"none", 0, true, true, true},
		{"plenty again", 40 << 20, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fillTo(t, dir, c.free)
			addErr, allErr := db.Check()
			if c.refuseAdd {
				assert.ErrorIs(t, addErr, ErrNoSpace)
				assert.Contains(t, addErr.Error(), dir)
			} else {
				assert.NoError(t, addErr)
			}
			if c.refuseAll {
				assert.ErrorIs(t, allErr, ErrNoSpace)
			} else {
				assert.NoError(t, allErr)
			}
			if c.refuseAdd {
				assert.ErrorIs(t, db.RunValueLogGC(0.5), ErrNoSpace, "GC adds data")
			}
			// A second store on the same filesystem, opened now.
			other, err := Open(filepath.Join(fs, "other"), testOptions(), zap.NewNop(), Config{MinFreeSpace: reserve, Ballast: -1})
			if c.openRefused {
				assert.ErrorIs(t, err, ErrNoSpace)
				assert.ErrorContains(t, err, filepath.Join(fs, "other"))
			} else if assert.NoError(t, err) {
				require.NoError(t, other.Close())
			}
		})
	}
}

// TestReserveKeepsRoomToCompact: a compaction writes the tables it makes
// before it deletes those it merged, through memory maps (a full disk is a
// SIGBUS), so the store keeps as much free as its tables take on top of the
// reserve: below that room plus the reserve writes that add data are
// refused, below the room plus half the reserve every write and, for a
// store opened then, the open.
func TestReserveKeepsRoomToCompact(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	tickClock(t)
	fs := mountTmpfs(t, 64<<20)
	dir := filepath.Join(fs, "db")
	const reserve = 8 << 20
	db, _ := openTest(t, dir, Config{MinFreeSpace: reserve, Ballast: -1})
	// 8 MiB that do not compress (Badger compresses its tables), below the
	// value threshold: in the tables.
	for i := 0; i < 8000; i += 100 {
		require.NoError(t, db.Update(func(txn *badger.Txn) error {
			for j := i; j < i+100; j++ {
				v := make([]byte, 1<<10)
				_, _ = rand.Read(v)
				if err := txn.Set(testKey(j), v); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, db.Flatten(1))
	room := tablesInLevels(db.DB)
	require.Greater(t, room, int64(4<<20), "the test needs tables of several MiB")

	for _, c := range []struct {
		name      string
		free      int64
		refuseAdd bool
		refuseAll bool
	}{
		{"room and reserve", room + reserve + 1<<20, false, false},
		{"the reserve but not the room", reserve + room/2, true, false},
		{"the room and half the reserve", room + reserve/2 + 1<<20, true, false},
		{"the room but not half the reserve", room + reserve/2 - 1<<20, true, true},
		{"room and reserve again", room + reserve + 1<<20, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fillTo(t, dir, c.free)
			addErr, allErr := db.Check()
			if c.refuseAdd {
				assert.ErrorIs(t, addErr, ErrNoSpace)
				assert.ErrorContains(t, addErr, "tables")
			} else {
				assert.NoError(t, addErr)
			}
			if c.refuseAll {
				assert.ErrorIs(t, allErr, ErrNoSpace)
			} else {
				assert.NoError(t, allErr)
			}
		})
	}

	// Another store on the same filesystem keeps the first one's room too
	// (both compact independently); closed, the first one's room is gone.
	fillTo(t, dir, reserve+room/2)
	other, logs := openTest(t, filepath.Join(fs, "other"), Config{MinFreeSpace: reserve, Ballast: -1})
	assert.Len(t, logs.FilterMessageSnippet("writes that add data are refused").All(), 1, "opened, with a warning")
	addErr, _ := other.Check()
	assert.ErrorIs(t, addErr, ErrNoSpace, "the other store's tables are room this one keeps")
	require.NoError(t, db.Close())
	addErr, allErr := other.Check()
	assert.NoError(t, addErr, "closed, the first store needs no room")
	assert.NoError(t, allErr)

	// A store that has grown past what the disk leaves it still opens (it
	// must not stop Caddy), and refuses what would make it grow.
	require.NoError(t, other.Close())
	fillTo(t, dir, room+reserve/2+5<<19) // 2.5 MiB above half the reserve, Badger's new logs take some
	db, logs = openTest(t, dir, Config{MinFreeSpace: reserve})
	assert.Len(t, logs.FilterMessageSnippet("writes that add data are refused").All(), 1)
	assert.Zero(t, allocated(filepath.Join(dir, BallastFile)), "no ballast out of the room")
	addErr, allErr = db.Check()
	assert.ErrorIs(t, addErr, ErrNoSpace)
	assert.NoError(t, allErr, "above half the reserve beyond the room: deletions still drain it")
}

// TestBallast: Open allocates the ballast, (NumMemtables+1) × MemTableSize
// by default, unless that would take the free space below the reserve.
func TestBallast(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	fs := mountTmpfs(t, 64<<20)
	opts := testOptions()
	want := int64(opts.NumMemtables+1) * opts.MemTableSize

	dir := filepath.Join(fs, "db")
	db, _ := openTest(t, dir, Config{MinFreeSpace: 8 << 20})
	assert.Equal(t, want, allocated(filepath.Join(dir, BallastFile)), "allocated, not sparse")
	require.NoError(t, db.Close())

	db, _ = openTest(t, dir, Config{MinFreeSpace: 8 << 20, Ballast: 5 << 20})
	assert.Equal(t, int64(5<<20), allocated(filepath.Join(dir, BallastFile)), "grown to the configured size")
	require.NoError(t, db.Close())

	tight := filepath.Join(fs, "tight")
	require.NoError(t, os.Mkdir(tight, 0o700))
	fillTo(t, tight, 20<<20)
	db, logs := openTest(t, tight, Config{MinFreeSpace: 19 << 20})
	assert.Zero(t, allocated(filepath.Join(tight, BallastFile)), "no ballast that would eat into the reserve")
	assert.Len(t, logs.FilterMessageSnippet("no room for the ballast").All(), 1)
	require.NoError(t, db.Close())
}

// TestCloseOnFullDisk: a store whose memtable holds data is closed with its
// filesystem filled to the last byte, in a child process (Badger's flush
// through a memory mapping SIGBUSes there). With the ballast, Close frees it
// and flushes; without, it leaves Badger open (the logs hold every commit).
// Either way the child survives and, space back, every key is there.
func TestCloseOnFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs, child processes")
	}
	for _, c := range []struct {
		name    string
		ballast string
		want    string // in the child's Close result
	}{
		{"with the ballast", "0", "closed"},
		{"without a ballast", "-1", "not closed: " + ErrNoSpace.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := mountTmpfs(t, 48<<20)
			dir := filepath.Join(fs, "db")
			cmd := child("fullclose", dir, envFrom+"=0", envTo+"=1500", envBallast+"="+c.ballast)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "the child died closing on a full disk:\n%s", tail(out))
			assert.Contains(t, string(out), "free before close: 0")
			assert.Contains(t, string(out), c.want)

			require.NoError(t, os.Remove(filepath.Join(fs, "filler-full")))
			res, crashed := runOpen(t, dir)
			require.Empty(t, crashed)
			require.Empty(t, res.OpenErr)
			assert.Equal(t, "0-1499", res.Ranges, "every key written before the close")
			assert.Empty(t, res.Damaged)
		})
	}
}

const envBallast = "BADGERSTORE_BALLAST"

func init() { childModes["fullclose"] = childFullClose }

// childFullClose writes keys [from, to) (they stay in the memtable), fills
// the filesystem, closes the store and prints how that went.
func childFullClose(dir string) {
	var from, to int
	var ballast int64
	fmt.Sscan(os.Getenv(envFrom), &from)
	fmt.Sscan(os.Getenv(envTo), &to)
	fmt.Sscan(os.Getenv(envBallast), &ballast)
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stdout), zapcore.InfoLevel))
	db, err := Open(dir, testOptions(), logger, Config{MinFreeSpace: 1 << 20, Ballast: ballast, CloseTimeout: time.Minute})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	for i := from; i < to; i++ {
		if err := db.Update(func(txn *badger.Txn) error {
			return txn.Set(testKey(i), testValue(i))
		}); err != nil {
			fmt.Println("update:", err)
			os.Exit(3)
		}
	}
	if err := fillUp(dir); err != nil {
		fmt.Println("fill:", err)
		os.Exit(4)
	}
	fmt.Println("free before close:", freeBytes(dir))
	if err := db.Close(); err != nil {
		fmt.Println("close:", err)
		if errors.Is(err, ErrNoSpace) {
			fmt.Println("not closed: " + ErrNoSpace.Error())
		}
		return
	}
	fmt.Println("closed")
}
