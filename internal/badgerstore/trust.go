package badgerstore

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"
)

// Verifying every table at open reads the whole store: about a quarter of a
// second per 1,000,000 queued envelopes here, on top of a restart that takes
// about one. Tables never change once written, so VerifiedFile records each
// table known good — verified at an open, or written by Badger in this
// process and checked (footer and index) at Close — with its size, times
// and inode; the next open verifies only the tables whose record is missing
// or does not match, which is every table that was truncated, rewritten,
// copied or restored since. What this gives up: bit rot of an unchanged
// table at rest is no longer caught at open (Badger's OnBlockRead catches
// it when the block is read). After a kill -9 the tables written since the
// last open are not in the record and are verified.

// VerifiedFile is the record of verified tables in the storage directory;
// deleting it only makes the next open verify every table.
const VerifiedFile = "VERIFIED"

const verifiedHeader = "badgerstore verified tables v1"

// tableStamp identifies a table file's content as written: a write,
// truncation, copy or replacement changes at least one field.
type tableStamp struct {
	size, mtime, ctime int64
	ino                uint64
}

func stampOf(path string) (tableStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return tableStamp{}, false
	}
	st := tableStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	st.ctime, st.ino = changeStamp(fi)
	return st, true
}

// readVerified reads the record of dir; a missing or unreadable record is an
// empty one.
func readVerified(dir string) map[uint64]tableStamp {
	m := map[uint64]tableStamp{}
	f, err := os.Open(filepath.Join(dir, VerifiedFile))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<20))
	if !sc.Scan() || sc.Text() != verifiedHeader {
		return m
	}
	for sc.Scan() {
		var id uint64
		var st tableStamp
		if n, err := fmt.Sscanf(sc.Text(), "%d %d %d %d %d", &id, &st.size, &st.mtime, &st.ctime, &st.ino); err == nil && n == 5 {
			m[id] = st
		}
	}
	return m
}

// writeVerified replaces the record of dir (write, sync, rename).
func writeVerified(dir string, m map[uint64]tableStamp) error {
	var b strings.Builder
	b.WriteString(verifiedHeader + "\n")
	for id, st := range m {
		fmt.Fprintf(&b, "%d %d %d %d %d\n", id, st.size, st.mtime, st.ctime, st.ino)
	}
	tmp := filepath.Join(dir, VerifiedFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, VerifiedFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// recordTables records, after Badger closed, the tables its MANIFEST lists:
// those already recorded and unchanged, and those written since whose footer
// and index check out (a table cut short while the store was open is left
// out, and verified at the next open).
func recordTables(dir string, opts badger.Options) error {
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return err
	}
	m, _, err := replayManifest(f, opts)
	f.Close()
	if err != nil {
		return err
	}
	old := readVerified(dir)
	rec := make(map[uint64]tableStamp, len(m.Tables))
	for id := range m.Tables {
		path := table.NewFilename(id, dir)
		st, ok := stampOf(path)
		if !ok {
			continue
		}
		if st != old[id] {
			if err := checkTableTail(path, st.size); err != nil {
				continue
			}
		}
		rec[id] = st
	}
	return writeVerified(dir, rec)
}

// checkTableTail checks a table's footer and index (reading only them) and
// that its blocks lie within its size bytes.
func checkTableTail(path string, size int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable (%v)", r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The index of a table of Badger's sizes is a few KiB to a few hundred;
	// read a generous tail, or the whole table if it is small.
	n := min(size, 4<<20)
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, size-n); err != nil {
		return err
	}
	_, err = tableIndexTail(tail, size)
	return err
}
