package badgerstore

import (
	"io/fs"
	"syscall"
)

// changeStamp returns a file's change time (ns) and inode: no write,
// truncation or copy leaves both as they were.
func changeStamp(fi fs.FileInfo) (ctime int64, ino uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Ctim.Nano(), st.Ino
}
