package badgerstore

import (
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Badger memory-maps its WAL, value-log and table files, created sparse: on a
// full filesystem, writing to such a mapping raises SIGBUS and the process
// dies (verified on tmpfs) instead of returning an error. So the writers keep
// room free: the space the tables of every open store on the filesystem take
// (a compaction writes the tables it makes before it deletes the ones it
// merged, so it can need up to that much, and the stores under one data
// directory compact independently) plus a reserve. Below the room plus
// Config.MinFreeSpace, Check refuses writes that add data; below the room
// plus half the reserve every write, so that deletions can still drain a
// queue in between. The check is a statfs, at most every 10 ms while space
// is plentiful and before every batch when it is not, and a look at
// Badger's levels at most every 10 ms. Open refuses only below half the
// reserve: a store that opened yesterday must not stop Caddy today because
// it has grown; it opens, warns and refuses what would make it grow. None
// of this protects against another process taking the room while a
// compaction runs; Close has the ballast for its own flush (see close.go).

const freeSpaceCheckEvery = 10 * time.Millisecond

// freeSpace is the reserve check; the caller serialises calls.
type freeSpace struct {
	dir     string
	min     int64        // <= 0: not enforced
	dev     uint64       // the filesystem, for rooms
	tables  func() int64 // the store's table bytes; nil (while opening): no room
	last    int64
	checked time.Time
	room    int64 // the filesystem's stores' table bytes
	roomAt  time.Time
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
	}
	if f.tables != nil && t.Sub(f.roomAt) >= freeSpaceCheckEvery {
		f.room, f.roomAt = rooms.set(f, f.tables()), t
	}
	if f.last < 0 || f.last >= f.min+f.room {
		return nil, nil
	}
	err := fmt.Errorf("%w: free disk space in %s is %d bytes, below the %d reserve plus %d bytes of room to compact the tables of the stores on that filesystem",
		ErrNoSpace, f.dir, f.last, f.min, f.room)
	if f.last < f.min/2+f.room {
		return err, err
	}
	return err, nil
}

// forget takes the store's tables out of its filesystem's room (Close).
func (f *freeSpace) forget() { rooms.remove(f) }

// rooms holds the table bytes of every open store, by filesystem.
var rooms = roomTable{by: map[uint64]map[*freeSpace]int64{}}

type roomTable struct {
	mu sync.Mutex
	by map[uint64]map[*freeSpace]int64
}

// set records f's table bytes and returns the room of f's filesystem.
func (r *roomTable) set(f *freeSpace, tables int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.by[f.dev]
	if m == nil {
		m = map[*freeSpace]int64{}
		r.by[f.dev] = m
	}
	m[f] = tables
	var sum int64
	for _, n := range m {
		sum += n
	}
	return sum
}

func (r *roomTable) remove(f *freeSpace) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.by[f.dev]; m != nil {
		delete(m, f)
		if len(m) == 0 {
			delete(r.by, f.dev)
		}
	}
}

// tablesInLevels is the size of the open store's tables.
func tablesInLevels(db *badger.DB) int64 {
	var n int64
	for _, l := range db.Levels() {
		n += l.Size
	}
	return n
}
