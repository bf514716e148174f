package badgerstore

import "syscall"

// freeBytes returns the space available to unprivileged users on dir's
// filesystem, or -1 if unknown.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// device returns the ID of dir's filesystem (0 if unknown).
func device(dir string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0
	}
	return uint64(st.Dev)
}
