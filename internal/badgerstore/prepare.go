package badgerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
)

// Report says what Open found and repaired in the directory before Badger
// opened it.
type Report struct {
	// Removed lists the empty .mem and .vlog files removed: a crash between
	// creating such a file and sizing it leaves it at zero bytes, and Badger
	// v4 refuses to open it once ("while opening fid: N err: Create a new
	// file") because it takes the new-file marker of its mmap helper for an
	// error. Such a file holds nothing.
	Removed []string
	// Damaged lists the logs damaged before their end. Badger keeps a
	// memtable's write-ahead log (.mem) or the last value log up to the
	// damage and drops the rest, which may hold acknowledged writes (see
	// LogDamage.Committed); a copy of the original is kept beside it. In an
	// older value log the damaged values cannot be read back (older value
	// logs are scanned, newest first, up to 256 MiB; past that, a damaged
	// value shows when it is read: Badger checks it and logs the mismatch).
	Damaged []LogDamage
	// Repaired lists the files set aside because they did not read back and
	// held nothing the store needs (the KEYREGISTRY of a store that is not
	// encrypted); Badger writes them anew.
	Repaired []string
}

// Lost reports whether acknowledged writes may have been lost.
func (r Report) Lost() bool { return len(r.Damaged) > 0 }

// todoDamaged is what an operator can do about a store Open refuses.
const todoDamaged = "opening it anyway would drop the data it holds: restore the directory from a backup, " +
	"or move it aside to start with an empty store"

func damaged(file, what, todo string) error {
	return fmt.Errorf("%w: %s %s; %s", ErrDamaged, file, what, todo)
}

// prepare inspects dir before Badger opens it: it removes the empty files a
// crash leaves, refuses a store whose MANIFEST is missing or damaged or whose
// tables do not verify, and finds damage in the write-ahead logs (truncating
// each at the point Badger would, after saving a copy).
func prepare(dir string, opts badger.Options) (Report, error) {
	var rep Report
	entries, err := os.ReadDir(dir)
	if err != nil {
		return rep, err
	}
	var (
		mems     []string
		vlogs    = map[int]string{}
		maxVlog  = -1
		ssts     = map[uint64]string{}
		manifest bool
	)
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, ".mem"), strings.HasSuffix(name, ".vlog"):
			if !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return rep, err
			}
			if fi.Size() == 0 {
				if err := os.Remove(path); err != nil {
					return rep, fmt.Errorf("removing the empty %s: %w", path, err)
				}
				rep.Removed = append(rep.Removed, path)
				continue
			}
			if strings.HasSuffix(name, ".mem") {
				mems = append(mems, path)
			} else if fid, err := strconv.Atoi(strings.TrimSuffix(name, ".vlog")); err == nil {
				vlogs[fid] = path
				maxVlog = max(maxVlog, fid)
			}
		case strings.HasSuffix(name, ".sst"):
			if id, ok := table.ParseFileID(name); ok {
				ssts[id] = path
			}
		case name == badger.ManifestFilename:
			manifest = true
		}
	}
	if len(rep.Removed) > 0 {
		if err := syncDir(dir); err != nil {
			return rep, err
		}
	}
	if !manifest && (len(ssts) > 0 || len(vlogs) > 0) {
		return rep, damaged(filepath.Join(dir, badger.ManifestFilename),
			fmt.Sprintf("is missing, but the directory holds %d tables and value logs: Badger would start "+
				"with an empty MANIFEST and delete the tables", len(ssts)), todoDamaged)
	}
	if manifest {
		if err := checkTables(dir, opts, ssts); err != nil {
			return rep, err
		}
	}
	if len(opts.EncryptionKey) > 0 {
		return rep, nil // the logs of an encrypted store do not read back here
	}
	if moved, err := checkKeyRegistry(dir, opts); err != nil {
		return rep, err
	} else if moved != "" {
		rep.Repaired = append(rep.Repaired, moved)
	}
	slices.Sort(mems)
	type logFile struct {
		path string
		kind logKind
	}
	var logs []logFile
	for _, m := range mems {
		logs = append(logs, logFile{m, walLog})
	}
	// The last value log is replayed and cut by Badger: always scanned.
	// Older ones are read only by pointer (and then checksummed, Badger
	// logging a mismatch): scanned newest first within a budget, so that a
	// store of large bodies still opens fast.
	fids := make([]int, 0, len(vlogs))
	for fid := range vlogs {
		fids = append(fids, fid)
	}
	slices.Sort(fids)
	slices.Reverse(fids)
	budget := int64(olderValueLogBudget)
	for _, fid := range fids {
		kind := olderValueLog
		if fid == maxVlog {
			kind = lastValueLog
		} else if budget -= fileSize(vlogs[fid]); budget < 0 {
			break
		}
		logs = append(logs, logFile{vlogs[fid], kind})
	}
	for _, l := range logs {
		d, err := checkLog(l.path, l.kind)
		if err != nil {
			return rep, err
		}
		if d != nil {
			rep.Damaged = append(rep.Damaged, *d)
		}
	}
	return rep, nil
}

