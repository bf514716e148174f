package badgerstore

import "errors"

var (
	// ErrNoSpace: the free space on the store's filesystem is below the
	// reserve (Config.MinFreeSpace). Nothing was written; writing may work
	// again once space is freed.
	ErrNoSpace = errors.New("badgerstore: not enough free disk space")
	// ErrDirGone: the storage directory was deleted or replaced while the
	// store was open. Badger's files are then unlinked: nothing written from
	// then on would survive a restart, so every write fails until the store
	// is opened again.
	ErrDirGone = errors.New("badgerstore: storage directory deleted or replaced")
	// ErrDamaged: the store's files are damaged (a table's checksum, a
	// missing MANIFEST, a panic inside Badger). The error names the directory
	// and, when known, the file.
	ErrDamaged = errors.New("badgerstore: store damaged")
	// ErrClosed: Check was called after Close.
	ErrClosed = errors.New("badgerstore: store closed")
)
