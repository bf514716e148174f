package badgerstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"strconv"
)

// Badger's write-ahead logs (the memtables' .mem files and the value log's
// .vlog files) are sequences of entries, each
//
//	meta byte | user meta byte | uvarint key len | uvarint value len |
//	uvarint expiresAt | key | value | CRC-32C (big endian) of all before it
//
// after a 20-byte file header (encryption key id, IV). A transaction's
// entries carry bitTxn and end with a bitFinTxn entry whose key is
// "!badger!txn"+ts and whose value is the commit timestamp. When Badger opens
// a log (logFile.iterate in badger v4.9.6 memtable.go) it replays entries up
// to the first one that does not read back — a torn or corrupt entry, a key
// over 64 KiB, a zero entry, a transaction interrupted by another — and
// truncates the file there, without a word above debug level.
//
// After a kill -9 that is right: what follows the cut is the transaction
// being written (never acknowledged), at most one torn entry, and the zeros
// of the preallocated file. A torn entry is not a clean prefix: Go's memmove
// (the AVX path, for copies over 256 bytes) stores the first 32 bytes of a
// copy last, so the header may still be zeros while bytes after it are in
// place. After damage, though, the cut drops every acknowledged transaction
// behind the damaged byte. So scanLog finds where Badger will cut a log and
// calls it damaged when committed data lies beyond the cut — a valid fin
// entry (memtable log) or any valid entry (value log), looked for at every
// offset — or when the file ends inside an entry or a transaction, which a
// crash never leaves (logs are preallocated and rotated long before they
// fill; Badger truncates them at a commit). Left undetected: damage to the
// very last fin entry of a log (its transaction is dropped like an
// unfinished one).

const (
	logHeaderSize = 20 // badger vlogHeaderSize
	maxKeyLen     = 1 << 16
	bitTxn        = 1 << 6
	bitFinTxn     = 1 << 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// logEntry is one entry as read from a log.
type logEntry struct {
	off, next int64 // where it starts and where the next one does
	meta      byte
	key       []byte
	value     []byte
}

// errBadEntry: the entry at that offset does not read back (Badger stops
// there); errBadHeader: its header is not even readable (a varint overflows,
// which makes Badger fail to open instead of stopping).
var (
	errBadEntry     = errors.New("entry does not read back")
	errBadHeader    = errors.New("entry header unreadable")
	errEntryPastEOF = errors.New("entry runs past the end of the file")
)

// logReader reads entries sequentially from a log file.
type logReader struct {
	f    *os.File
	size int64
	r    *bufio.Reader
	off  int64
	buf  []byte
}

func newLogReader(f *os.File, size, off int64) *logReader {
	lr := &logReader{f: f, size: size}
	lr.seek(off)
	return lr
}

func (lr *logReader) seek(off int64) {
	lr.off = off
	lr.r = bufio.NewReaderSize(io.NewSectionReader(lr.f, off, max(lr.size-off, 0)), 256<<10)
}

// header reads an entry's header; io.EOF if the file ends before its first
// byte.
func (lr *logReader) header() (meta byte, klen, vlen uint64, hlen int, crc uint32, err error) {
	var hb [2 + 3*binary.MaxVarintLen64]byte
	b0, err := lr.r.ReadByte()
	if err != nil {
		return 0, 0, 0, 0, 0, io.EOF
	}
	b1, err := lr.r.ReadByte()
	if err != nil {
		return 0, 0, 0, 0, 0, errEntryPastEOF
	}
	hb[0], hb[1] = b0, b1
	n := 2
	var fields [3]uint64
	for i := range fields {
		fields[i], err = binary.ReadUvarint(byteCounter{lr.r, &n, hb[:]})
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return 0, 0, 0, 0, 0, errEntryPastEOF
		case err != nil:
			return 0, 0, 0, 0, 0, errBadHeader
		}
	}
	return b0, fields[0], fields[1], n, crc32.Update(0, castagnoli, hb[:n]), nil
}

// byteCounter feeds ReadUvarint and keeps the bytes it read.
type byteCounter struct {
	r   *bufio.Reader
	n   *int
	buf []byte
}

func (b byteCounter) ReadByte() (byte, error) {
	c, err := b.r.ReadByte()
	if err == nil {
		if *b.n < len(b.buf) {
			b.buf[*b.n] = c
		}
		*b.n++
	}
	return c, err
}

