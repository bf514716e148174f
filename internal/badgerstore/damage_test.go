package badgerstore

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fixture: keys 0–7999 written and the store closed (tables in L0 and
// L1, two value logs), then keys 8000–8999 written by a process that exits
// without closing (they live in the memtable's write-ahead log and in the
// last value log). Every 50th value is 48 KiB and goes to a value log.
const (
	fixtureClosed = 8000
	fixtureAll    = 9000
)

var fixture struct {
	once sync.Once
	dir  string
	err  error
}

// fixtureCopy returns a fresh copy of the fixture store.
func fixtureCopy(t *testing.T) string {
	t.Helper()
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "badgerstore-fixture-")
		if fixture.err != nil {
			return
		}
		dir := filepath.Join(fixture.dir, "db")
		runWrite(t, dir, 0, fixtureClosed, true)
		runWrite(t, dir, fixtureClosed, fixtureAll, false)
	})
	require.NoError(t, fixture.err)
	dst := filepath.Join(t.TempDir(), "db")
	require.NoError(t, os.CopyFS(dst, os.DirFS(filepath.Join(fixture.dir, "db"))))
	return dst
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------- damage

// files returns the paths in dir matching pattern, sorted.
func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	require.NoError(t, err)
	sort.Strings(m)
	return m
}

// biggest returns the largest file matching pattern.
func biggest(t *testing.T, dir, pattern string) string {
	t.Helper()
	var best string
	var size int64 = -1
	for _, f := range files(t, dir, pattern) {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	require.NotEmpty(t, best, "no %s in %s", pattern, dir)
	return best
}

// used returns the offset just past the last non-zero byte of path.
func used(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}

// flip inverts one bit of path at off (negative: from the end).
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	if off < 0 {
		fi, err := f.Stat()
		require.NoError(t, err)
		off += fi.Size()
	}
	var b [1]byte
	_, err = f.ReadAt(b[:], off)
	require.NoError(t, err)
	b[0] ^= 0x10
	_, err = f.WriteAt(b[:], off)
	require.NoError(t, err)
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	require.NoError(t, os.Truncate(path, size))
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

// appendAt writes b into path at off.
func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// outcome is what a damaged store must come to.
type outcome int

const (
	// refused: Open fails with ErrDamaged, naming the directory and the file.
	refused outcome = iota
	// logged: Open succeeds, reports the damage (Recovered) and logs it at
	// error level naming the file; every key stored before the damaged log
	// (the closed part of the fixture) is intact.
	logged
	// recovered: Open succeeds and every key is there, intact.
	recovered
)

func (o outcome) String() string { return [...]string{"refused", "logged", "recovered"}[o] }

type damageCase struct {
	name   string
	damage func(t *testing.T, dir string) (file string)
	want   outcome
}

var damageCases = []damageCase{
	{"sst truncated to half", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		truncate(t, f, size(t, f)/2)
		return f
	}, refused},
	{"sst truncated by 3 bytes", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		truncate(t, f, size(t, f)-3)
		return f
	}, refused},
	{"sst empty", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		truncate(t, f, 0)
		return f
	}, refused},
	{"sst bit flipped in a block", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		flip(t, f, size(t, f)/3)
		return f
	}, refused},
	{"sst bit flipped in a block trailer", func(t *testing.T, dir string) string {
		// the first block's entry count and checksum sit just before 4 KiB
		f := biggest(t, dir, "*.sst")
		flip(t, f, 4096-30)
		return f
	}, refused},
	{"sst bit flipped in the index", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		flip(t, f, -40)
		return f
	}, refused},
	{"sst bit flipped in the footer", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		flip(t, f, -2)
		return f
	}, refused},
	{"sst listed in the MANIFEST missing", func(t *testing.T, dir string) string {
		f := biggest(t, dir, "*.sst")
		require.NoError(t, os.Remove(f))
		return f
	}, refused},
	{"MANIFEST missing", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "MANIFEST")
		require.NoError(t, os.Remove(f))
		return f
	}, refused},
	{"MANIFEST bit flipped", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "MANIFEST")
		flip(t, f, -5)
		return f
	}, refused},
	{"MANIFEST truncated in its last change", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "MANIFEST")
		truncate(t, f, size(t, f)-3)
		return f
	}, refused},
	{"mem bit flipped mid-log", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.mem")[0]
		flip(t, f, used(t, f)/2)
		return f
	}, logged},
	{"mem truncated mid-log", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.mem")[0]
		truncate(t, f, used(t, f)/2)
		return f
	}, logged},
	{"mem cut shorter than its header", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.mem")[0]
		truncate(t, f, 10)
		return f
	}, logged},
	{"mem length varint overflowing", func(t *testing.T, dir string) string {
		// Badger itself refuses to open a log whose header varint
		// overflows ("while iterating wal").
		f := files(t, dir, "*.mem")[0]
		writeAt(t, f, 20+2, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		return f
	}, logged},
	{"mem header key id", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.mem")[0]
		flip(t, f, 3)
		return f
	}, refused},
	{"mem empty (kill -9 after creating it)", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.mem")[0]
		next := filepath.Join(dir, "00002.mem")
		require.NoError(t, os.WriteFile(next, nil, 0o600))
		return f
	}, recovered},
	{"mem zeroed after its header (kill -9 before the header was written)", func(t *testing.T, dir string) string {
		next := filepath.Join(dir, "00002.mem")
		require.NoError(t, os.WriteFile(next, make([]byte, 2<<20), 0o600))
		return next
	}, recovered},
	{"mem torn last entry (kill -9 mid-write)", func(t *testing.T, dir string) string {
		// the header and part of the key of an entry, where the next one goes
		f := files(t, dir, "*.mem")[0]
		writeAt(t, f, logEnd(t, f), []byte{0x40, 0x00, 0x10, 0x82, 0x05, 0x00, 'k', 'e', 'y'})
		return f
	}, recovered},
	{"mem torn last entry, head not yet written (kill -9 mid-memmove)", func(t *testing.T, dir string) string {
		// Go's AVX memmove stores the first 32 bytes of a copy last: seen
		// after a kill -9, an entry's bytes from the first 32-byte boundary
		// on, its header still zero
		f := files(t, dir, "*.mem")[0]
		end := logEnd(t, f)
		entry := firstTxn(t, f)[:200]
		skip := 32 - int(end%32)
		writeAt(t, f, end+int64(skip), entry[skip:skip+64])
		return f
	}, recovered},
	{"mem unfinished transaction (kill -9 mid-commit)", func(t *testing.T, dir string) string {
		// a copy of the log's first transaction minus its fin entry
		f := files(t, dir, "*.mem")[0]
		first := firstTxn(t, f)
		writeAt(t, f, logEnd(t, f), first)
		return f
	}, recovered},
	{"vlog empty (kill -9 after creating it)", func(t *testing.T, dir string) string {
		next := filepath.Join(dir, "000004.vlog")
		require.NoError(t, os.WriteFile(next, nil, 0o600))
		return next
	}, recovered},
	{"last vlog bit flipped", func(t *testing.T, dir string) string {
		v := files(t, dir, "*.vlog")
		f := v[len(v)-1]
		flip(t, f, used(t, f)/2)
		return f
	}, logged},
	{"older vlog bit flipped", func(t *testing.T, dir string) string {
		f := files(t, dir, "*.vlog")[0]
		flip(t, f, used(t, f)/2)
		return f
	}, logged},
	{"DISCARD bit flipped", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "DISCARD")
		flip(t, f, 9)
		return f
	}, recovered},
	{"DISCARD empty", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "DISCARD")
		truncate(t, f, 0)
		return f
	}, recovered},
	{"KEYREGISTRY missing", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "KEYREGISTRY")
		require.NoError(t, os.Remove(f))
		return f
	}, recovered},
	{"KEYREGISTRY bit flipped", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "KEYREGISTRY")
		flip(t, f, -2)
		return f
	}, recovered},
	{"BALLAST missing", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, BallastFile)
		require.NoError(t, os.Remove(f))
		return f
	}, recovered},
}

