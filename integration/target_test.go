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

// TestRenamedFileIsPublishedAgain: a file renamed in the share folder is
// found by its new name after a rescan, no longer by its old one, and a
// download saves it under the new name. (A file held by several sources
// keeps the name the index first got while any of them holds it.)
func TestRenamedFileIsPublishedAgain(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(5, 1<<20)
	a := startPeer(t, sn, "a", map[string][]byte{"oldname.mp3": data})
	b := startPeer(t, sn, "b", nil)
	id := findOne(t, b, "oldname", 10*time.Second).ID
	// A download makes a's swarm of the file, which holds its name; the
	// downloader then leaves, so a is the file's only source again.
	first := startPeer(t, sn, "first", nil)
	if _, err := first.Get(context.Background(), id, filepath.Join(t.TempDir(), "first.mp3"), nil); err != nil {
		t.Fatal(err)
	}
	first.Close()
	eventually(t, raceSlowdown*10*time.Second, "a to be the only source", func() bool {
		h, _ := search(t, b, "oldname")
		return len(h) == 1 && len(h[0].Sources) == 1
	})
	share := a.Status().ShareDir
	if err := os.Rename(filepath.Join(share, "oldname.mp3"), filepath.Join(share, "newname.mp3")); err != nil {
		t.Fatal(err)
	}
	if err := a.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, raceSlowdown*10*time.Second, "the new name to be found and the old one not", func() bool {
		nh, _ := search(t, b, "newname")
		oh, _ := search(t, b, "oldname")
		return len(nh) == 1 && nh[0].Name == "newname.mp3" && nh[0].ID == id && len(oh) == 0
	})
	c := startPeer(t, sn, "c", nil)
	path, err := c.Get(context.Background(), id, t.TempDir(), nil)
	if err != nil || filepath.Base(path) != "newname.mp3" {
		t.Fatalf("download of the renamed file: %q, %v; want it saved as newname.mp3", path, err)
	}
}
