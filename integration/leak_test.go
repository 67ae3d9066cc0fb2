package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestDaemonCloseLeavesNoGoroutines: peer daemons that attached, searched and
// moved a file between them leave nothing running once they and their
// supernode are closed.
func TestDaemonCloseLeavesNoGoroutines(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	// The subtest's cleanups close the daemons and the supernode before the check.
	t.Run("overlay", func(t *testing.T) {
		sn := startSupernode(t)
		data := randomBytes(17, 600<<10)
		startPeer(t, sn, "src", map[string][]byte{"Leak Check.flac": data})
		getter := startPeer(t, sn, "getter", nil)
		id := findOne(t, getter, "leak check", 10*time.Second).ID
		out := filepath.Join(t.TempDir(), "got.flac")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := getter.Get(ctx, id, out, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("downloaded file differs (%v)", err)
		}
	})
	goleak.VerifyNone(t, opt)
}
