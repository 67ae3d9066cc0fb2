package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// pipe is a stream with read deadlines: the reader end of a net.Pipe, and the
// writer end for the test to play the other side.
func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	r, w := net.Pipe()
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func frame(t *testing.T, m protocol.Message) []byte {
	t.Helper()
	b, err := protocol.AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send writes the pieces in order from another goroutine, pausing before each
// piece as long as told.
func send(w net.Conn, pieces ...any) {
	go func() {
		for _, p := range pieces {
			switch p := p.(type) {
			case time.Duration:
				time.Sleep(p) // the other side's pace, not a wait for an event
			case []byte:
				if _, err := w.Write(p); err != nil {
					return
				}
			}
		}
	}()
}

var testFrames = FrameTimeouts{Fixed: 150 * time.Millisecond, MinRate: 512 << 10, First: 150 * time.Millisecond}

func TestFrameReaderDeadlines(t *testing.T) {
	ping := func(seq uint64) []byte { return frame(t, &protocol.Ping{Seq: seq}) }
	big := frame(t, &protocol.Summary{Level: 0, Depth: 1, Filter: make([]byte, 200<<10)}) // 200 KiB: 150 ms + 400 ms
	cases := []struct {
		name   string
		first  bool
		pieces []any
		reads  int   // frames that must be read
		err    error // then this
	}{
		{"idle between frames is allowed", false,
			[]any{ping(1), 3 * testFrames.Fixed, ping(2)}, 2, nil},
		{"a frame's bytes may straggle within its deadline", false,
			[]any{ping(1)[:2], testFrames.Fixed / 3, ping(1)[2:]}, 1, nil},
		{"a big frame gets Fixed plus its size at MinRate", false,
			[]any{big[:100<<10], 150 * time.Millisecond, big[100<<10:]}, 1, nil},
		{"a header that stalls", false,
			[]any{ping(1)[:2]}, 0, ErrSlowFrame},
		{"a body that stalls", false,
			[]any{big[:100<<10]}, 0, ErrSlowFrame},
		{"a body that trickles past its deadline", false,
			[]any{big[:100<<10], 1000 * time.Millisecond, big[100<<10:]}, 0, ErrSlowFrame},
		{"a first frame that does not begin", true,
			nil, 0, ErrSlowFrame},
		{"a first frame in time, then idle", true,
			[]any{testFrames.First / 3, ping(1), 3 * testFrames.First, ping(2)}, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, w := pipe(t)
			fr := NewFrameReader(r, 4096, testFrames)
			if c.first {
				fr.ExpectFirst()
			}
			send(w, c.pieces...)
			for i := range c.reads {
				if _, err := fr.ReadMessage(nil); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			if c.err == nil {
				return
			}
			t0 := time.Now()
			_, err := fr.ReadMessage(nil)
			if !errors.Is(err, c.err) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("took %v to give up", d)
			}
		})
	}
}

func TestFrameReaderCaps(t *testing.T) {
	r, w := pipe(t)
	fr := NewFrameReader(r, 4096, testFrames)
	fr.SetMax(100)
	send(w, header(protocol.TypeHits, 101))
	if _, err := fr.ReadMessage(nil); !errors.Is(err, protocol.ErrFrameTooLarge) {
		t.Fatalf("frame over the cap: %v", err)
	}
}

// Raw bytes must keep coming at MinRate over every Fixed.
func TestFrameReaderRaw(t *testing.T) {
	chunk := make([]byte, testFrames.quota())
	r, w := pipe(t)
	fr := NewFrameReader(r, 4096, testFrames)
	fr.Raw()
	send(w, chunk, testFrames.Fixed/2, chunk, testFrames.Fixed/2, chunk)
	if _, err := io.ReadFull(fr.Reader(), make([]byte, 3*len(chunk))); err != nil {
		t.Fatalf("raw bytes at the minimum rate: %v", err)
	}
	send(w, chunk[:10])
	_, err := io.ReadFull(fr.Reader(), make([]byte, len(chunk)))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("raw bytes that stall: %v", err)
	}
}

