package index_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/supernet-p2p/supernet/index"
)

func TestDiffTurnsOneFilterIntoTheOther(t *testing.T) {
	a, b := index.NewBloomBits(1<<14), index.NewBloomBits(1<<14)
	for i := range 500 {
		a.AddString(fmt.Sprint("shared ", i))
		b.AddString(fmt.Sprint("shared ", i))
	}
	for i := range 20 {
		a.AddString(fmt.Sprint("gone ", i))
		b.AddString(fmt.Sprint("new ", i))
	}
	d, err := a.Diff(b)
	if err != nil {
		t.Fatal(err)
	}
	// At most 7 bits a key for 40 keys, a byte or two each.
	if len(d) == 0 || len(d) > 40*index.K*2 {
		t.Fatalf("diff of %d bytes", len(d))
	}
	c := a.Clone()
	if err := c.ApplyDiff(d); err != nil {
		t.Fatal(err)
	}
	if !c.Equal(b) {
		t.Fatal("a with the diff applied is not b")
	}
	if _, err := a.Diff(index.NewBloomBits(1 << 12)); err == nil {
		t.Fatal("diff of filters of different sizes")
	}
}

func TestApplyDiffRefusesBadDiffsAndKeepsTheFilter(t *testing.T) {
	b := index.NewBloomBits(index.MinBloomBits)
	b.AddString("x")
	want := b.Clone()
	for name, d := range map[string][]byte{
		"past the end":       binary.AppendUvarint(nil, index.MinBloomBits),
		"past the end later": binary.AppendUvarint(binary.AppendUvarint(nil, 5), index.MinBloomBits-6),
		"cut varint":         {0x80},
		"huge gap":           binary.AppendUvarint(nil, 1<<62),
	} {
		if err := b.ApplyDiff(d); !errors.Is(err, index.ErrBadBloom) {
			t.Errorf("%s: %v, want index.ErrBadBloom", name, err)
		}
		if !b.Equal(want) {
			t.Fatalf("%s: the filter changed", name)
		}
	}
}

func FuzzApplyDiff(f *testing.F) {
	a, b := index.NewBloomBits(index.MinBloomBits), index.NewBloomBits(index.MinBloomBits)
	a.AddString("a")
	b.AddString("b")
	d, _ := a.Diff(b)
	f.Add(d)
	f.Add([]byte{0x80})
	f.Add(binary.AppendUvarint(nil, index.MinBloomBits-1))
	f.Fuzz(func(t *testing.T, d []byte) {
		x := index.NewBloomBits(index.MinBloomBits)
		x.AddString("seed")
		y := x.Clone()
		if err := x.ApplyDiff(d); err != nil {
			if !x.Equal(y) {
				t.Fatal("a refused diff changed the filter")
			}
			return
		}
		// A diff that applies is undone by applying it again.
		if err := x.ApplyDiff(d); err != nil || !x.Equal(y) {
			t.Fatalf("applied twice: %v, equal %v", err, x.Equal(y))
		}
	})
}
