package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
)

// TestDownloadTargets: a named file that exists fails the download before any
// byte moves and is left alone; --overwrite replaces it; in a folder the
// download takes a free name; a path ending in a slash is a folder, made if
// missing. (A download that fails with nothing verified leaving no .part is
// TestAbortCleansUpEmptyDownload, in swarm.)
func TestDownloadTargets(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(4, 3<<20)
	startPeer(t, sn, "a", map[string][]byte{"song.mp3": data})
	b := startPeer(t, sn, "b", nil)
	id := findOne(t, b, "song", 10*time.Second).ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	mine := []byte("my own song, not to be lost")
	named := filepath.Join(dir, "song.mp3")
	if err := os.WriteFile(named, mine, 0o644); err != nil {
		t.Fatal(err)
	}

	var states []string
	_, err := b.Download(ctx, id, apitype.Target{Out: named}, func(p apitype.Progress) { states = append(states, p.State) })
	if !errors.Is(err, peer.ErrExists) || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("download onto an existing file: %v, want ErrExists naming --overwrite", err)
	}
	if len(states) > 0 || b.Status().Downloaded > 0 {
		t.Errorf("the refused download went through %v and fetched %d bytes", states, b.Status().Downloaded)
	}
	if got, _ := os.ReadFile(named); !bytes.Equal(got, mine) {
		t.Fatal("the existing file was changed")
	}
	if left, _ := filepath.Glob(named + ".part*"); len(left) > 0 {
		t.Errorf("the refused download left %v", left)
	}

	// Into the folder that holds song.mp3: the first free name.
	path, err := b.Download(ctx, id, apitype.Target{Out: dir}, nil)
	if err != nil || path != filepath.Join(dir, "song (1).mp3") {
		t.Fatalf("download into a folder with song.mp3 in it: %q, %v; want song (1).mp3", path, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Error("song (1).mp3 is not the download")
	}
	if got, _ := os.ReadFile(named); !bytes.Equal(got, mine) {
		t.Fatal("the existing file was changed by a download beside it")
	}

	// --overwrite replaces the named file.
	if path, err = b.Download(ctx, id, apitype.Target{Out: named, Overwrite: true}, nil); err != nil || path != named {
		t.Fatalf("overwrite: %q, %v", path, err)
	}
	if got, _ := os.ReadFile(named); !bytes.Equal(got, data) {
		t.Error("--overwrite did not replace the file")
	}

	// A trailing slash is a folder, made if missing.
	sub := filepath.Join(dir, "new", "music") + string(filepath.Separator)
	if path, err = b.Download(ctx, id, apitype.Target{Out: sub}, nil); err != nil || path != filepath.Join(sub, "song.mp3") {
		t.Fatalf("download to %s: %q, %v", sub, path, err)
	}

}
