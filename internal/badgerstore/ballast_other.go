//go:build !linux

package badgerstore

import "errors"

// allocate is not implemented here: no ballast (Close decides on the free
// space alone).
func allocate(string, int64) error { return errors.New("no fallocate on this system") }

func allocated(string) int64 { return 0 }
