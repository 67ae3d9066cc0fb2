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
