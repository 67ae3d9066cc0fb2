package index_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

func filterOf(bits int, keys ...string) *index.Bloom {
	b := index.NewBloomBits(bits)
	for _, k := range keys {
		b.AddString(k)
	}
	return b
}

func bkeys(ks ...string) [][]byte {
	var out [][]byte
	for _, k := range ks {
		out = append(out, []byte(k))
	}
	return out
}

func TestSummaryMayMatch(t *testing.T) {
	s := index.Summary{Levels: []*index.Bloom{
		filterOf(1024, "hey", "jude"),
		nil, // nothing two hops away
		filterOf(2048, "hey", "ya"),
	}}
	tests := []struct {
		keys []string
		hops int
		want bool
	}{
		{[]string{"hey", "jude"}, 1, true},
		{[]string{"hey", "jude"}, 0, false},
		{[]string{"hey", "ya"}, 2, false},
		{[]string{"hey", "ya"}, 3, true},
		{[]string{"hey", "ya"}, 99, true},
		{[]string{"jude", "ya"}, 3, false}, // all keys must be in one level
		{[]string{"nope"}, 3, false},
		{nil, 1, true},
	}
	for _, tt := range tests {
		if got := s.MayMatch(bkeys(tt.keys...), tt.hops); got != tt.want {
			t.Errorf("MayMatch(%q, %d) = %v, want %v", tt.keys, tt.hops, got, tt.want)
		}
	}
	if (index.Summary{}).MayMatch(bkeys("hey"), 5) {
		t.Error("empty summary matched")
	}
}

// Three supernodes in a line, A - B - C, plus D beside B: what B tells A must include
// C's and D's keys one level down and never A's own.
func TestBuildSummary(t *testing.T) {
	own := filterOf(4096, "b-song")
	fromC := index.Summary{Levels: []*index.Bloom{filterOf(2048, "c-song"), filterOf(2048, "e-song")}}
	fromD := index.Summary{Levels: []*index.Bloom{filterOf(8192, "d-song")}}

	toA := index.BuildSummary(own, []index.Summary{fromC, fromD}, 3)
	if len(toA.Levels) != 3 {
		t.Fatalf("%d levels", len(toA.Levels))
	}
	if !toA.Levels[0].Equal(own) || toA.Levels[0] == own {
		t.Fatal("level 0 is not a copy of own")
	}
	if l1 := toA.Levels[1]; l1.Bits() != 2048 || !l1.HasString("c-song") || !l1.HasString("d-song") || l1.HasString("b-song") {
		t.Fatalf("level 1: %d bits", l1.Bits())
	}
	if l2 := toA.Levels[2]; !l2.HasString("e-song") || l2.HasString("c-song") {
		t.Fatal("level 2")
	}
	if !toA.MayMatch(bkeys("e-song"), 3) || toA.MayMatch(bkeys("e-song"), 2) {
		t.Fatal("hop limit not applied")
	}
	// The inputs are not modified.
	if fromD.Levels[0].Bits() != 8192 || fromC.Levels[0].HasString("d-song") {
		t.Fatal("BuildSummary modified its input")
	}
	own.AddString("later")
	if toA.Levels[0].HasString("later") {
		t.Fatal("summary shares own's bits")
	}

	// Levels nothing reaches are left off the end.
	if s := index.BuildSummary(own, nil, 4); len(s.Levels) != 1 {
		t.Fatalf("isolated node: %d levels", len(s.Levels))
	}
	if s := index.BuildSummary(nil, []index.Summary{fromD}, 3); len(s.Levels) != 2 || s.Levels[0] != nil || !s.Levels[1].HasString("d-song") {
		t.Fatalf("node without leaves: %+v", s.Levels)
	}
	if s := index.BuildSummary(own, []index.Summary{fromC}, 0); len(s.Levels) != 0 {
		t.Fatal("depth 0")
	}
}

// The keys routing uses are exactly what AddTo puts in: query terms and raw content IDs.
func TestSummaryFromIndex(t *testing.T) {
	ix := index.New()
	c := protocol.ContentID{1, 2, 3}
	ix.Add(1, index.Entry{ContentID: c, Name: "The Beatles - Hey Jude.mp3", Tags: protocol.Tags{Album: "Past Masters"}})
	b := index.NewBloom(ix.KeyCount(), 0.01)
	ix.AddTo(b)
	s := index.BuildSummary(b, nil, 2)
	var keys [][]byte
	for _, t := range ix.QueryTerms("hey JUDE past") {
		keys = append(keys, []byte(t))
	}
	if !s.MayMatch(keys, 1) || !s.MayMatch([][]byte{c[:]}, 1) {
		t.Fatal("summary misses the index's keys")
	}
	ix.RemoveSource(1)
	b2 := index.NewBloom(10, 0.01)
	ix.AddTo(b2)
	if b2.Count() != 0 {
		t.Fatal("AddTo added keys of removed files")
	}
}

func BenchmarkSummaryMayMatch(b *testing.B) {
	s := index.Summary{Levels: []*index.Bloom{index.NewBloom(100000, 0.01), index.NewBloom(100000, 0.01), index.NewBloom(100000, 0.01)}}
	keys := bkeys("hey", "jude", "beatles")
	for _, l := range s.Levels {
		for i := range uint64(50000) {
			l.Add(key(i))
		}
	}
	for range b.N {
		s.MayMatch(keys, 3)
	}
}

// TestBuildSummariesMatchesBuildSummary: the one-pass form gives every
// neighbour what BuildSummary gives it, with filters of mixed sizes (which
// fold) and neighbours that sent nothing yet.
func TestBuildSummariesMatchesBuildSummary(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	bloom := func(bits int, keys int) *index.Bloom {
		b := index.NewBloomBits(bits)
		for k := 0; k < keys; k++ {
			b.AddString(fmt.Sprint(rng.IntN(1 << 20)))
		}
		return b
	}
	for trial := 0; trial < 50; trial++ {
		n, depth := rng.IntN(10), 1+rng.IntN(5)
		own := bloom(1<<12, 50)
		if trial%7 == 0 {
			own = nil
		}
		from := make([]index.Summary, n)
		for i := range from {
			for d := 0; d < rng.IntN(depth+1); d++ {
				var b *index.Bloom
				if rng.IntN(4) > 0 {
					b = bloom(1<<(10+rng.IntN(3)), 40)
				}
				from[i].Levels = append(from[i].Levels, b)
			}
		}
		got := index.BuildSummaries(own, from, depth)
		for i := range from {
			others := append(slices.Clone(from[:i]), from[i+1:]...)
			want := index.BuildSummary(own, others, depth)
			if len(got[i].Levels) != len(want.Levels) {
				t.Fatalf("trial %d, neighbour %d: %d levels, want %d", trial, i, len(got[i].Levels), len(want.Levels))
			}
			for d := range want.Levels {
				if !got[i].Levels[d].Equal(want.Levels[d]) {
					t.Fatalf("trial %d, neighbour %d, level %d differs", trial, i, d)
				}
			}
		}
	}
}