// The first frame of a link is read with no buffer: what follows it stays in
// the stream, and nothing but the expected types is read past the header.
func TestReadFirst(t *testing.T) {
	hello := frame(t, &protocol.Hello{Role: protocol.RoleLeaf, MinVersion: 1, MaxVersion: 6})
	r := bytes.NewReader(append(hello, 0xAA, 0xBB))
	m, err := decodeFirst(r, protocol.MaxHelloSize, protocol.TypeHello)
	if h, ok := m.(*protocol.Hello); err != nil || !ok || h.Role != protocol.RoleLeaf {
		t.Fatalf("hello: %#v, %v", m, err)
	}
	if r.Len() != 2 {
		t.Fatalf("%d bytes left after the hello, want 2", r.Len())
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"another type", append(header(protocol.TypeUserStore, 1<<20), 0xdd), protocol.ErrBadRequest},
		{"too large", header(protocol.TypeHello, protocol.MaxHelloSize+1), protocol.ErrFrameTooLarge},
		{"over the frame cap", header(protocol.TypeHello, protocol.MaxFrameSize+1), protocol.ErrFrameTooLarge},
		{"truncated header", hello[:3], io.ErrUnexpectedEOF},
		{"truncated body", hello[:len(hello)-1], io.ErrUnexpectedEOF},
		{"malformed body", append(header(protocol.TypeHello, 1), 0xc1), protocol.ErrMalformed},
	}
	for _, c := range cases {
		r := bytes.NewReader(c.in)
		_, err := decodeFirst(r, protocol.MaxHelloSize, protocol.TypeHello)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if c.want == protocol.ErrBadRequest || c.want == protocol.ErrFrameTooLarge {
			if read := len(c.in) - r.Len(); read != protocol.HeaderSize {
				t.Errorf("%s: read %d bytes, want the header only", c.name, read)
			}
		}
	}
}

// nopDeadline is a Stream over a reader that never times out.
type nopDeadline struct{ io.Reader }

func (nopDeadline) SetReadDeadline(time.Time) error { return nil }

// FuzzDecodeFirst: whatever arrives first, the listener refuses any type but
// hello and any hello over its cap from the header alone, never reads past the
// frame, and what it accepts is a hello.
func FuzzDecodeFirst(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		m, err := decodeFirst(r, protocol.MaxHelloSize, protocol.TypeHello)
		read := len(in) - r.Len()
		if len(in) >= protocol.HeaderSize {
			typ, n := protocol.MsgType(in[0]), int(binary.BigEndian.Uint32(in[1:]))
			if typ != protocol.TypeHello || n > protocol.MaxHelloSize {
				if read != protocol.HeaderSize || err == nil {
					t.Fatalf("a %s frame of %d bytes: read %d bytes, error %v", typ, n, read, err)
				}
				return
			}
			if read > protocol.HeaderSize+n {
				t.Fatalf("read %d bytes of a %d-byte frame", read, protocol.HeaderSize+n)
			}
		}
		if err == nil {
			if _, ok := m.(*protocol.Hello); !ok {
				t.Fatalf("accepted a %T", m)
			}
		} else if m != nil {
			t.Fatalf("a message and an error: %v", err)
		}
	})
}

// FuzzFrameReader: any byte stream read as frames either yields messages or
// stops with an error; a body costs at most a chunk ahead of its bytes.
func FuzzFrameReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		fr := NewFrameReader(nopDeadline{bytes.NewReader(in)}, 4096, FrameTimeouts{})
		fr.SetMax(int(max))
		for range len(in) + 1 {
			ty, n, err := fr.ReadHeader()
			if err != nil {
				return
			}
			if n > int(max) {
				t.Fatalf("header of %d bytes over the cap %d accepted", n, max)
			}
			body, err := fr.ReadBody(ty, n, nil)
			if err != nil {
				return
			}
			if len(body) != n || cap(body) > 2*n+32<<10 {
				t.Fatalf("body of %d bytes: len %d cap %d", n, len(body), cap(body))
			}
			protocol.Decode(ty, body)
		}
		t.Fatal("more frames than bytes")
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora of FuzzDecodeFirst and FuzzFrameReader")