// next reads the entry at lr.off: io.EOF at the end of the file;
// errBadEntry, errEntryPastEOF or errBadHeader where Badger would stop (or
// fail to open).
func (lr *logReader) next() (e logEntry, err error) {
	e.off = lr.off
	meta, klen, vlen, hlen, crc, err := lr.header()
	if err != nil {
		return e, err
	}
	e.meta = meta
	if klen > maxKeyLen || vlen > math.MaxUint32 {
		return e, errBadEntry // Badger stops before reading it
	}
	e.next = e.off + int64(hlen) + int64(klen) + int64(vlen) + crc32.Size
	if e.next > lr.size {
		return e, errEntryPastEOF
	}
	n := int(klen + vlen)
	if cap(lr.buf) < n+crc32.Size {
		lr.buf = make([]byte, n+crc32.Size)
	}
	buf := lr.buf[:n+crc32.Size]
	if _, err := io.ReadFull(lr.r, buf); err != nil {
		return e, errBadEntry
	}
	if crc32.Update(crc, castagnoli, buf[:n]) != binary.BigEndian.Uint32(buf[n:]) {
		return e, errBadEntry
	}
	lr.off = e.next
	e.key, e.value = buf[:klen], buf[klen:n]
	return e, nil
}

// commitTs is the transaction timestamp Badger appends to a key.
func commitTs(key []byte) uint64 {
	if len(key) <= 8 {
		return 0
	}
	return math.MaxUint64 - binary.BigEndian.Uint64(key[len(key)-8:])
}

// LogDamage is damage found in a write-ahead log before Badger opened it.
type LogDamage struct {
	// File is the damaged log.
	File string
	// Offset is where the log stops reading back: Badger keeps what precedes
	// it and truncates the rest.
	Offset int64
	// Committed is how many committed transactions (for a value log: values)
	// were found intact after the damage: acknowledged writes that are lost.
	// It is a lower bound: reading stops at the next unreadable entry.
	Committed int
	// Truncated: the log was cut at Offset (a memtable's write-ahead log or
	// the last value log), as Badger would have. An older value log is left
	// as it is: the values in its damaged entries cannot be read back.
	Truncated bool
	// Copy is where the log's original bytes were saved before it was
	// truncated ("" if they could not be).
	Copy string

	kind logKind
}

func (d LogDamage) String() string {
	return fmt.Sprintf("%s: unreadable from byte %d, %d committed entries after it", d.File, d.Offset, d.Committed)
}

// message is the error log line for d.
func (d LogDamage) message() string {
	switch d.kind {
	case walLog:
		return "write-ahead log damaged: Badger keeps it up to the damage and drops the rest; acknowledged writes after that point are lost"
	case lastValueLog:
		return "value log damaged: it was cut at the damage; the values stored after that point are lost"
	}
	return "value log damaged: values stored in the damaged part cannot be read back"
}

// scanLog reads the log in f (size bytes) as Badger will: end is where Badger
// will cut it; damaged says whether committed data is lost by the cut (or the
// file was cut short), committed how many committed transactions (memtable
// log) or entries (value log) lie beyond it.
func scanLog(f *os.File, size int64, wal bool) (end int64, damaged bool, committed int, err error) {
	if size < logHeaderSize {
		// Badger writes the header when it creates a log (a crash before
		// that leaves zero bytes, removed in prepare): so short a file was
		// cut short, everything in it lost.
		return size, true, 0, nil
	}
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, false, 0, err
	}
	if binary.BigEndian.Uint64(hdr[:]) != 0 {
		// An encryption key id in a store that is not encrypted: Badger
		// would refuse the file.
		return 0, false, 0, errLogHeader
	}
	lr := newLogReader(f, size, logHeaderSize)
	end = logHeaderSize
	var (
		txn  uint64 // timestamp of the open transaction, 0 if none
		stop error
		e    logEntry
	)
	for stop == nil {
		e, stop = lr.next()
		switch {
		case stop != nil:
		case len(e.key) == 0:
			stop = errBadEntry
		case !wal:
			end = e.next // value logs hold no transaction marks
		case e.meta&bitTxn != 0:
			ts := commitTs(e.key)
			if txn == 0 {
				txn = ts
			}
			if txn != ts {
				stop = errBadEntry
			}
		case e.meta&bitFinTxn != 0:
			ts, perr := strconv.ParseUint(string(e.value), 10, 64)
			if perr != nil || ts != txn {
				stop = errBadEntry
				break
			}
			txn = 0
			end = e.next
		case txn != 0:
			stop = errBadEntry
		default:
			end = e.next
		}
	}
	switch {
	case stop == io.EOF:
		// The file ends after a commit (clean), or inside a transaction:
		// cut short.
		return end, txn != 0, 0, nil
	case errors.Is(stop, errEntryPastEOF):
		return end, true, 0, nil // cut short inside an entry
	}
	from := end
	if !wal {
		from = e.off + 1 // every valid entry before the stop is kept
	}
	committed, err = committedAfter(f, size, from, wal)
	// An unreadable header (a varint that overflows) is never torn (a
	// header is stored at once), and Badger would refuse the file.
	return end, committed > 0 || errors.Is(stop, errBadHeader), committed, err
}

