package protocol

import (
	"bytes"
	"testing"
)

func TestBlockHeaderMatches(t *testing.T) {
	for _, c := range []struct{ p, o uint32 }{{0, 0}, {127, 128}, {255, 256}, {65535, 65536}, {1 << 31, 5}} {
		data := []byte("hello world")
		want, err := AppendFrame(nil, &Block{Piece: c.p, Offset: c.o, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		got := append(AppendBlockHeader(nil, c.p, c.o, len(data)), data...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: %x != %x", c, got, want)
		}
	}
}

func TestParseBlockHeaderMatchesDecode(t *testing.T) {
	for _, c := range []struct{ p, o uint32 }{{0, 0}, {127, 128}, {255, 256}, {65535, 65536}, {1 << 31, 5}} {
		frame, err := AppendFrame(nil, &Block{Piece: c.p, Offset: c.o, Data: []byte("abc")})
		if err != nil {
			t.Fatal(err)
		}
		p, o, n, err := ParseBlockHeader(frame[HeaderSize:])
		if err != nil || p != c.p || o != c.o || string(frame[HeaderSize+n:]) != "abc" {
			t.Fatalf("%v: got %d %d %d %v", c, p, o, n, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x91, 1}, {0x92}, {0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, 2}, {0x92, 0xce, 1}} {
		if _, _, _, err := ParseBlockHeader(bad); err == nil {
			t.Errorf("% x: accepted", bad)
		}
	}
}
