package swarm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// Names come from other peers: whatever they say, the file lands inside the
// folder the user chose.
func TestOutputPath(t *testing.T) {
	dir := t.TempDir()
	cid := protocol.ContentID{0xab}
	cases := []struct {
		out, name, want string
	}{
		{dir, "Hey Jude.mp3", filepath.Join(dir, "Hey Jude.mp3")},
		{dir, "../../etc/passwd", filepath.Join(dir, "passwd")},
		{dir, `..\..\windows\win.ini`, filepath.Join(dir, "win.ini")},
		{dir, "/absolute/evil", filepath.Join(dir, "evil")},
		{dir, "..", filepath.Join(dir, cid.String())},
		{dir, "", filepath.Join(dir, cid.String())},
		{dir, ".hidden", filepath.Join(dir, cid.String())},
		{filepath.Join(dir, "chosen.bin"), "ignored.mp3", filepath.Join(dir, "chosen.bin")},
	}
	for _, c := range cases {
		got, err := outputPath(c.out, c.name, cid)
		if err != nil || got != c.want {
			t.Errorf("outputPath(%q, %q) = %q, %v; want %q", c.out, c.name, got, err, c.want)
		}
	}
	if _, err := outputPath(filepath.Join(dir, "missing", "f"), "x", cid); err == nil {
		t.Error("an output folder that does not exist was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := outputPath(filepath.Join(dir, "file", "f"), "x", cid); err == nil {
		t.Error("an output folder that is a file was accepted")
	}
}

// The target rules: a named file that exists is refused unless Overwrite; in
// a folder the first free "name (N).ext" is taken; a path ending in a slash is a
// folder, made if missing; a download started before resumes at its path.
func TestTargetPath(t *testing.T) {
	dir := t.TempDir()
	cid := protocol.ContentID{0xab}
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	song := write("song.mp3")
	cases := []struct {
		name string
		to   Target
		want string // empty: ErrExists
	}{
		{"named, exists", Target{Out: song}, ""},
		{"named, exists, overwrite", Target{Out: song, Overwrite: true}, song},
		{"named, free", Target{Out: filepath.Join(dir, "other.mp3")}, filepath.Join(dir, "other.mp3")},
		{"folder, exists", Target{Out: dir}, filepath.Join(dir, "song (1).mp3")},
		{"folder, exists, overwrite", Target{Out: dir, Overwrite: true}, song},
		{"new folder", Target{Out: filepath.Join(dir, "a", "b") + "/"}, filepath.Join(dir, "a", "b", "song.mp3")},
	}
	for _, c := range cases {
		got, err := TargetPath(c.to, "song.mp3", cid)
		if c.want == "" {
			if !errors.Is(err, ErrExists) {
				t.Errorf("%s: %q, %v; want ErrExists", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil || !fi.IsDir() {
		t.Errorf("the folder named with a trailing slash was not made: %v", err)
	}
	write("song (1).mp3")
	write("song (2).mp3.part.state") // another download's: passed over too
	if got, err := TargetPath(Target{Out: dir}, "song.mp3", cid); err != nil || got != filepath.Join(dir, "song (3).mp3") {
		t.Errorf("with song.mp3, song (1).mp3 and song (2).mp3 taken: %q, %v", got, err)
	}
	write("song.mp3.part.state") // a download into song.mp3 resumes there
	if got, err := TargetPath(Target{Out: song}, "song.mp3", cid); err != nil || got != song {
		t.Errorf("resume: %q, %v; want %q", got, err, song)
	}
}

// A download that ends with no verified piece leaves no files; one with a
// verified piece keeps them to resume from.
func TestAbortCleansUpEmptyDownload(t *testing.T) {
	for _, verified := range []bool{false, true} {
		sw := testSwarm(t, false)
		sw.hasMeta = false
		data := bytes.Repeat([]byte{7}, 4*swarmBlock)
		m, err := content.HashReader(bytes.NewReader(data), int64(len(data)), 2*swarmBlock)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "x.bin")
		sw.to = Target{Out: out}
		sw.mu.Lock()
		err = sw.setMetaLocked(m, "x.bin")
		part := sw.part
		sw.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if verified {
			if err := part.WritePiece(0, data[:2*swarmBlock]); err != nil {
				t.Fatal(err)
			}
		}
		sw.abort(nil)
		left, _ := filepath.Glob(out + ".part*")
		if verified && len(left) == 0 {
			t.Error("a download with a verified piece lost its files")
		}
		if !verified && len(left) > 0 {
			t.Errorf("a download with nothing verified left %v", left)
		}
	}
}
