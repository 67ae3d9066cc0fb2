package content

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// flacWithPicture is a FLAC header whose last block is a PICTURE claiming
// dataLen bytes of picture but holding only four.
func flacWithPicture(dataLen uint32) []byte {
	var pic []byte
	be := func(n uint32) { pic = binary.BigEndian.AppendUint32(pic, n) }
	be(3) // front cover
	be(9)
	pic = append(pic, "image/png"...)
	be(0)                                  // no description
	pic = append(pic, make([]byte, 16)...) // width, height, depth, colours
	be(dataLen)
	pic = append(pic, 1, 2, 3, 4)
	out := []byte("fLaC")
	out = append(out, 0, 0, 0, 34)
	out = append(out, make([]byte, 34)...)
	n := len(pic)
	out = append(out, 0x80|6, byte(n>>16), byte(n>>8), byte(n))
	return append(append(out, pic...), 0xff, 0xf8, 0, 0)
}

// A picture length of 4 GiB in a FLAC file must not reach the tag reader, which
// would allocate it.
func TestReadTagsHostilePicture(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.flac")
	must(t, os.WriteFile(bad, flacWithPicture(0xfffffff0), 0o644))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadTags(bad)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errUnsafeTags) {
		t.Fatalf("hostile picture: %v, want errUnsafeTags", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("reading the hostile file allocated %d bytes", d)
	}
	good := filepath.Join(dir, "good.flac")
	must(t, os.WriteFile(good, flacWithPicture(4), 0o644))
	if err := checkTagInput(mustOpen(t, good)); err != nil {
		t.Fatalf("honest picture refused: %v", err)
	}
	ogg := filepath.Join(dir, "pic.ogg")
	must(t, os.WriteFile(ogg, append([]byte("OggS\x00\x02"), "....METADATA_BLOCK_PICTURE=AAAA"...), 0o644))
	if _, err := ReadTags(ogg); !errors.Is(err, errUnsafeTags) {
		t.Fatalf("ogg with picture: %v, want errUnsafeTags", err)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
