package content

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// testContent is a file of 4 full pieces and a short fifth, with its metadata.
func testContent(t *testing.T) ([]byte, Meta) {
	t.Helper()
	data := randBytes(4*MinPieceSize+123, 42)
	m, err := HashReader(bytes.NewReader(data), int64(len(data)), MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	return data, m
}

func piece(data []byte, m Meta, i int) []byte {
	off := int64(i) * m.PieceSize
	return data[off : off+m.PieceLen(i)]
}

func openPartial(t *testing.T, final string, m Meta) *Partial {
	t.Helper()
	p, err := OpenPartial(final, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPartialWriteVerifyFinish(t *testing.T) {
	data, m := testContent(t)
	final := filepath.Join(t.TempDir(), "song.mp3")
	p := openPartial(t, final, m)
	if p.Done() || p.Verified() != 0 || len(p.Missing()) != 5 || p.ID() != m.ID() {
		t.Fatalf("new download: done %v verified %d missing %v", p.Done(), p.Verified(), p.Missing())
	}
	if _, err := os.Stat(final + ".part.state"); err != nil {
		t.Fatalf("state not written at start: %v", err)
	}

	// Bad data: wrong bytes, wrong length, wrong index, another piece's bytes.
	bad := bytes.Clone(piece(data, m, 1))
	bad[7] ^= 1
	for name, err := range map[string]error{
		"flipped bit":   p.WritePiece(1, bad),
		"short":         p.WritePiece(1, piece(data, m, 1)[1:]),
		"other piece":   p.WritePiece(2, piece(data, m, 1)),
		"last too long": p.WritePiece(4, data[4*MinPieceSize-1:]),
	} {
		if !errors.Is(err, ErrBadPiece) {
			t.Errorf("%s: %v, want ErrBadPiece", name, err)
		}
	}
	if err := p.WritePiece(5, nil); err == nil || errors.Is(err, ErrBadPiece) {
		t.Errorf("out of range: %v", err)
	}
	if p.Verified() != 0 {
		t.Fatal("a bad piece was counted")
	}
	if part, _ := os.ReadFile(final + ".part"); bytes.Count(part, []byte{0}) != len(part) {
		t.Fatal("a bad piece was written")
	}

	for _, i := range []int{4, 0, 2} {
		if err := p.WritePiece(i, piece(data, m, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.WritePiece(2, piece(data, m, 2)); err != nil { // again: fine, no-op
		t.Fatal(err)
	}
	if got := p.Missing(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("missing %v, want [1 3]", got)
	}
	if p.Verified() != 3 || p.BytesVerified() != 2*MinPieceSize+123 || !p.Have(4) || p.Have(1) || p.Have(-1) || p.Have(5) {
		t.Errorf("verified %d bytes %d", p.Verified(), p.BytesVerified())
	}
	if got := p.Bitfield(); !bytes.Equal(got, []byte{0b10101000}) {
		t.Errorf("bitfield %08b", got)
	}
	if err := p.Finish(); err == nil || !strings.Contains(err.Error(), "2 of 5") {
		t.Errorf("Finish with pieces missing: %v", err)
	}
	for _, i := range []int{1, 3} {
		if err := p.WritePiece(i, piece(data, m, i)); err != nil {
			t.Fatal(err)
		}
	}
	if !p.Done() {
		t.Fatal("not done with every piece")
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(); err != nil {
		t.Errorf("second Finish: %v", err)
	}
	got, err := os.ReadFile(final)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("final file differs: %v", err)
	}
	for _, suffix := range []string{".part", ".part.state"} {
		if _, err := os.Stat(final + suffix); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", suffix, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close after Finish: %v", err)
	}
}

func TestPartialResume(t *testing.T) {
	data, m := testContent(t)
	final := filepath.Join(t.TempDir(), "f")
	p := openPartial(t, final, m)
	must(t, p.WritePiece(0, piece(data, m, 0)))
	must(t, p.WritePiece(3, piece(data, m, 3)))
	must(t, p.Close())
	if err := p.WritePiece(1, piece(data, m, 1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WritePiece after Close: %v", err)
	}

	p = openPartial(t, final, m)
	if got := p.Missing(); !slices.Equal(got, []int{1, 2, 4}) || p.BytesVerified() != 2*MinPieceSize {
		t.Fatalf("resumed with missing %v, %d bytes", got, p.BytesVerified())
	}
	for _, i := range p.Missing() {
		must(t, p.WritePiece(i, piece(data, m, i)))
	}
	must(t, p.Finish())
	got, _ := os.ReadFile(final)
	if !bytes.Equal(got, data) {
		t.Fatal("final file differs after resume")
	}
}

// TestPartialCrash: a download abandoned without Close (a killed process) resumes with
// every verified piece, the unsaved ones from the journal; after a power loss that kept
// the journal but not the data, the journal's claims are checked and dropped. The state
// never claims more than the data on disk.
func TestPartialCrash(t *testing.T) {
	data, m := testContent(t)
	final := filepath.Join(t.TempDir(), "f")
	p, err := OpenPartial(final, m)
	must(t, err)
	must(t, p.WritePiece(0, piece(data, m, 0)))
	must(t, p.Flush())
	must(t, p.WritePiece(1, piece(data, m, 1))) // not flushed: only in the journal
	p.f.Close()                                 // the kill: no Close, no state save
	p.jf.Close()

	p = openPartial(t, final, m)
	if got := p.Missing(); !slices.Equal(got, []int{2, 3, 4}) {
		t.Fatalf("after a kill missing %v, want [2 3 4]", got)
	}
	must(t, p.WritePiece(2, piece(data, m, 2)))
	p.f.Close()
	p.jf.Close()
	// The power loss: the journal reached the disk, piece 2's data did not.
	f, err := os.OpenFile(final+".part", os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(make([]byte, m.PieceLen(2)), 2*m.PieceSize)
	must(t, err)
	must(t, f.Close())
	p = openPartial(t, final, m)
	if got := p.Missing(); !slices.Equal(got, []int{2, 3, 4}) {
		t.Fatalf("after a power loss missing %v, want [2 3 4]", got)
	}
	st, err := readState(final + ".part.state")
	must(t, err)
	if !bytes.Equal(st.Have, []byte{0xc0}) {
		t.Fatalf("state on disk after replaying the journal: %08b, want 11000000", st.Have)
	}
	if fi, err := os.Stat(final + ".part.log"); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after it was replayed and saved: %v, %v", fi, err)
	}
	// Back to the case of a lost .part below: start from the saved first piece only.
	must(t, p.Close())
	must(t, os.Remove(final+".part.state"))
	must(t, os.Remove(final+".part"))
	p = openPartial(t, final, m)
	must(t, p.WritePiece(0, piece(data, m, 0)))
	must(t, p.Flush())

	// The state outlives a .part someone deleted, but claims nothing then.
	must(t, p.Close())
	must(t, os.Remove(final+".part"))
	p = openPartial(t, final, m)
	if p.Verified() != 0 {
		t.Fatalf("verified %d with the .part gone", p.Verified())
	}
	must(t, p.Close())
	st, err = readState(final + ".part.state")
	must(t, err)
	if !bytes.Equal(st.Have, []byte{0}) {
		t.Fatalf("state on disk still claims pieces: %08b", st.Have)
	}
}

func TestPartialRefuses(t *testing.T) {
	data, m := testContent(t)
	other, err := HashReader(bytes.NewReader(data[:1000]), 1000, MinPieceSize)
	must(t, err)
	dir := t.TempDir()

	// State of another download.
	final := filepath.Join(dir, "a")
	p := openPartial(t, final, other)
	must(t, p.Close())
	if _, err := OpenPartial(final, m); err == nil || !strings.Contains(err.Error(), "other content") {
		t.Errorf("state of another download: %v", err)
	}
	if _, err := os.Stat(final + ".part"); err != nil {
		t.Errorf("the other download's data was touched: %v", err)
	}

	// Broken state.
	final = filepath.Join(dir, "b")
	must(t, os.WriteFile(final+".part.state", []byte("\x85garbage"), 0o600))
	if _, err := OpenPartial(final, m); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("broken state: %v", err)
	}

	// A .part without a state.
	final = filepath.Join(dir, "c")
	must(t, os.WriteFile(final+".part", []byte("something"), 0o644))
	if _, err := OpenPartial(final, m); err == nil || !strings.Contains(err.Error(), "without its state") {
		t.Errorf(".part without state: %v", err)
	}
	if got, _ := os.ReadFile(final + ".part"); string(got) != "something" {
		t.Error(".part without state was changed")
	}

	// Invalid metadata.
	if _, err := OpenPartial(filepath.Join(dir, "d"), Meta{Size: 1, PieceSize: 3}); !errors.Is(err, ErrBadMeta) {
		t.Errorf("invalid meta: %v", err)
	}
}

func TestPartialFinishExisting(t *testing.T) {
	data, m := testContent(t)
	dir := t.TempDir()
	fill := func(final string) *Partial {
		p := openPartial(t, final, m)
		for i := range m.NumPieces() {
			must(t, p.WritePiece(i, piece(data, m, i)))
		}
		return p
	}

	// A different file in the way is kept, and so is the download.
	final := filepath.Join(dir, "taken")
	must(t, os.WriteFile(final, []byte("mine"), 0o644))
	if err := fill(final).Finish(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Finish over a different file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(final); string(got) != "mine" {
		t.Fatal("existing file overwritten")
	}
	p := openPartial(t, final, m) // still complete, can be finished elsewhere by the caller
	if !p.Done() {
		t.Fatal("complete download not complete after a refused Finish")
	}
	must(t, p.Close())

	// The same content already there: fine, nothing duplicated.
	final = filepath.Join(dir, "same")
	must(t, os.WriteFile(final, data, 0o644))
	must(t, fill(final).Finish())
	if _, err := os.Stat(final + ".part"); !errors.Is(err, fs.ErrNotExist) {
		t.Error(".part left behind")
	}
}

func TestPartialEmpty(t *testing.T) {
	m, err := HashReader(bytes.NewReader(nil), 0, DefaultPieceSize)
	must(t, err)
	final := filepath.Join(t.TempDir(), "empty")
	p := openPartial(t, final, m)
	if !p.Done() || len(p.Missing()) != 0 {
		t.Fatal("empty download not done")
	}
	must(t, p.Finish())
	if fi, err := os.Stat(final); err != nil || fi.Size() != 0 {
		t.Fatalf("empty final file: %v", err)
	}
}

// failingFile makes writes (and optionally syncs) fail like a full disk.
type failingFile struct {
	partFile
	mu        sync.Mutex
	failWrite bool
	failSync  bool
}

func (f *failingFile) WriteAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	fail := f.failWrite
	f.mu.Unlock()
	if fail {
		return 0, &fs.PathError{Op: "write", Path: "test", Err: syscall.ENOSPC}
	}
	return f.partFile.WriteAt(b, off)
}

func (f *failingFile) Sync() error {
	if f.failSync {
		return &fs.PathError{Op: "sync", Path: "test", Err: syscall.EIO}
	}
	return f.partFile.Sync()
}

func TestPartialDiskFull(t *testing.T) {
	data, m := testContent(t)
	final := filepath.Join(t.TempDir(), "f")
	p := openPartial(t, final, m)
	ff := &failingFile{partFile: p.f}
	p.f = ff
	must(t, p.WritePiece(0, piece(data, m, 0)))
	ff.failWrite = true
	err := p.WritePiece(1, piece(data, m, 1))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "piece 1") {
		t.Fatalf("write to a full disk: %v, want ENOSPC naming the piece", err)
	}
	if p.Have(1) || !p.Have(0) || p.Verified() != 1 {
		t.Fatal("a failed write changed what is verified")
	}

	// A failed sync saves no state claiming the unsynced piece.
	ff.failWrite, ff.failSync = false, true
	must(t, p.WritePiece(2, piece(data, m, 2)))
	if err := p.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush with failing sync: %v", err)
	}
	st, err := readState(final + ".part.state")
	must(t, err)
	if !bytes.Equal(st.Have, []byte{0}) {
		t.Fatalf("state claims %08b after a failed sync", st.Have)
	}
	ff.failSync = false
	must(t, p.Close())
	p = openPartial(t, final, m)
	if got := p.Missing(); !slices.Equal(got, []int{1, 3, 4}) {
		t.Fatalf("after disk trouble missing %v, want [1 3 4]", got)
	}
}

// TestPartialConcurrent writes every piece from several goroutines at once, duplicates
// included, for the race detector.
func TestPartialConcurrent(t *testing.T) {
	data := randBytes(64*MinPieceSize+1, 9)
	m, err := HashReader(bytes.NewReader(data), int64(len(data)), MinPieceSize)
	must(t, err)
	final := filepath.Join(t.TempDir(), "f")
	p := openPartial(t, final, m)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range m.NumPieces() {
				j := (i + g*17) % m.NumPieces()
				if err := p.WritePiece(j, piece(data, m, j)); err != nil {
					t.Error(err)
					return
				}
				p.Verified()
			}
		})
	}
	wg.Wait()
	if !p.Done() || p.BytesVerified() != m.Size {
		t.Fatalf("verified %d of %d", p.Verified(), m.NumPieces())
	}
	must(t, p.Finish())
	got, _ := os.ReadFile(final)
	if !bytes.Equal(got, data) {
		t.Fatal("final file differs")
	}
}

