package dedupe

import "fmt"

// checkSpaceToOpen refuses to open a store whose filesystem has less free
// space than half the reserve, the level below which no mutation is allowed
// anyway. Opening replays the memtable WALs through their memory mappings; on
// tmpfs (and other filesystems that allocate on a read fault) touching the
// sparse part of a mapping with no space left raises SIGBUS and kills the
// process, so a restart on a full disk crashed in badger.Open instead of
// returning an error.
func checkSpaceToOpen(dir string, reserve int64) error {
	if reserve <= 0 {
		return nil
	}
	free := freeBytes(dir)
	if free < 0 || free >= reserve/2 {
		return nil
	}
	return unavailable(fmt.Errorf("free disk space in %s is %d bytes, below the %d needed to open the store", dir, free, reserve/2))
}
