package content

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/supernet-p2p/supernet/content/contenttest"
	"github.com/supernet-p2p/supernet/protocol"
)

// old is an mtime far enough back that cache entries are trusted (see racyWindow).
var old = time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// openShare opens a share whose hashing is counted.
func openShare(t *testing.T, dir, cache string) (*Share, *atomic.Int64) {
	t.Helper()
	s, err := OpenShare(dir, cache, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var n atomic.Int64
	s.hashFn = func(ctx context.Context, p string) (Meta, error) {
		n.Add(1)
		return hashFile(ctx, p)
	}
	return s, &n
}

func scan(t *testing.T, s *Share) (added, removed int) {
	t.Helper()
	added, removed, err := s.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return added, removed
}

func relPaths(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.RelPath)
	}
	return out
}

func TestShareScan(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	a := randBytes(3*DefaultPieceSize+17, 1)
	writeFile(t, filepath.Join(dir, "a.bin"), a)
	writeFile(t, filepath.Join(dir, "sub", "b.txt"), []byte("b"))
	writeFile(t, filepath.Join(dir, "sub", "empty"), nil)
	writeFile(t, filepath.Join(dir, ".hidden"), []byte("h"))
	writeFile(t, filepath.Join(dir, ".hiddendir", "x"), []byte("x"))
	writeFile(t, filepath.Join(dir, "dl.mp3.part"), []byte("p"))
	writeFile(t, filepath.Join(dir, "dl.mp3.part.state"), []byte("s"))
	writeFile(t, filepath.Join(outside, "secret"), []byte("secret"))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "out-link")))
	must(t, os.Symlink(outside, filepath.Join(dir, "out-dir")))
	must(t, os.Symlink("a.bin", filepath.Join(dir, "in-link")))
	must(t, os.Symlink("sub", filepath.Join(dir, "sub-link")))
	must(t, os.Symlink("nowhere", filepath.Join(dir, "dangling")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	cache := filepath.Join(dir, "cache.msgpack") // inside the share: must not share itself

	s, hashes := openShare(t, dir, cache)
	if got := s.Files(); len(got) != 0 {
		t.Fatalf("files before the first scan: %v", relPaths(got))
	}
	added, removed := scan(t, s)
	want := []string{"a.bin", "in-link", "sub/b.txt", "sub/empty"}
	if got := relPaths(s.Files()); !equalStrings(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
	if added != 4 || removed != 0 || hashes.Load() != 4 {
		t.Errorf("added %d removed %d hashed %d, want 4 0 4", added, removed, hashes.Load())
	}

	wantMeta, err := HashFile(filepath.Join(dir, "a.bin"))
	must(t, err)
	f, ok := s.Get(wantMeta.ID())
	if !ok || f.RelPath != "a.bin" || f.Name != "a.bin" || f.Path != filepath.Join(s.dir, "a.bin") ||
		!bytes.Equal(f.Meta.Hashes, wantMeta.Hashes) || !f.ModTime.Equal(old) {
		t.Fatalf("Get(a.bin) = %+v, %v", f, ok)
	}
	for _, f := range s.Files() {
		if f.RelPath == "in-link" && (f.ID != wantMeta.ID() || f.Path != filepath.Join(s.dir, "a.bin")) {
			t.Errorf("in-link = %+v, want a.bin's content and path", f)
		}
	}

	// Reading for uploads: whole, across a piece boundary, at the end, past it.
	got := make([]byte, len(a))
	if n, err := s.ReadAt(f.ID, got, 0); n != len(a) || err != nil || !bytes.Equal(got, a) {
		t.Fatalf("ReadAt whole = %d, %v", n, err)
	}
	buf := make([]byte, 100)
	if n, err := s.ReadAt(f.ID, buf, DefaultPieceSize-50); n != 100 || err != nil || !bytes.Equal(buf, a[DefaultPieceSize-50:DefaultPieceSize+50]) {
		t.Fatalf("ReadAt across pieces = %d, %v", n, err)
	}
	if n, err := s.ReadAt(f.ID, buf, int64(len(a)-10)); n != 10 || err != io.EOF || !bytes.Equal(buf[:10], a[len(a)-10:]) {
		t.Fatalf("ReadAt at the end = %d, %v; want 10, EOF", n, err)
	}
	if n, err := s.ReadAt(f.ID, buf, int64(len(a))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt past the end = %d, %v", n, err)
	}
	if _, err := s.ReadAt(f.ID, buf, -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
	if _, err := s.ReadAt(protocol.ContentID{1}, buf, 0); !errors.Is(err, ErrNotShared) {
		t.Fatalf("ReadAt of unknown content: %v, want ErrNotShared", err)
	}

	// Nothing changed: nothing is hashed, added or removed.
	if added, removed := scan(t, s); added != 0 || removed != 0 || hashes.Load() != 4 {
		t.Errorf("rescan: added %d removed %d hashed %d", added, removed, hashes.Load())
	}
}

func TestShareRescan(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keep"), []byte("keep"))
	writeFile(t, filepath.Join(dir, "gone"), []byte("gone"))
	writeFile(t, filepath.Join(dir, "edit"), []byte("edit v1"))
	s, hashes := openShare(t, dir, filepath.Join(t.TempDir(), "cache"))
	scan(t, s)
	gone := fileByRel(t, s, "gone")
	edit := fileByRel(t, s, "edit")
	buf := make([]byte, 4)
	if _, err := s.ReadAt(gone.ID, buf, 0); err != nil { // leaves a handle open
		t.Fatal(err)
	}

	must(t, os.Remove(filepath.Join(dir, "gone")))
	writeFile(t, filepath.Join(dir, "edit"), []byte("edit v2"))
	must(t, os.Chtimes(filepath.Join(dir, "edit"), old.Add(time.Second), old.Add(time.Second)))
	writeFile(t, filepath.Join(dir, "new"), []byte("new"))
	hashes.Store(0)
	added, removed := scan(t, s)
	if added != 2 || removed != 2 || hashes.Load() != 2 {
		t.Errorf("added %d removed %d hashed %d, want 2 2 2 (edit counts in both)", added, removed, hashes.Load())
	}
	if got := relPaths(s.Files()); !equalStrings(got, []string{"edit", "keep", "new"}) {
		t.Errorf("files = %q", got)
	}
	if _, ok := s.Get(gone.ID); ok {
		t.Error("removed file still shared")
	}
	if _, err := s.ReadAt(gone.ID, buf, 0); !errors.Is(err, ErrNotShared) {
		t.Errorf("ReadAt of removed file: %v, want ErrNotShared", err)
	}
	if _, ok := s.Get(edit.ID); ok {
		t.Error("old content of edited file still shared")
	}
	if n := s.handles.open(); n != 0 {
		t.Errorf("%d handles still open to removed files", n)
	}
}

// TestShareReplacedBeforeRescan: a file replaced between scans is not served as the old
// content.
func TestShareReplacedBeforeRescan(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	writeFile(t, p, []byte("original"))
	s, _ := openShare(t, dir, "")
	scan(t, s)
	f := fileByRel(t, s, "f")
	writeFile(t, p+".new", []byte("replaced"))
	must(t, os.Rename(p+".new", p))
	if _, err := s.ReadAt(f.ID, make([]byte, 8), 0); !errors.Is(err, ErrNotShared) {
		t.Fatalf("ReadAt of a replaced file: %v, want ErrNotShared", err)
	}
}

// TestShareCacheRestart is the point of the cache: a restart hashes only what changed.
func TestShareCacheRestart(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(t.TempDir(), "state", "cache") // parent made on save
	for _, name := range []string{"a", "b", "c/d"} {
		writeFile(t, filepath.Join(dir, name), randBytes(1000, uint64(len(name))))
	}
	s, hashes := openShare(t, dir, cache)
	scan(t, s)
	if hashes.Load() != 3 {
		t.Fatalf("first scan hashed %d, want 3", hashes.Load())
	}
	before := s.Files()
	s.Close()
	fi, err := os.Stat(cache)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}

	s, hashes = openShare(t, dir, cache)
	added, _ := scan(t, s)
	if hashes.Load() != 0 || added != 3 {
		t.Fatalf("restart hashed %d (want 0), added %d (want 3)", hashes.Load(), added)
	}
	after := s.Files()
	for i := range before {
		if before[i].ID != after[i].ID || before[i].Tags != after[i].Tags || !before[i].ModTime.Equal(after[i].ModTime) {
			t.Errorf("%s differs after restart", before[i].RelPath)
		}
	}
	s.Close()

	// Same size, new content, new mtime: re-hashed after a restart.
	writeFile(t, filepath.Join(dir, "b"), randBytes(1000, 99))
	must(t, os.Chtimes(filepath.Join(dir, "b"), old.Add(time.Nanosecond), old.Add(time.Nanosecond)))
	s, hashes = openShare(t, dir, cache)
	scan(t, s)
	if hashes.Load() != 1 {
		t.Fatalf("restart after a change hashed %d, want 1", hashes.Load())
	}
	want, _ := HashFile(filepath.Join(dir, "b"))
	if got := fileByRel(t, s, "b"); got.ID != want.ID() {
		t.Error("changed file has its old ID")
	}
}

// TestShareRacyFile: a file hashed within racyWindow of its mtime is hashed again, since a
// write in the same mtime tick would otherwise go unseen.
func TestShareRacyFile(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "fresh"), []byte("x"), 0o644))
	s, hashes := openShare(t, dir, "")
	scan(t, s)
	scan(t, s)
	if hashes.Load() != 2 {
		t.Fatalf("fresh file hashed %d times in two scans, want 2", hashes.Load())
	}
}

