package swarm

import (
	"os"
	"path/filepath"
	"testing"

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
