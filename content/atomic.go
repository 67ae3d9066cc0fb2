package content

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFileAtomic replaces path with data so that a crash leaves either the old file or the
// new one, never a torn mix (renameio: a temporary file beside it, fsynced, renamed over
// it). The temporary file is hidden so that a share scan of the same folder never picks
// it up. syncDir also makes the rename itself durable.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode, syncDir bool) error {
	dir := filepath.Dir(path)
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(perm))
	if err != nil {
		return err
	}
	defer f.Cleanup() // a no-op once replaced
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if syncDir {
		return syncPath(dir)
	}
	return nil
}

// syncPath fsyncs a directory so that entries created or renamed in it survive a crash.
func syncPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Preallocate reserves size bytes for f, so that a full disk shows before any
// data is written (a no-op where the file system cannot reserve).
func Preallocate(f *os.File, size int64) error { return preallocate(f, size) }

// FreeSpace is how many bytes can still be written on the file system that
// holds dir, or errors.ErrUnsupported where the platform cannot tell.
func FreeSpace(dir string) (int64, error) { return freeSpace(dir) }
