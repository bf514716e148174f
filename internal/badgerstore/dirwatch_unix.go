//go:build unix

package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// dirWatch tells whether the storage directory is still the one the store
// opened: it holds the directory open and compares its identity with what the
// path names now. A deleted directory has no links left (rm -r, whatever
// recreated the path since); a replaced or moved one is another inode at the
// path, or none.
type dirWatch struct {
	path     string
	f        *os.File
	dev, ino uint64
}

func watchDir(path string) (*dirWatch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := statOf(f.Stat())
	if err != nil {
		f.Close()
		return nil, err
	}
	return &dirWatch{path: path, f: f, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// check returns an error wrapping ErrDirGone if the directory was deleted,
// moved or replaced, and nil while it is in place (or cannot be told).
func (w *dirWatch) check() error {
	if w == nil {
		return nil
	}
	if st, err := statOf(w.f.Stat()); err == nil && st.Nlink == 0 {
		return fmt.Errorf("%w: %s was deleted", ErrDirGone, w.path)
	}
	st, err := statOf(os.Stat(w.path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s no longer exists (deleted or moved)", ErrDirGone, w.path)
	case err != nil:
		return nil // cannot tell (permissions?): do not fail writes on a guess
	case uint64(st.Dev) != w.dev || uint64(st.Ino) != w.ino:
		return fmt.Errorf("%w: %s was replaced by another directory", ErrDirGone, w.path)
	}
	return nil
}

func (w *dirWatch) close() {
	if w != nil {
		w.f.Close()
	}
}

func statOf(fi fs.FileInfo, err error) (*syscall.Stat_t, error) {
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("no stat_t")
	}
	return st, nil
}
