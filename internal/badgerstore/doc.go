// Package badgerstore is the one place where the Badger stores of the
// receiver (dedupe) and of the sender (sender) are opened, guarded and
// closed, so that nothing a disk or a crash does panics, SIGBUSes or hangs
// the process, and no loss of acknowledged data goes unsaid.
//
// A store uses it in four places:
//
//	// Open: instead of badger.Open. opts are the store's own sizing; Open
//	// sets Dir, ValueDir, Logger and the checksum options.
//	db, err := badgerstore.Open(dir, opts, logger, badgerstore.Config{MinFreeSpace: reserve})
//	if err != nil {
//		// names dir (and the file); errors.Is(err, badgerstore.ErrNoSpace):
//		// retry later; errors.Is(err, badgerstore.ErrDamaged): an operator
//		// must act (the message says what to do)
//	}
//	if db.Recovered().Lost() { /* already logged at error level */ }
//
//	// Start-up scans (and any read that walks much of the store): a panic
//	// inside Badger becomes an error wrapping ErrDamaged.
//	err = db.Safely(func() error { return db.View(...) })
//
//	// The writer, before each batch: refuse writes that add data on
//	// addErr (free space below the reserve), every write on allErr (below
//	// half of it; the storage directory deleted or replaced; closed). Map
//	// both to "unavailable, retry later" (503 + Retry-After).
//	addErr, allErr := db.Check()
//
//	// Value-log GC: db.RunValueLogGC is guarded (it does not run while
//	// adding writes are refused).
//
//	// Close: stop the writer first, then
//	err = db.Close() // never flushes onto a full disk or a deleted directory, bounded wait
//
// *DB embeds *badger.DB: every other Badger call (View, Update,
// NewTransaction, Sync, …) is Badger's own.
//
// What Open does before Badger sees the directory, and why, is in prepare.go
// (empty files, MANIFEST, KEYREGISTRY), tables.go (table verification),
// trust.go (the VERIFIED record that spares unchanged tables) and wal.go
// (write-ahead log damage); the close protocol and the BALLAST file are in
// close.go; the guard in freespace.go and dirwatch_unix.go. Besides Badger's
// own files the directory holds BALLAST, VERIFIED, and any *.damaged-<time>
// copies of damaged logs.
package badgerstore
