package sender

import (
	"fmt"
	"time"
)

// DefaultMinFreeSpace is the default free-space reserve of the sender's
// store (Options.MinFreeSpace).
const DefaultMinFreeSpace = 128 << 20

// Badger memory-maps its WAL, value-log and table files, created sparse: on a
// full filesystem, writing to such a mapping raises SIGBUS and the process
// dies instead of returning an error. So the writer keeps a reserve, like the
// receiver's store: below Options.MinFreeSpace it refuses the changes that
// add data (publishing, registrations, replays, new accounts and keys) with
// ErrUnavailable, below half of it every change; delivery outcomes, deletes
// and revocations go on in between, so pending deliveries still drain. The
// check is a statfs, at most every 10 ms while space is plentiful and before
// every batch when it is not. It does not protect against another process
// filling the disk faster than the reserve covers.
//
// (The receiver's dedupe store has its own copy of this; both are to move to
// a shared package.)

const freeSpaceCheckEvery = 10 * time.Millisecond

// freeSpace is the writer's view of the free space; only the writer uses it.
type freeSpace struct {
	dir     string
	last    int64
	checked time.Time
	low     bool // refusing: logged when it begins and ends
}

// check returns the error for changes that add data and for all changes,
// if any, given the reserve min (<= 0: not enforced).
func (f *freeSpace) check(min int64) (addErr, allErr error) {
	if min <= 0 {
		return nil, nil
	}
	t := time.Now()
	if f.last < 2*min || t.Sub(f.checked) >= freeSpaceCheckEvery {
		f.last, f.checked = freeBytes(f.dir), t
	}
	if f.last < 0 || f.last >= min {
		return nil, nil
	}
	err := fmt.Errorf("%w: free disk space in %s is %d bytes, below the %d-byte reserve (min_free_space)", ErrUnavailable, f.dir, f.last, min)
	if f.last < min/2 {
		return err, err
	}
	return err, nil
}

// checkOpenSpace refuses to open a store whose filesystem has less than half the
// reserve free: Badger's start-up (WAL replay, a memtable flush) writes
// through its mappings too.
func checkOpenSpace(dir string, min int64) error {
	if min <= 0 {
		return nil
	}
	if free := freeBytes(dir); free >= 0 && free < min/2 {
		return fmt.Errorf("%w: free disk space in %s is %d bytes, below half the %d-byte reserve (min_free_space); free some space and start again",
			ErrUnavailable, dir, free, min)
	}
	return nil
}
