package badgerstore

import (
	"os"
	"path/filepath"
)

// BallastFile is the name of the ballast in the storage directory: a file of
// Config.Ballast bytes, allocated (not sparse), that the store deletes to make
// room for Close's final memtable flush when the disk is full (see close.go).
// Badger ignores it; deleting it by hand only loses that protection.
const BallastFile = "BALLAST"

// ballast is the store's ballast file, if it has one.
type ballast struct {
	path string
	size int64
}

// makeBallast makes sure dir holds a ballast of size allocated bytes.
func makeBallast(dir string, size int64) (*ballast, error) {
	b := &ballast{path: filepath.Join(dir, BallastFile), size: size}
	if allocated(b.path) >= size {
		return b, nil
	}
	if err := allocate(b.path, size); err != nil {
		_ = os.Remove(b.path)
		return nil, err
	}
	return b, syncDir(dir)
}

// release deletes the ballast, freeing its space; false if there was none.
func (b *ballast) release() bool {
	if b == nil {
		return false
	}
	err := os.Remove(b.path)
	_ = syncDir(filepath.Dir(b.path)) // some filesystems free the blocks at commit
	return err == nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
