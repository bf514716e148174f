package badgerstore

import (
	"os"
	"syscall"
)

// allocate creates path with size bytes allocated on disk (fallocate: no
// sparse blocks, so the space is really taken and really freed on delete).
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// allocated returns the bytes path occupies on disk (0 if it does not exist).
func allocated(path string) int64 {
	st, err := statOf(os.Stat(path))
	if err != nil {
		return 0
	}
	return st.Blocks * 512
}
