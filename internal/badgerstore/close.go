package badgerstore

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Closing. badger.DB.Close flushes the memtables into new tables: files it
// sizes with ftruncate and fills through a memory mapping, so on a full disk
// (tmpfs allocates on the page fault) the process dies of SIGBUS; and when
// the flush fails (the directory was deleted) Badger retries it every second,
// forever, and Close never returns. So Close
//
//  1. does not call Badger at all when the directory is gone: nothing written
//     there can be flushed or survive;
//  2. wants (NumMemtables + 1) × MemTableSize free, what the flush of every
//     memtable can take; below that it deletes the ballast, which Open
//     allocated for this moment, and looks again;
//  3. skips Badger's Close if there is still too little room: every commit is
//     in the memtables' write-ahead logs, which the next Open replays (as
//     after kill -9), so nothing is lost but the directory stays locked, and
//     Badger's goroutines alive, until the process exits;
//  4. otherwise closes Badger, waiting at most CloseTimeout, and records the
//     tables it leaves as verified (trust.go).
//
// Left: another process can take the space back between the check and the
// flush; Badger's compactions are not under our control and may be writing
// tables while the disk fills up.

// Close closes the store safely (see above); it is idempotent. The error
// says why the store was left open, if it was.
func (d *DB) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

func (d *DB) close() error {
	d.mu.Lock()
	d.closed = true
	d.space.forget()
	gone := d.gone
	if gone == nil {
		gone = d.watch.check()
	}
	d.mu.Unlock()
	if gone != nil {
		d.log.Error("not closing Badger: the storage directory is gone, its final flush could never complete", zap.Error(gone))
		return fmt.Errorf("closing store at %s: %w", d.dir, gone)
	}
	free := freeBytes(d.dir)
	if free >= 0 && free < d.closeNeed && d.ballast.release() {
		d.log.Warn("released the ballast to make room for closing",
			zap.Int64("free_before", free), zap.Int64("needed", d.closeNeed))
		d.ballast = nil
		free = freeBytes(d.dir)
	}
	if free >= 0 && free < d.closeNeed {
		// Not even a sync: an msync of the logs' dirty pages is all the
		// kernel will do at exit anyway, and it is what Badger's own Sync
		// would do.
		d.log.Error("not closing Badger: too little free space to flush its memtables (that would crash the process with SIGBUS); "+
			"their write-ahead logs hold every commit and are replayed at the next start; the directory stays locked until the process exits",
			zap.Int64("free", free), zap.Int64("needed", d.closeNeed))
		return fmt.Errorf("closing store at %s: %w: %d bytes free, %d needed to flush", d.dir, ErrNoSpace, free, d.closeNeed)
	}
	done := make(chan error, 1)
	go func() { done <- d.Safely(d.DB.Close) }()
	t := time.NewTimer(d.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		d.watch.close()
		if err != nil {
			return fmt.Errorf("closing store at %s: %w", d.dir, err)
		}
		if err := recordTables(d.dir, d.opts); err != nil {
			d.log.Debug("not recording the verified tables", zap.Error(err))
		}
		return nil
	case <-t.C:
		d.log.Error("closing Badger did not finish in time; left to finish in the background",
			zap.Duration("waited", d.timeout))
		return fmt.Errorf("closing store at %s: Badger did not close within %v", d.dir, d.timeout)
	}
}