// maxSearch bounds how far past the last non-zero byte an entry found by
// committedAfter may end (values and checksums can end in zeros).
const maxSearch = 1 << 20

// committedAfter counts the committed transactions (wal: valid fin entries)
// or the valid entries (value log) that start at or after from, looking at
// every offset.
func committedAfter(f *os.File, size, from int64, wal bool) (int, error) {
	last, err := lastNonZero(f, from, size)
	if err != nil || last <= from {
		return 0, err
	}
	buf := make([]byte, min(size, last+maxSearch)-from)
	if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
		return 0, err
	}
	if wal {
		return countFins(buf), nil
	}
	return countEntries(buf), nil
}

// countFins counts the valid fin entries in b.
func countFins(b []byte) int {
	n := 0
	for i := 0; ; {
		k := bytes.Index(b[i:], txnKey)
		if k < 0 {
			return n
		}
		q := i + k - 5 // meta, user meta, key len 19, value len, expiresAt 0
		i += k + 1
		if q < 0 {
			continue
		}
		if meta, _, value, _, ok := parseEntry(b[q:]); ok && meta&bitFinTxn != 0 && isDigits(value) {
			n++
		}
	}
}

// countEntries counts the valid entries in b, looking at every offset until
// it finds one, then going entry by entry.
func countEntries(buf []byte) int {
	n := 0
	for q := 0; q < len(buf); {
		if _, key, _, l, ok := parseEntry(buf[q:]); ok && plausibleKey(key) {
			n++
			q += l
			continue
		}
		q++
	}
	return n
}

var txnKey = []byte("!badger!txn")

// parseEntry reads the entry at the start of b, if one is there whole with
// the right checksum.
func parseEntry(b []byte) (meta byte, key, value []byte, l int, ok bool) {
	if len(b) < 2+3+crc32.Size {
		return 0, nil, nil, 0, false
	}
	i := 2
	var fields [3]uint64
	for j := range fields {
		v, n := binary.Uvarint(b[i:])
		if n <= 0 {
			return 0, nil, nil, 0, false
		}
		fields[j], i = v, i+n
	}
	klen, vlen := fields[0], fields[1]
	if klen == 0 || klen > maxKeyLen || vlen > uint64(len(b)) || uint64(i)+klen+vlen+crc32.Size > uint64(len(b)) {
		return 0, nil, nil, 0, false
	}
	kv := i + int(klen) + int(vlen)
	if crc32.Checksum(b[:kv], castagnoli) != binary.BigEndian.Uint32(b[kv:]) {
		return 0, nil, nil, 0, false
	}
	return b[0], b[i : i+int(klen)], b[i+int(klen) : kv], kv + crc32.Size, true
}

// plausibleKey: a Badger key ends in a timestamp stored as MaxUint64 - ts,
// whose top bytes are 0xff for any timestamp this side of 2^40 commits.
func plausibleKey(k []byte) bool {
	return len(k) > 8 && k[len(k)-8] == 0xff && k[len(k)-7] == 0xff && k[len(k)-6] == 0xff
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// lastNonZero returns the offset just past the last non-zero byte of f in
// [from, size), or from if there is none; holes are skipped where the system
// can tell them.
func lastNonZero(f *os.File, from, size int64) (int64, error) {
	last := from
	buf := make([]byte, 256<<10)
	for off := from; off < size; {
		off = nextData(f, off)
		if off >= size {
			break
		}
		n := int(min(int64(len(buf)), size-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				last = off + int64(i) + 1
				break
			}
		}
		off += int64(n)
	}
	return last, nil
}