// TestDamagedStores opens the fixture damaged in each way, in a child
// process: it must be refused with an error naming the directory and file,
// or open with the damage logged at error level, or recover every key —
// never crash, hang or silently drop data.
func TestDamagedStores(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	for _, c := range damageCases {
		t.Run(c.name, func(t *testing.T) {
			dir := fixtureCopy(t)
			file := c.damage(t, dir)
			res, crashed := runOpen(t, dir)
			require.Empty(t, crashed, "the child did not come back with a result")
			checkOutcome(t, c.want, dir, file, res)
		})
	}
}

func checkOutcome(t *testing.T, want outcome, dir, file string, res childResult) {
	t.Helper()
	t.Logf("result: %+v", res)
	switch want {
	case refused:
		require.NotEmpty(t, res.OpenErr, "want Open to refuse the store; it opened with keys %s", res.Ranges)
		assert.True(t, res.IsDamaged, "error wraps ErrDamaged: %s", res.OpenErr)
		assert.Contains(t, res.OpenErr, dir, "error names the directory")
		assert.Contains(t, res.OpenErr, filepath.Base(file), "error names the file")
	case logged:
		require.Empty(t, res.OpenErr)
		assert.True(t, res.Lost, "Recovered reports the loss")
		require.NotEmpty(t, res.ErrorLogs, "the damage is logged at error level")
		assert.Contains(t, strings.Join(res.ErrorLogs, "\n"), filepath.Base(file), "the error log names the file")
		assert.Zero(t, res.BadValues, "no value is returned altered")
		present := presentSet(t, res.Ranges)
		for i := range fixtureClosed {
			if !present[i] && i%50 != 49 {
				t.Errorf("key %d (stored before the damaged log) is missing", i)
				break
			}
		}
	case recovered:
		require.Empty(t, res.OpenErr)
		assert.Empty(t, res.ErrorLogs)
		assert.False(t, res.Lost)
		assert.Equal(t, "0-"+strconv.Itoa(fixtureAll-1), res.Ranges, "every key")
		assert.Zero(t, res.BadValues+res.ReadErrors)
	}
	assert.Empty(t, res.ScanErr)
	assert.Empty(t, res.CloseErr)
}

// presentSet parses childResult.Ranges.
func presentSet(t *testing.T, r string) map[int]bool {
	t.Helper()
	m := map[int]bool{}
	if r == "" {
		return m
	}
	for _, part := range strings.Split(r, ",") {
		a, b, ok := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		require.NoError(t, err)
		hi := lo
		if ok {
			hi, err = strconv.Atoi(b)
			require.NoError(t, err)
		}
		for i := lo; i <= hi; i++ {
			m[i] = true
		}
	}
	return m
}

// logEnd is where Badger will cut the log in path (and append to it).
func logEnd(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	end, bad, _, err := scanLog(f, size(t, path), strings.HasSuffix(path, ".mem"))
	require.NoError(t, err)
	require.False(t, bad)
	return end
}

// firstTxn returns the bytes of the first transaction's entries in the
// write-ahead log at path, without its fin entry.
func firstTxn(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	lr := newLogReader(f, size(t, path), logHeaderSize)
	for {
		e, err := lr.next()
		require.NoError(t, err)
		if e.meta&bitFinTxn != 0 {
			b := make([]byte, e.off-logHeaderSize)
			_, err := f.ReadAt(b, logHeaderSize)
			require.NoError(t, err)
			return b
		}
	}
}
