package dedupe

import (
	"fmt"
	"time"
)

// Badger memory-maps its WAL, value-log and table files, created sparse: on a
// full filesystem, writing to such a mapping raises SIGBUS and the process
// dies (verified on tmpfs) instead of returning an error. So the writer keeps
// a reserve: below MinFreeSpace it refuses Accept and Replay (which add data)
// with ErrUnavailable, below half of it every mutation; Delivered, Reschedule,
// Kill and Purge keep working in between so the queue can still drain. The
// check is a statfs, at most every 10 ms while space is plentiful and before
// every batch when it is not. It does not protect against another process
// filling the disk faster than the reserve covers.

const freeSpaceCheckEvery = 10 * time.Millisecond

type freeSpace struct {
	dir     string
	min     int64 // <= 0: not enforced
	last    int64
	checked time.Time
}

// check returns the error for ops that add data and for all ops, if any.
func (f *freeSpace) check() (addErr, allErr error) {
	if f.min <= 0 {
		return nil, nil
	}
	t := time.Now()
	if f.last < 2*f.min || t.Sub(f.checked) >= freeSpaceCheckEvery {
		f.last, f.checked = freeBytes(f.dir), t
	}
	if f.last < 0 || f.last >= f.min {
		return nil, nil
	}
	err := unavailable(fmt.Errorf("free disk space in %s is %d bytes, below the %d reserve", f.dir, f.last, f.min))
	if f.last < f.min/2 {
		return err, err
	}
	return err, nil
}
