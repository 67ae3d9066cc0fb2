package content

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// refHashes hashes pieces the obvious way, to check HashReader's buffering against.
func refHashes(data []byte, pieceSize int) []byte {
	var out []byte
	for off := 0; off < len(data); off += pieceSize {
		h := sha256.Sum256(data[off:min(off+pieceSize, len(data))])
		out = append(out, h[:]...)
	}
	return out
}

func TestPieceSizeFor(t *testing.T) {
	const KiB, MiB, GiB = int64(1 << 10), int64(1 << 20), int64(1 << 30)
	tests := []struct {
		size, want int64
	}{
		{0, 256 * KiB},
		{1, 256 * KiB},
		{4 * GiB, 256 * KiB}, // exactly MaxPieces pieces
		{4*GiB + 1, 512 * KiB},
		{8 * GiB, 512 * KiB},
		{8*GiB + 1, 1 * MiB},
		{1 << 40, 64 * MiB},
		{1<<40 + 1, 64 * MiB}, // too big for any piece size; Validate says so
	}
	for _, tt := range tests {
		if got := PieceSizeFor(tt.size); got != tt.want {
			t.Errorf("PieceSizeFor(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}

func TestMetaPieces(t *testing.T) {
	const ps = MinPieceSize
	tests := []struct {
		size     int64
		pieces   int
		lastLen  int64
		firstLen int64
	}{
		{0, 0, 0, 0},
		{1, 1, 1, 1},
		{ps - 1, 1, ps - 1, ps - 1},
		{ps, 1, ps, ps},
		{ps + 1, 2, 1, ps},
		{3*ps + 5, 4, 5, ps},
	}
	for _, tt := range tests {
		m := Meta{Size: tt.size, PieceSize: ps, Hashes: make([]byte, 32*tt.pieces)}
		if got := m.NumPieces(); got != tt.pieces {
			t.Errorf("size %d: NumPieces = %d, want %d", tt.size, got, tt.pieces)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("size %d: Validate: %v", tt.size, err)
		}
		if got := m.PieceLen(0); got != tt.firstLen {
			t.Errorf("size %d: PieceLen(0) = %d, want %d", tt.size, got, tt.firstLen)
		}
		if tt.pieces > 0 {
			if got := m.PieceLen(tt.pieces - 1); got != tt.lastLen {
				t.Errorf("size %d: last PieceLen = %d, want %d", tt.size, got, tt.lastLen)
			}
		}
		var sum int64
		for i := range tt.pieces {
			sum += m.PieceLen(i)
		}
		if sum != tt.size {
			t.Errorf("size %d: piece lengths sum to %d", tt.size, sum)
		}
		if m.PieceLen(-1) != 0 || m.PieceLen(tt.pieces) != 0 || m.PieceHash(tt.pieces) != [32]byte{} {
			t.Errorf("size %d: out-of-range piece not zero", tt.size)
		}
	}
}

func TestMetaValidate(t *testing.T) {
	ok := func(size, ps int64) Meta {
		return Meta{Size: size, PieceSize: ps, Hashes: make([]byte, 32*numPieces(size, ps))}
	}
	tests := []struct {
		name string
		m    Meta
		ok   bool
	}{
		{"empty", ok(0, DefaultPieceSize), true},
		{"one piece", ok(10, MinPieceSize), true},
		{"max piece size", ok(1, MaxPieceSize), true},
		{"max pieces", ok(MaxPieces*MinPieceSize, MinPieceSize), true},
		{"negative size", Meta{Size: -1, PieceSize: DefaultPieceSize}, false},
		{"piece size zero", Meta{Size: 0, PieceSize: 0}, false},
		{"piece size too small", ok(10, MinPieceSize/2), false},
		{"piece size too big", ok(10, MaxPieceSize*2), false},
		{"piece size not power of two", ok(10, 3*MinPieceSize), false},
		{"too many pieces", ok(MaxPieces*MinPieceSize+1, MinPieceSize), false},
		{"huge size", Meta{Size: 1<<63 - 1, PieceSize: MinPieceSize}, false},
		{"hashes short", Meta{Size: 10, PieceSize: MinPieceSize, Hashes: make([]byte, 31)}, false},
		{"hashes long", Meta{Size: 10, PieceSize: MinPieceSize, Hashes: make([]byte, 64)}, false},
		{"hashes for empty file", Meta{Size: 0, PieceSize: MinPieceSize, Hashes: make([]byte, 32)}, false},
	}
	for _, tt := range tests {
		err := tt.m.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadMeta) {
			t.Errorf("%s: %v does not wrap ErrBadMeta", tt.name, err)
		}
	}
}

func TestHashReader(t *testing.T) {
	tests := []struct {
		size      int
		pieceSize int64
	}{
		{0, MinPieceSize},
		{1, MinPieceSize},
		{MinPieceSize - 1, MinPieceSize},
		{MinPieceSize, MinPieceSize},
		{MinPieceSize + 1, MinPieceSize},
		{3*MinPieceSize + 5, MinPieceSize},
		{hashBufSize + 7, MinPieceSize},       // pieces across buffer refills
		{2*hashBufSize + 3, 2 * hashBufSize},  // one piece spanning several buffers
		{3*hashBufSize + 11, 2 * hashBufSize}, // and a short last piece spanning two
	}
	for _, tt := range tests {
		data := randBytes(tt.size, uint64(tt.size))
		want := refHashes(data, int(tt.pieceSize))
		for name, r := range map[string]io.Reader{
			"whole": bytes.NewReader(data),
			"half":  iotest.HalfReader(bytes.NewReader(data)),
		} {
			m, err := HashReader(r, int64(tt.size), tt.pieceSize)
			if err != nil {
				t.Fatalf("size %d %s: %v", tt.size, name, err)
			}
			if !bytes.Equal(m.Hashes, want) {
				t.Errorf("size %d piece %d %s: hashes differ", tt.size, tt.pieceSize, name)
			}
			if err := m.Validate(); err != nil {
				t.Errorf("size %d: result does not validate: %v", tt.size, err)
			}
		}
	}
}

func TestHashReaderShort(t *testing.T) {
	_, err := HashReader(bytes.NewReader(make([]byte, 100)), 101, MinPieceSize)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short reader: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := HashReader(bytes.NewReader(nil), 10, 1000); !errors.Is(err, ErrBadMeta) {
		t.Fatalf("bad piece size: %v, want ErrBadMeta", err)
	}
}

// TestContentIDGolden pins the canonical encoding: changing it renames every file on the
// network, so it must be deliberate (and bump the domain string). The values were checked
// against an independent Python implementation of the encoding.
func TestContentIDGolden(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{"", "66dc5a1d1c79f3c43566489a5f55918dc2d09365c521dff0902dbd9c417b6454"},
		{"hello supernet\n", "ec127299f15cd4fbd93d3de3600dc9dc99669eedf99af6c190f25af19676f302"},
	}
	for _, tt := range tests {
		m, err := HashReader(bytes.NewReader([]byte(tt.data)), int64(len(tt.data)), DefaultPieceSize)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.ID().String(); got != tt.want {
			t.Errorf("ID(%q) = %s, want %s", tt.data, got, tt.want)
		}
	}
	// The encoding by hand: domain, size, piece size, hashes.
	m := Meta{Size: 3, PieceSize: MinPieceSize}
	h := sha256.Sum256([]byte("abc"))
	m.Hashes = h[:]
	enc := append([]byte("supernet content v1\n"), 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x40, 0)
	enc = append(enc, h[:]...)
	if m.ID() != sha256.Sum256(enc) {
		t.Error("ID is not SHA-256 of the documented encoding")
	}
}

func TestHashFile(t *testing.T) {
	for _, size := range []int{0, 1, DefaultPieceSize + 1} {
		data := randBytes(size, 7)
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(size) || m.PieceSize != DefaultPieceSize || !bytes.Equal(m.Hashes, refHashes(data, DefaultPieceSize)) {
			t.Errorf("size %d: HashFile = %+v", size, m)
		}
	}
	if _, err := HashFile(t.TempDir()); err == nil {
		t.Error("HashFile of a directory succeeded")
	}
}

func BenchmarkHashFile(b *testing.B) {
	const size = 64 << 20
	p := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(p, randBytes(size, 1), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		if _, err := HashFile(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256 is the ceiling for BenchmarkHashFile: one core hashing memory.
func BenchmarkSHA256(b *testing.B) {
	buf := randBytes(DefaultPieceSize, 1)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sha256.Sum256(buf)
	}
}
