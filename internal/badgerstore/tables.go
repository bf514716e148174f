package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"
)

// Badger trusts its tables (.sst): it reads a table's footer, index and
// blocks with unchecked offsets, in goroutines of its own (three at a time
// while opening, and its compactors), and a truncated or flipped table makes
// it index out of range (a panic nobody can recover) or fail an assertion
// (log.Fatalf, os.Exit). With ChecksumVerificationMode OnTableRead it checks
// block checksums at open, but only after parsing each block's trailer
// unchecked, and a table that fails is "ignored": the store opens without
// the envelopes it holds. So every table the MANIFEST lists is verified here
// first, every offset bounds-checked, every checksum (index and blocks)
// compared; Badger then opens with OnBlockRead, which re-checks a block each
// time it is read from disk.
//
// Layout (badger v4.9.6 table/builder.go):
//
//	block… | index | u32 index len | checksum (proto) | u32 checksum len
//	block: entries | u32 entry offsets… | u32 count | checksum (proto) | u32 checksum len
//
// A block is compressed whole when the table is; its checksum covers the
// entries, offsets and count.

// maxBlockSize bounds a decompressed block (Badger's are BlockSize, 4 KiB
// by default, or one entry when an entry is bigger).
const maxBlockSize = 64 << 20

// tablesVerified counts full table verifications (tests).
var tablesVerified atomic.Int64

// verifyTable checks the table in path, written with compression c; buf is
// a buffer to reuse where tables are read rather than mapped.
func verifyTable(path string, c options.CompressionType, buf []byte) (_ []byte, err error) {
	tablesVerified.Add(1)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable (%v)", r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	size := fi.Size()
	if size > 1<<31 {
		return buf, fmt.Errorf("%d bytes: more than a table can be", size)
	}
	data, unmap, err := mapFile(f, int(size))
	if err != nil {
		// not mappable here: read it
		if int64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		data, unmap = buf[:size], func() {}
		if _, err := io.ReadFull(f, data); err != nil {
			return buf, err
		}
	}
	defer unmap()
	blocks, err := tableIndex(data)
	if err != nil {
		return buf, err
	}
	for i, b := range blocks {
		if err := verifyBlock(data[b.off:b.off+b.len], c); err != nil {
			return buf, fmt.Errorf("block %d (bytes %d to %d): %w", i, b.off, b.off+b.len, err)
		}
	}
	return buf, nil
}

type blockSpan struct{ off, len int }

// tableIndex checks the footer and the index of a table and returns where
// its blocks are.
func tableIndex(data []byte) ([]blockSpan, error) { return tableIndexTail(data, int64(len(data))) }

// tableIndexTail is tableIndex given only the last len(tail) bytes of a
// table of size bytes (block offsets are from the start of the file).
func tableIndexTail(tail []byte, size int64) ([]blockSpan, error) {
	if size < 8 || int64(len(tail)) > size {
		return nil, fmt.Errorf("%d bytes: too short for a table (truncated?)", size)
	}
	base := size - int64(len(tail)) // file offset of tail[0]
	pos := len(tail) - 4
	chkLen := int(binary.BigEndian.Uint32(tail[pos:]))
	if chkLen > pos-4 {
		return nil, fmt.Errorf("footer: checksum length %d in a %d-byte file (truncated?)", chkLen, size)
	}
	pos -= chkLen
	chk, err := checksumOf(tail[pos : pos+chkLen])
	if err != nil {
		return nil, fmt.Errorf("footer: %w", err)
	}
	pos -= 4
	indexLen := int(binary.BigEndian.Uint32(tail[pos:]))
	if indexLen == 0 || int64(indexLen) > base+int64(pos) {
		return nil, fmt.Errorf("footer: index length %d with %d bytes before it (truncated?)", indexLen, base+int64(pos))
	}
	if indexLen > pos {
		return nil, fmt.Errorf("index of %d bytes not within the %d bytes read", indexLen, len(tail))
	}
	indexStart := pos - indexLen
	index := tail[indexStart:pos]
	if err := y.VerifyChecksum(index, chk); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	ti := fb.GetRootAsTableIndex(index, 0)
	n := ti.OffsetsLength()
	if n == 0 {
		return nil, errors.New("index: no blocks")
	}
	blocksEnd := base + int64(indexStart)
	blocks := make([]blockSpan, n)
	var bo fb.BlockOffset
	for i := range blocks {
		if !ti.Offsets(&bo, i) {
			return nil, fmt.Errorf("index: block %d missing", i)
		}
		off, l := int64(bo.Offset()), int64(bo.Len())
		if l <= 0 || off+l > blocksEnd {
			return nil, fmt.Errorf("index: block %d at %d+%d is outside the %d bytes of blocks", i, off, l, blocksEnd)
		}
		blocks[i] = blockSpan{int(off), int(l)}
	}
	return blocks, nil
}

// verifyBlock checks one block's trailer and checksum.
func verifyBlock(b []byte, c options.CompressionType) error {
	switch c {
	case options.None:
	case options.Snappy:
		n, err := snappy.DecodedLen(b)
		if err != nil || n > maxBlockSize {
			return fmt.Errorf("snappy: decoded length %d: %v", n, err)
		}
		if b, err = snappy.Decode(make([]byte, n), b); err != nil {
			return fmt.Errorf("snappy: %w", err)
		}
	case options.ZSTD:
		var err error
		if b, err = y.ZSTDDecompress(make([]byte, 0, 64<<10), b); err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
	default:
		return fmt.Errorf("unknown compression %d", c)
	}
	pos := len(b) - 4
	if pos < 0 {
		return errors.New("shorter than its trailer")
	}
	chkLen := int(binary.BigEndian.Uint32(b[pos:]))
	if chkLen > pos-4 {
		return fmt.Errorf("checksum length %d in a %d-byte block", chkLen, len(b))
	}
	pos -= chkLen
	chk, err := checksumOf(b[pos : pos+chkLen])
	if err != nil {
		return err
	}
	if err := y.VerifyChecksum(b[:pos], chk); err != nil {
		return err
	}
	// Badger reads the entry offsets with the count before it checks the
	// checksum: with the checksum right, they are as written, but keep an
	// eye on them anyway.
	pos -= 4
	count := int(binary.BigEndian.Uint32(b[pos:]))
	if count == 0 || count*4 > pos {
		return fmt.Errorf("%d entries in a %d-byte block", count, len(b))
	}
	return nil
}

// checksumOf decodes a checksum and refuses algorithms Badger would panic on.
func checksumOf(b []byte) (*pb.Checksum, error) {
	chk := &pb.Checksum{}
	if err := proto.Unmarshal(b, chk); err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	if chk.Algo != pb.Checksum_CRC32C && chk.Algo != pb.Checksum_XXHash64 {
		return nil, fmt.Errorf("checksum: unknown algorithm %d", chk.Algo)
	}
	return chk, nil
}
