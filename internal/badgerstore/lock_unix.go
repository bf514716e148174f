//go:build unix

package badgerstore

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes the lock Badger takes (flock LOCK_EX on the directory), so
// that Open never inspects or repairs files of a store another process — or
// another Open in this one — has open. Badger takes the lock anew in
// badger.Open, after unlock: whoever holds it, a badgerstore preparing or a
// Badger open, is alone with the files.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot lock %s (another process, or this one, has the store open): %w", dir, err)
	}
	return func() { f.Close() }, nil
}