// TestWriteFuzzCorpus rewrites the seeds of this package's fuzz targets with
// -update-corpus; it keeps any other file there (crashers the fuzzer found).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpora")
	}
	write := func(target, name string, format string, args ...any) {
		dir := filepath.Join("testdata/fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := fmt.Appendf(nil, "go test fuzz v1\n"+format, args...)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hello := frame(t, &protocol.Hello{Role: protocol.RoleLeaf, MinVersion: 1, MaxVersion: 6, Name: "alice",
		Addrs: []string{"192.0.2.1:4000"}, Agent: "supernet-peer"})
	welcome := frame(t, &protocol.Welcome{Version: 6, Role: protocol.RoleSupernode, Observed: "198.51.100.7:51000"})
	first := map[string][]byte{
		"valid_hello":                     hello,
		"valid_hello_then_more":           append(append([]byte(nil), hello...), frame(t, &protocol.Ping{Seq: 1})...),
		"valid_hello_minimal":             frame(t, &protocol.Hello{Role: protocol.RoleSupernode, MinVersion: 1, MaxVersion: 1}),
		"hostile_user_store_1MiB":         append(header(protocol.TypeUserStore, protocol.MaxFrameSize), 0x81, 0xa1, 'r', 0xdd, 0, 0x0f, 0xff, 0xff, 0xc0, 0xc0),
		"hostile_welcome_first":           welcome,
		"hostile_hello_over_the_cap":      append(header(protocol.TypeHello, protocol.MaxHelloSize+1), hello[protocol.HeaderSize:]...),
		"hostile_hello_claims_4GiB":       {byte(protocol.TypeHello), 0xff, 0xff, 0xff, 0xff},
		"hostile_hello_truncated":         hello[:len(hello)-3],
		"hostile_hello_array32_of_nils":   append(header(protocol.TypeHello, 12), 0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0),
		"hostile_hello_body_not_msgpack":  append(header(protocol.TypeHello, 3), 0xc1, 0xc1, 0xc1),
		"hostile_empty":                   {},
		"hostile_header_only_three_bytes": {byte(protocol.TypeHello), 0, 0},
	}
	for name, in := range first {
		write("FuzzDecodeFirst", name, "[]byte(%q)\n", in)
	}
	var stream []byte
	for _, m := range []protocol.Message{&protocol.Ping{Seq: 1}, &protocol.Pong{Seq: 1}, &protocol.Query{Text: "hey jude", Hops: 3},
		&protocol.Bitfield{Bits: []byte{0xf0}}, &protocol.Request{Piece: 1, Length: 16384}, &protocol.Have{Piece: 3}} {
		stream = append(stream, frame(t, m)...)
	}
	block := protocol.AppendBlockHeader(nil, 2, 16384, 64)
	block = append(block, bytes.Repeat([]byte{0xab}, 64)...)
	frames := map[string]struct {
		in  []byte
		max uint16
	}{
		"valid_messages":              {stream, 65535},
		"valid_block":                 {block, 65535},
		"hostile_messages_over_a_cap": {stream, 4},
		"hostile_claims_1MiB":         {append(header(protocol.TypeHits, protocol.MaxFrameSize), make([]byte, 100)...), 65535},
		"hostile_claims_over_max":     {header(protocol.TypeSummary, 70000), 65535},
		"hostile_truncated_stream":    {stream[:len(stream)-2], 65535},
	}
	for name, c := range frames {
		write("FuzzFrameReader", name, "[]byte(%q)\nuint16(%d)\n", c.in, c.max)
	}
}
