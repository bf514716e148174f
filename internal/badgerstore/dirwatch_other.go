//go:build !unix

package badgerstore

// dirWatch is not implemented here: a deleted storage directory is not
// detected.
type dirWatch struct{}

func watchDir(string) (*dirWatch, error) { return nil, nil }
func (*dirWatch) check() error           { return nil }
func (*dirWatch) close()                 {}
