package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/iotest"
)

func frameHeader(t MsgType, n int) []byte { return AppendHeader(nil, t, uint32(n)) }

// A header that claims the largest body costs nothing until the bytes come:
// the buffer grows with what arrived, a chunk at a time.
func TestReadBodyGrowsAsBytesArrive(t *testing.T) {
	var before, after runtime.MemStats
	const sent = 100
	in := append(frameHeader(TypeHits, MaxFrameSize), make([]byte, sent)...)
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _, err := ReadFrame(bytes.NewReader(in), nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated body: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / 100
	t.Logf("a header claiming %d bytes followed by %d: %d bytes allocated", MaxFrameSize, sent, per)
	if per > readChunk+4096 {
		t.Errorf("allocated %d bytes for %d that arrived", per, sent)
	}
}

// Bodies arrive whole whatever the reads return, in the caller's buffer when
// it can hold them.
func TestReadBodyPieces(t *testing.T) {
	for _, n := range []int{0, 1, readChunk - 1, readChunk, readChunk + 1, 3*readChunk + 7, MaxFrameSize} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i * 7)
		}
		in := append(frameHeader(TypeBlock, n), body...)
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.HalfReader(bytes.NewReader(in)), iotest.DataErrReader(bytes.NewReader(in))} {
			_, got, err := ReadFrame(r, nil)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("body of %d bytes through %T: %d bytes, %v", n, r, len(got), err)
			}
			if cap(got) > max(2*n, readChunk)+readChunk {
				t.Errorf("body of %d bytes in a buffer of %d", n, cap(got))
			}
		}
		buf := make([]byte, 0, n+10)
		_, got, err := ReadFrame(bytes.NewReader(in), buf)
		if err != nil || !bytes.Equal(got, body) || (n > 0 && &got[0] != &buf[:1][0]) {
			t.Fatalf("body of %d bytes not read into the caller's buffer: %v", n, err)
		}
	}
	if _, _, err := ReadFrame(bytes.NewReader(frameHeader(TypeBlock, MaxFrameSize+1)), nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	if _, err := ReadBody(bytes.NewReader(nil), TypeBlock, MaxFrameSize+1, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadBody of an oversized length: %v", err)
	}
}

// zeroReader returns nothing and no error, forever.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadBodyNoProgress(t *testing.T) {
	if _, err := ReadBody(zeroReader{}, TypeBlock, 10, nil); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("reader that never moves: %v", err)
	}
}

// FuzzReadFrame reads a stream of frames, each read returning as many bytes
// as the fuzzer says: a frame comes out whole or not at all, and its buffer is
// never much larger than the bytes that arrived.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte, step uint16) {
		r := &steppedReader{b: in, step: int(step%4096) + 1}
		off := 0
		for range len(in) + 1 {
			typ, body, err := ReadFrame(r, nil)
			if err != nil {
				if errors.Is(err, io.EOF) && off != len(in) {
					t.Fatalf("clean end of stream %d bytes before its end", len(in)-off)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			want := in[off+HeaderSize : off+HeaderSize+len(body)]
			if typ != MsgType(in[off]) || !bytes.Equal(body, want) || int(binary.BigEndian.Uint32(in[off+1:])) != len(body) {
				t.Fatalf("frame at %d read wrong", off)
			}
			if cap(body) > max(2*len(body), readChunk)+readChunk {
				t.Fatalf("body of %d bytes in a buffer of %d", len(body), cap(body))
			}
			off += HeaderSize + len(body)
		}
		t.Fatal("more frames than bytes")
	})
}

type steppedReader struct {
	b    []byte
	step int
}

func (r *steppedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[n:]
	return n, nil
}

const frameCorpusDir = "testdata/fuzz/FuzzReadFrame"

// TestWriteFrameFuzzCorpus rewrites FuzzReadFrame's seeds with -update-corpus:
// streams of golden frames read in steps of several sizes, and hostile
// headers. It keeps any other file there.
func TestWriteFrameFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	if err := os.MkdirAll(frameCorpusDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, in []byte, step uint16) {
		b := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nuint16(%d)\n", in, step)
		if err := os.WriteFile(filepath.Join(frameCorpusDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stream []byte
	for i, g := range goldens {
		frame := unhex(t, g.hex)
		stream = append(stream, frame...)
		if i%4 == 0 {
			write(seedName("valid", g.name), frame, uint16(i))
		}
	}
	write("valid_all_goldens_step1", stream, 0)
	write("valid_all_goldens_step7", stream, 6)
	write("valid_all_goldens_whole", stream, 4095)
	write("hostile_claims_1MiB_sends_100", append(frameHeader(TypeHits, MaxFrameSize), make([]byte, 100)...), 4095)
	write("hostile_claims_over_the_cap", frameHeader(TypeBlock, MaxFrameSize+1), 4095)
	write("hostile_claims_4GiB", []byte{byte(TypeBlock), 0xff, 0xff, 0xff, 0xff}, 4095)
	write("hostile_truncated_header", []byte{byte(TypePing), 0, 0}, 0)
	write("valid_empty_body", frameHeader(TypePing, 0), 0)
	write("valid_body_over_a_chunk", append(frameHeader(TypeBlock, readChunk+10), make([]byte, readChunk+10)...), 1000)
}

// The smallest QUIC packet that carries a ping alone must be longer than
// the 42 bytes quic-go needs before it answers with a stateless reset: its
// short header (1 byte, an empty connection ID, a 1-byte packet number),
// a STREAM frame's type and stream ID, and the 16-byte AEAD tag.
func TestPingLongEnoughForReset(t *testing.T) {
	const overhead, resetAbove = 1 + 0 + 1 + 1 + 1 + 16, 42
	for _, seq := range []uint64{0, 1, 1 << 40} {
		b, err := AppendFrame(nil, NewPing(seq))
		if err != nil {
			t.Fatal(err)
		}
		if n := overhead + len(b); n <= resetAbove {
			t.Errorf("ping %d: smallest packet %d bytes, not over %d", seq, n, resetAbove)
		}
		m, err := Decode(TypePing, b[HeaderSize:])
		if err != nil || m.(*Ping).Seq != seq {
			t.Errorf("ping %d decodes as %v, %v", seq, m, err)
		}
	}
}
