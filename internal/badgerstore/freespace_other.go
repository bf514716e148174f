//go:build !linux

package badgerstore

// freeBytes is not implemented here: the free-space reserve is not enforced.
func freeBytes(string) int64 { return -1 }

// device is not needed here (the reserve is not enforced).
func device(string) uint64 { return 0 }
