package badgerstore

import (
	"errors"
	"os"
	"syscall"
)

// mapFile maps the size bytes of f read-only, populated at once (reading a
// table through the page cache this way costs a tenth of copying it out).
// Tables are written whole and never sparse, so reading the mapping cannot
// fault on a hole.
func mapFile(f *os.File, size int) ([]byte, func(), error) {
	if size == 0 {
		return nil, nil, errors.New("empty")
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}