func TestShareCorruptCache(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), []byte("a"))
	writeFile(t, filepath.Join(dir, "b"), []byte("b"))
	good := filepath.Join(t.TempDir(), "cache")
	s, _ := openShare(t, dir, good)
	scan(t, s)
	s.Close()
	valid, err := os.ReadFile(good)
	must(t, err)

	// A cache claiming a 4 GiB map must not allocate it.
	huge := []byte{0xdf, 0xff, 0xff, 0xff, 0xff}
	tests := map[string][]byte{
		"garbage":   []byte("this is not msgpack at all"),
		"truncated": valid[:len(valid)/2],
		"empty":     nil,
		"huge map":  append([]byte{0x83, 0xa1, 'v', 0x01, 0xa1, 'f'}, huge...),
		"version":   bytes.Replace(valid, []byte{0xa1, 'v', 0x01}, []byte{0xa1, 'v', 0x7f}, 1),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			must(t, os.WriteFile(cache, data, 0o600))
			s, hashes := openShare(t, dir, cache)
			scan(t, s)
			if hashes.Load() != 2 || len(s.Files()) != 2 {
				t.Fatalf("hashed %d, files %d; want 2, 2", hashes.Load(), len(s.Files()))
			}
			s.Close()
			// The rebuilt cache works.
			s, hashes = openShare(t, dir, cache)
			scan(t, s)
			if hashes.Load() != 0 {
				t.Fatalf("after rebuild hashed %d, want 0", hashes.Load())
			}
		})
	}

	// A cache made for another folder is not trusted for this one.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "a"), []byte("A"))
	s, hashes := openShare(t, other, good)
	scan(t, s)
	if hashes.Load() != 1 {
		t.Fatalf("cache of another folder: hashed %d, want 1", hashes.Load())
	}
}

