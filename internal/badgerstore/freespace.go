package badgerstore

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Badger memory-maps its WAL, value-log and table files, created sparse: on a
// full filesystem, writing to such a mapping raises SIGBUS and the process
// dies (verified on tmpfs) instead of returning an error. So the writers keep
// room free: the space the store's tables take (a compaction writes the
// tables it makes before it deletes the ones it merged, so it can need up to
// that much) plus a reserve. Below the room plus Config.MinFreeSpace, Check
// refuses writes that add data; below the room plus half the reserve every
// write, so that deletions can still drain a queue in between. The check is
// a statfs and a look at Badger's levels, at most every 10 ms while space is
// plentiful and before every batch when it is not. It does not protect
// against another process taking the room while a compaction runs; Close
// has the ballast for its own flush (see close.go).

const freeSpaceCheckEvery = 10 * time.Millisecond

// freeSpace is the reserve check; the caller serialises calls.
type freeSpace struct {
	dir     string
	min     int64        // <= 0: not enforced
	tables  func() int64 // the store's table bytes; nil: 0
	last    int64
	room    int64 // tables(), read with last
	checked time.Time
}

// check returns the error for writes that add data and for all writes, if
// any; both wrap ErrNoSpace.
func (f *freeSpace) check() (addErr, allErr error) {
	if f.min <= 0 {
		return nil, nil
	}
	t := now()
	if f.last < 2*f.min+f.room || t.Sub(f.checked) >= freeSpaceCheckEvery {
		f.last, f.checked = freeBytes(f.dir), t
		if f.tables != nil {
			f.room = f.tables()
		}
	}
	if f.last < 0 || f.last >= f.min+f.room {
		return nil, nil
	}
	err := fmt.Errorf("%w: free disk space in %s is %d bytes, below the %d reserve", ErrNoSpace, f.dir, f.last, f.min)
	if f.room > 0 {
		err = fmt.Errorf("%w: free disk space in %s is %d bytes, below the %d reserve plus the %d bytes of the store's tables (room to compact them)",
			ErrNoSpace, f.dir, f.last, f.min, f.room)
	}
	if f.last < f.min/2+f.room {
		return err, err
	}
	return err, nil
}

// tablesOnDisk is the size of dir's table files, for the check before
// Badger opens the store (it may compact them as soon as it has).
func tablesOnDisk(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// tablesInLevels is the size of the open store's tables.
func tablesInLevels(db *badger.DB) int64 {
	var n int64
	for _, l := range db.Levels() {
		n += l.Size
	}
	return n
}
