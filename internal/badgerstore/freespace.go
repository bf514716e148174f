package badgerstore

import (
	"fmt"
	"time"
)

// Badger memory-maps its WAL, value-log and table files, created sparse: on a
// full filesystem, writing to such a mapping raises SIGBUS and the process
// dies (verified on tmpfs) instead of returning an error. So the writers keep
// a reserve: below Config.MinFreeSpace, Check refuses writes that add data,
// below half of it every write, so that deletions can still drain a queue in
// between. The check is a statfs, at most every 10 ms while space is
// plentiful and before every batch when it is not. It does not protect
// against another process filling the disk faster than the reserve covers;
// Close has the ballast for that (see close.go).

const freeSpaceCheckEvery = 10 * time.Millisecond

// freeSpace is the reserve check; the caller serialises calls.
type freeSpace struct {
	dir     string
	min     int64 // <= 0: not enforced
	last    int64
	checked time.Time
}

// check returns the error for writes that add data and for all writes, if
// any; both wrap ErrNoSpace.
func (f *freeSpace) check() (addErr, allErr error) {
	if f.min <= 0 {
		return nil, nil
	}
	t := now()
	if f.last < 2*f.min || t.Sub(f.checked) >= freeSpaceCheckEvery {
		f.last, f.checked = freeBytes(f.dir), t
	}
	if f.last < 0 || f.last >= f.min {
		return nil, nil
	}
	err := fmt.Errorf("%w: free disk space in %s is %d bytes, below the %d reserve", ErrNoSpace, f.dir, f.last, f.min)
	if f.last < f.min/2 {
		return err, err
	}
	return err, nil
}