func TestShareCancel(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), []byte("a"))
	writeFile(t, filepath.Join(dir, "b"), []byte("b"))
	cache := filepath.Join(t.TempDir(), "cache")
	s, hashes := openShare(t, dir, cache)
	ctx, cancel := context.WithCancel(context.Background())
	s.hashFn = func(c context.Context, p string) (Meta, error) {
		hashes.Add(1)
		defer cancel() // cancel the scan after the first file
		return hashFile(c, p)
	}
	if _, _, err := s.Scan(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
	if len(s.Files()) != 0 {
		t.Fatal("cancelled scan published files")
	}
	s.Close()
	// The file hashed before the cancel is in the cache.
	s, hashes = openShare(t, dir, cache)
	scan(t, s)
	if hashes.Load() != 1 || len(s.Files()) != 2 {
		t.Fatalf("after cancel: hashed %d, files %d; want 1, 2", hashes.Load(), len(s.Files()))
	}
}

func TestShareHandlesBounded(t *testing.T) {
	dir := t.TempDir()
	for i := range maxOpenFiles + 10 {
		writeFile(t, filepath.Join(dir, "f"+string(rune('A'+i))), []byte{byte(i)})
	}
	s, _ := openShare(t, dir, "")
	scan(t, s)
	buf := make([]byte, 1)
	for range 2 {
		for _, f := range s.Files() {
			if _, err := s.ReadAt(f.ID, buf, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if n := s.handles.open(); n > maxOpenFiles {
				t.Fatalf("%d handles open, max %d", n, maxOpenFiles)
			}
		}
	}
	s.Close()
	s.Close()
	if n := s.handles.open(); n != 0 {
		t.Fatalf("%d handles open after Close", n)
	}
	if _, err := s.ReadAt(s.Files()[0].ID, buf, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ReadAt after Close: %v", err)
	}
	if _, _, err := s.Scan(context.Background()); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
}

// TestShareConcurrent runs reads against rescans for the race detector.
func TestShareConcurrent(t *testing.T) {
	dir := t.TempDir()
	data := randBytes(4*MinPieceSize, 3)
	for i := range 40 {
		writeFile(t, filepath.Join(dir, "f"+string(rune('A'+i))), append([]byte{byte(i)}, data...))
	}
	s, _ := openShare(t, dir, filepath.Join(t.TempDir(), "cache"))
	scan(t, s)
	files := s.Files()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			buf := make([]byte, MinPieceSize)
			for i := range 200 {
				f := files[(i*7+g)%len(files)]
				n, err := s.ReadAt(f.ID, buf, int64(i%4)*MinPieceSize)
				if err != nil || n != len(buf) {
					t.Errorf("ReadAt: %d, %v", n, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, _, err := s.Scan(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

func TestShareTags(t *testing.T) {
	dir := t.TempDir()
	mp3 := filepath.Join(dir, "Hey Jude.mp3")
	must(t, contenttest.WriteID3v2MP3(mp3, "Hey Jude", "The Beatles", "Past Masters", 5000, 1))
	flac := filepath.Join(dir, "song.FLAC")
	must(t, os.WriteFile(flac, flacWithComments(map[string]string{
		"TITLE": "Blåbær", "ARTIST": "Kari", "ALBUM": "Skog", "GENRE": "Folk", "DATE": "1999",
	}), 0o644))
	// ID3 bytes in a file that is not audio by name: not read.
	notAudio := filepath.Join(dir, "tagged.txt")
	must(t, contenttest.WriteID3v2MP3(notAudio, "T", "A", "L", 100, 1))
	// Audio by name, broken inside: shared, without tags.
	broken := filepath.Join(dir, "broken.mp3")
	must(t, os.WriteFile(broken, []byte("ID3\x03\x00\x00\x7f\x7f\x7f\x7fTIT2\xff\xff\xff\xff\x00\x00"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "noise.ogg"), randBytes(300, 5), 0o644))

	s, _ := openShare(t, dir, "")
	scan(t, s)
	want := map[string]protocol.Tags{
		"Hey Jude.mp3": {Title: "Hey Jude", Artist: "The Beatles", Album: "Past Masters"},
		"song.FLAC":    {Title: "Blåbær", Artist: "Kari", Album: "Skog", Genre: "Folk", Year: 1999},
		"tagged.txt":   {},
		"broken.mp3":   {},
		"noise.ogg":    {},
	}
	files := s.Files()
	if len(files) != len(want) {
		t.Fatalf("files = %q", relPaths(files))
	}
	for _, f := range files {
		if f.Tags != want[f.RelPath] {
			t.Errorf("%s: tags %+v, want %+v", f.RelPath, f.Tags, want[f.RelPath])
		}
	}
}

func TestReadTags(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.mp3")
	must(t, contenttest.WriteID3v2MP3(p, "東京 Night", "Ærø", "  padded\x00\x00", 1000, 2))
	tags, err := ReadTags(p)
	must(t, err)
	if want := (protocol.Tags{Title: "東京 Night", Artist: "Ærø", Album: "padded"}); tags != want {
		t.Errorf("tags = %+v, want %+v", tags, want)
	}
	if _, err := ReadTags(filepath.Join(dir, "missing.mp3")); err == nil {
		t.Error("ReadTags of a missing file succeeded")
	}
}

func TestCleanTag(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), maxTagLen)) // 2 bytes a rune
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{" x\x00\x00", "x"},
		{"a\x01b\nc", "abc"},
		{"bad \xff utf8", "bad  utf8"},
		{long, long[:maxTagLen]},
		{"a" + long, "a" + long[:maxTagLen-2]},
	}
	for _, tt := range tests {
		if got := cleanTag(tt.in); got != tt.want {
			t.Errorf("cleanTag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// flacWithComments builds a FLAC header (STREAMINFO, then a last VORBIS_COMMENT block)
// followed by a few bytes standing in for audio frames.
func flacWithComments(comments map[string]string) []byte {
	var vc bytes.Buffer
	le32 := func(n int) { binary.Write(&vc, binary.LittleEndian, uint32(n)) }
	vendor := "supernet test"
	le32(len(vendor))
	vc.WriteString(vendor)
	le32(len(comments))
	for k, v := range comments {
		le32(len(k) + 1 + len(v))
		vc.WriteString(k + "=" + v)
	}
	out := []byte("fLaC")
	out = append(out, 0, 0, 0, 34) // STREAMINFO, 34 bytes
	out = append(out, make([]byte, 34)...)
	n := vc.Len()
	out = append(out, 0x80|4, byte(n>>16), byte(n>>8), byte(n)) // last block: VORBIS_COMMENT
	out = append(out, vc.Bytes()...)
	return append(out, 0xff, 0xf8, 0x69, 0x08, 0, 0, 0, 0)
}

func fileByRel(t *testing.T, s *Share, rel string) File {
	t.Helper()
	for _, f := range s.Files() {
		if f.RelPath == rel {
			return f
		}
	}
	t.Fatalf("%s not shared", rel)
	return File{}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// open is the number of handles the cache holds.
func (c *handleCache) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
