//go:build linux || darwin || freebsd

package content

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// freeSpace is what an unprivileged writer may still use on dir's file
// system: the blocks reserved for root do not count.
func freeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
