//go:build unix

package content

import (
	"io/fs"
	"syscall"
)

// inode identifies the file behind fi, so that a file replaced by another of the same size
// and mtime (a rename over it, say) is still seen as changed.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
