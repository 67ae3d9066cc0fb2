package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// mountTmpfs mounts a file system of size bytes for the test, or skips.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// On a real file system that is nearly full, a delivery that does not fit is
// refused as unavailable before its bytes move, and one admitted on a wrong
// free-space figure fails at the first reservation step the disk cannot
// give; neither leaves a file, and neither tells the sender a local path.
func TestInboxFullDisk(t *testing.T) {
	disk := mountTmpfs(t, 64<<20)
	if err := os.WriteFile(filepath.Join(disk, "filler"), make([]byte, 40<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	inDir := func(c *Config) { c.InboxDir = disk }
	var lie atomic.Bool // when set, the free space is misreported
	victim := inboxPeer(t, InboxLimits{}, func(dir string) func() (int64, error) {
		return func() (int64, error) {
			if lie.Load() {
				return 1 << 40, nil
			}
			return content.FreeSpace(dir)
		}
	}, inDir)
	honest := inboxPeer(t, InboxLimits{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	free0, err := victim.inbox.free()
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(t, 16<<20) // more than half of the 24 MiB left
	_, err = sendTo(ctx, t, honest, victim, "video.mp4", data)
	if !errors.Is(err, protocol.ErrUnavailable) {
		t.Fatalf("a delivery the disk has no room for: %v, want unavailable", err)
	}
	checkPrivate(t, victim, err.Error())
	t.Logf("%d bytes free: %v", free0, err)

	// The free space is misreported: the reservation steps catch it.
	lie.Store(true)
	data = randomData(t, 30<<20)
	_, err = sendTo(ctx, t, honest, victim, "video.mp4", data)
	if !errors.Is(err, protocol.ErrUnavailable) {
		t.Fatalf("a delivery past the end of the disk: %v, want unavailable", err)
	}
	checkPrivate(t, victim, err.Error())
	t.Logf("free space misreported: %v", err)
	wait(t, 10*time.Second, "the refused deliveries leave nothing", func() bool {
		entries, _ := os.ReadDir(disk)
		return len(entries) == 1 && victim.inbox.load.usage().Claimed == 0
	})
	if u := victim.inbox.load.usage(); u.Ahead != 0 || u.Unavailable != 2 {
		t.Fatalf("after the refusals: %+v", u)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	if got := int64(st.Bavail) * st.Bsize; got != free0 {
		t.Fatalf("%d bytes free after the refusals, %d before", got, free0)
	}
	// What fits is still taken.
	lie.Store(false)
	fits := randomData(t, 8<<20)
	stored, err := sendTo(ctx, t, honest, victim, "photo.raw", fits)
	if err != nil {
		t.Fatal(err)
	}
	checkStored(t, victim, stored, fits)
}
