package badgerstore

import (
	"errors"
	"math"
	"os"
	"syscall"
)

// nextData returns the offset of the first byte at or after off that is not
// in a hole (SEEK_DATA), MaxInt64 if there is none, or off if the system
// cannot tell.
func nextData(f *os.File, off int64) int64 {
	const seekData = 3
	d, err := f.Seek(off, seekData)
	switch {
	case errors.Is(err, syscall.ENXIO):
		return math.MaxInt64 // only holes from off to the end
	case err != nil:
		return off
	}
	return d
}