// checkKeyRegistry reads the KEYREGISTRY of a store that is not encrypted;
// if it does not read back (Badger would refuse the store with "Encryption
// key mismatch"), it holds no key the store needs: it is moved aside for
// Badger to write a new one, and the new name returned.
func checkKeyRegistry(dir string, opts badger.Options) (string, error) {
	path := filepath.Join(dir, badger.KeyRegistryFileName)
	if _, err := os.Stat(path); err != nil {
		return "", nil // missing: Badger writes a new one
	}
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true})
	if err == nil {
		return "", kr.Close()
	}
	aside := fmt.Sprintf("%s.damaged-%s", path, now().UTC().Format("20060102T150405.000"))
	if err := os.Rename(path, aside); err != nil {
		return "", damaged(path, "does not read back and cannot be moved aside: "+err.Error(), todoDamaged)
	}
	return aside, syncDir(dir)
}

// checkTables reads the MANIFEST and verifies every table it lists.
func checkTables(dir string, opts badger.Options, ssts map[uint64]string) error {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	m, end, err := replayManifest(f, opts)
	if err != nil {
		return damaged(path, fmt.Sprintf("does not read back (%v)", err), todoDamaged)
	}
	var orphans int
	for id := range ssts {
		if _, ok := m.Tables[id]; !ok {
			orphans++ // a crash mid-flush or mid-compaction: Badger deletes it
		}
	}
	if end < fi.Size() && orphans > 0 {
		return damaged(path, fmt.Sprintf("ends in %d bytes that do not read back, and Badger would delete the %d tables it does not list",
			fi.Size()-end, orphans), todoDamaged)
	}
	type job struct {
		path string
		c    options.CompressionType
	}
	var jobs []job
	known := readVerified(dir)
	rec := make(map[uint64]tableStamp, len(m.Tables))
	for id, tm := range m.Tables {
		p := table.NewFilename(id, dir)
		if _, ok := ssts[id]; !ok {
			return damaged(p, "is listed in the MANIFEST but missing", todoDamaged)
		}
		st, ok := stampOf(p)
		if ok {
			rec[id] = st
			if st == known[id] {
				continue // verified before and unchanged since (trust.go)
			}
		}
		if tm.KeyID != 0 {
			continue // encrypted: Badger checks it with the key
		}
		jobs = append(jobs, job{p, tm.Compression})
	}
	slices.SortFunc(jobs, func(a, b job) int { return strings.Compare(a.path, b.path) })
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				mu.Lock()
				if next == len(jobs) || firstErr != nil {
					mu.Unlock()
					return
				}
				j := jobs[next]
				next++
				mu.Unlock()
				var err error
				if buf, err = verifyTable(j.path, j.c, buf); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = damaged(j.path, "is damaged: "+err.Error(), todoDamaged)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if len(jobs) > 0 {
		_ = writeVerified(dir, rec) // a record not written costs a verification
	}
	return nil
}

// replayManifest reads a MANIFEST with Badger's own reader, a panic being
// damage too.
func replayManifest(f *os.File, opts badger.Options) (m badger.Manifest, end int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
}

// errLogHeader: a log's 20-byte header is damaged.
var errLogHeader = errors.New("damaged header")

// olderValueLogBudget bounds the bytes of older value logs scanned at open.
const olderValueLogBudget = 256 << 20

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logKind tells the logs apart: Badger replays and truncates the memtables'
// write-ahead logs and the last value log at open, and reads the older value
// logs only by pointer.
type logKind int

const (
	walLog logKind = iota
	lastValueLog
	olderValueLog
)

// checkLog scans one log. If the log is damaged and Badger will truncate it
// at open, checkLog keeps a copy of the file and truncates it there itself,
// so that Badger never reads the damaged bytes (a flipped length can make it
// allocate gigabytes, a flipped varint makes it refuse to open).
func checkLog(path string, kind logKind) (*LogDamage, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end, bad, committed, err := scanLog(f, fi.Size(), kind == walLog)
	if errors.Is(err, errLogHeader) {
		return nil, damaged(path, "has a damaged header", todoDamaged)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !bad {
		return nil, nil
	}
	d := &LogDamage{File: path, Offset: end, Committed: committed, kind: kind}
	if kind == olderValueLog {
		return d, nil
	}
	d.Truncated = true
	cp := fmt.Sprintf("%s.damaged-%s", path, now().UTC().Format("20060102T150405.000"))
	if err := sparseCopy(f, fi.Size(), cp); err == nil {
		d.Copy = cp
	} else {
		_ = os.Remove(cp)
	}
	if err := f.Truncate(end); err != nil {
		return nil, fmt.Errorf("truncating the damaged %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("truncating the damaged %s: %w", path, err)
	}
	return d, nil
}

// sparseCopy copies the size bytes of f to a new file at dst, leaving holes
// where f has zeros, and syncs it.
func sparseCopy(f *os.File, size int64, dst string) error {
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 && slices.ContainsFunc(buf[:n], func(c byte) bool { return c != 0 }) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}
