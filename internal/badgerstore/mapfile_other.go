//go:build !linux

package badgerstore

import (
	"errors"
	"os"
)

// mapFile is not used here: tables are read.
func mapFile(*os.File, int) ([]byte, func(), error) { return nil, nil, errors.New("not mapped here") }