func BenchmarkWritePiece(b *testing.B) {
	data := randBytes(64<<20, 1)
	m, err := HashReader(bytes.NewReader(data), int64(len(data)), DefaultPieceSize)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		final := filepath.Join(b.TempDir(), "f")
		p, err := OpenPartial(final, m)
		if err != nil {
			b.Fatal(err)
		}
		for i := range m.NumPieces() {
			if err := p.WritePiece(i, piece(data, m, i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}

// A digest computed by the caller counts only when it is the piece's hash.
func TestPartialWritePieceHashed(t *testing.T) {
	data, m := testContent(t)
	p := openPartial(t, filepath.Join(t.TempDir(), "f"), m)
	good := piece(data, m, 1)
	sum := sha256.Sum256(good)
	var wrong [32]byte
	copy(wrong[:], sum[:])
	wrong[0] ^= 1
	if err := p.WritePieceHashed(1, good, wrong); !errors.Is(err, ErrBadPiece) {
		t.Fatalf("wrong digest: %v, want ErrBadPiece", err)
	}
	if p.Have(1) {
		t.Fatal("piece counted after a wrong digest")
	}
	if err := p.WritePieceHashed(2, good, sum); !errors.Is(err, ErrBadPiece) {
		t.Fatalf("digest of another piece: %v, want ErrBadPiece", err)
	}
	if err := p.WritePieceHashed(1, good, sum); err != nil || !p.Have(1) {
		t.Fatalf("right digest: %v, have %v", err, p.Have(1))
	}
}

// ReadAt gives back verified pieces and refuses the rest.
func TestPartialReadAt(t *testing.T) {
	data := make([]byte, 3*16384+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	m, err := HashReader(bytes.NewReader(data), int64(len(data)), 16384)
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenPartial(filepath.Join(t.TempDir(), "f"), m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.WritePiece(3, data[3*16384:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 50)
	if err := p.ReadAt(3, 10, buf); err != nil || !bytes.Equal(buf, data[3*16384+10:3*16384+60]) {
		t.Fatalf("read verified piece: %v", err)
	}
	if err := p.ReadAt(0, 0, buf); !errors.Is(err, ErrNotVerified) {
		t.Fatalf("read unverified piece: %v", err)
	}
	if err := p.ReadAt(3, 60, buf); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read past the last piece's end: %v", err)
	}
	if err := p.ReadAt(4, 0, buf); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read piece 4 of 4: %v", err)
	}
	p.Close()
	if err := p.ReadAt(3, 0, buf); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}
