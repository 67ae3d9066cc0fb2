package index_test

import (
	"slices"
	"testing"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// TestKeyHashesAreTheFilterKeys checks that AppendKeyHashes names exactly
// the keys AddTo puts in a filter: the live terms and content IDs.
func TestKeyHashesAreTheFilterKeys(t *testing.T) {
	ix := index.New()
	a, b := protocol.ContentID{1}, protocol.ContentID{2}
	if err := ix.Add(1, index.Entry{ContentID: a, Name: "hey jude", Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Add(1, index.Entry{ContentID: b, Name: "let it be", Size: 1}); err != nil {
		t.Fatal(err)
	}
	ix.Remove(1, b)
	got := ix.AppendKeyHashes(nil)
	slices.Sort(got)
	want := []uint64{index.HashString("hey"), index.HashString("jude"), index.Hash(a[:])}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("key hashes %x, want those of hey, jude and the live content ID %x", got, want)
	}
}
