package index_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/index/indextest"
	"github.com/supernet-p2p/supernet/protocol"
)

func entry(c, name string) index.Entry {
	return index.Entry{ContentID: cid(c), Name: name, Size: int64(len(name))}
}

// TestLimits walks each limit up to and past its value: the file that does not fit is
// refused with the limit's error and leaves no trace, files already held and other
// sources are untouched, and removing gives the room back.
func TestLimits(t *testing.T) {
	a, b, c := entry("a", "alpha song.mp3"), entry("b", "bravo song.mp3"), entry("c", "charlie long name of a song.mp3")
	ca, cb, cc := index.Charge(a), index.Charge(b), index.Charge(c)
	if ca <= 0 || cc <= ca {
		t.Fatalf("charges %d, %d", ca, cc)
	}
	tests := []struct {
		name   string
		limits index.Limits
		want   error // refusing c from source 1, which holds a and b
	}{
		{"files per source", index.Limits{SourceFiles: 2}, index.ErrSourceFull},
		{"bytes per source", index.Limits{SourceBytes: ca + cb + cc - 1}, index.ErrSourceFull},
		{"bytes of the index", index.Limits{Bytes: 1}, index.ErrFull}, // set below, once a and b are in
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := index.New()
			ix.SetLimits(tt.limits)
			if tt.want == index.ErrFull {
				ix.SetLimits(index.Limits{})
			}
			for _, e := range []index.Entry{a, b} {
				if err := ix.Add(1, e); err != nil {
					t.Fatal(err)
				}
			}
			if tt.want == index.ErrFull {
				ix.SetLimits(index.Limits{Bytes: ix.Usage().Bytes + ca/4})
			}
			before, gen, total := ix.SourceUsage(1), ix.Generation(), ix.Usage()
			if want := (index.Usage{Files: 2, Bytes: ca + cb}); before != want {
				t.Fatalf("usage %+v, want %+v", before, want)
			}
			err := ix.Add(1, c)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Add past the limit: %v, want %v", err, tt.want)
			}
			t.Logf("refused: %v", err)
			if _, ok := ix.Lookup(c.ContentID); ok || ix.Len() != 2 || ix.Generation() != gen ||
				ix.SourceUsage(1) != before || ix.Usage() != total || len(ix.Search("charlie", 0)) != 0 {
				t.Fatal("the refused file left a trace")
			}
			check(t, ix)
			// Adding a file it already holds is no new file.
			if err := ix.Add(1, a); err != nil {
				t.Fatalf("Add again: %v", err)
			}
			// Removing one gives its room back, exactly.
			if !ix.Remove(1, a.ContentID) {
				t.Fatal("Remove")
			}
			if got, want := ix.SourceUsage(1), (index.Usage{Files: 1, Bytes: cb}); got != want {
				t.Fatalf("after Remove: usage %+v, want %+v", got, want)
			}
			if tt.want == index.ErrSourceFull {
				if err := ix.Add(1, c); err != nil {
					t.Fatalf("Add after Remove: %v", err)
				}
				// The other source has limits of its own.
				if err := ix.Add(2, a); err != nil {
					t.Fatalf("another source: %v", err)
				}
			}
			held := ix.SourceUsage(1).Files
			if n := ix.RemoveSource(1); n != held || ix.SourceUsage(1) != (index.Usage{}) {
				t.Fatalf("RemoveSource of %d files: %d, then %+v", held, n, ix.SourceUsage(1))
			}
			check(t, ix)
		})
	}
}

// A source sharing a file already indexed is charged what the file holds, its first
// publisher's name and tags, not what it sent: a short name cannot take a long record
// cheaply once its first publisher leaves.
func TestChargeOfSharedFile(t *testing.T) {
	long := entry("x", strings.Repeat("word ", 200))
	short := entry("x", "w")
	ix := index.New()
	if err := ix.Add(1, long); err != nil {
		t.Fatal(err)
	}
	if err := ix.Add(2, short); err != nil {
		t.Fatal(err)
	}
	want := index.Usage{Files: 1, Bytes: index.Charge(long)}
	if got := ix.SourceUsage(2); got != want || index.Charge(short) >= want.Bytes {
		t.Fatalf("second source charged %+v, want %+v", got, want)
	}
	ix.RemoveSource(1)
	if got := ix.SourceUsage(2); got != want {
		t.Fatalf("after the first left: %+v, want %+v", got, want)
	}
	check(t, ix)
}

// TestLimitsAgainstModel drives sources with per-source limits through random adds and
// removals, some sharing files: every refusal and every usage must be what a model that
// charges each file Charge of its first publisher's entry says.
func TestLimitsAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ents := indextest.Names(5, 600)
	ents = append(ents, indextest.Hostile(6, 30)...)
	lim := index.Limits{SourceFiles: 40, SourceBytes: 120_000}
	ix := index.New()
	ix.SetLimits(lim)
	m := &model{files: map[protocol.ContentID]*modelFile{}}
	const nSrcs = 8
	refused := 0
	for step := range 20000 {
		src := index.SourceID(r.IntN(nSrcs))
		switch op := r.IntN(100); {
		case op < 2:
			if got, want := ix.RemoveSource(src), m.removeSource(src); got != want {
				t.Fatalf("step %d: RemoveSource %d, want %d", step, got, want)
			}
		case op < 65:
			e := ents[r.IntN(len(ents))]
			u := m.usage(src)
			c := index.Charge(e)
			if f := m.files[e.ContentID]; f != nil {
				c = f.charge
			}
			var want error
			if f := m.files[e.ContentID]; f == nil || !f.srcs[src] {
				if u.Files >= lim.SourceFiles || u.Bytes+c > lim.SourceBytes {
					want = index.ErrSourceFull
				}
			}
			err := ix.Add(src, e)
			if !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("step %d: Add with %+v held, charge %d: %v, want %v", step, u, c, err, want)
			}
			if err == nil {
				m.add(src, e)
			} else {
				refused++
			}
		default:
			e := ents[r.IntN(len(ents))]
			if got, want := ix.Remove(src, e.ContentID), m.remove(src, e.ContentID); got != want {
				t.Fatalf("step %d: Remove %v, want %v", step, got, want)
			}
		}
		if step%500 == 0 {
			check(t, ix)
		}
		if got, want := ix.SourceUsage(src), m.usage(src); got != want {
			t.Fatalf("step %d: source %d usage %+v, want %+v", step, src, got, want)
		}
	}
	if refused < 100 {
		t.Errorf("only %d refusals: the limits were hardly reached", refused)
	}
	for src := range index.SourceID(nSrcs) {
		ix.RemoveSource(src)
	}
	ix.Compact()
	if u := ix.Usage(); u != (index.Usage{}) {
		t.Fatalf("empty index holds %+v", u)
	}
	check(t, ix)
}

// TestFullIndexCompacts: removals too few to compact on their own still give their room
// back when the index is full, and a refused file is refused without a compaction when
// there is too little to gain.
func TestFullIndexCompacts(t *testing.T) {
	ix := index.New()
	hostile := indextest.Hostile(1, 40)
	for _, e := range hostile[:20] {
		if err := ix.Add(1, e); err != nil {
			t.Fatal(err)
		}
	}
	ix.SetLimits(index.Limits{Bytes: ix.Usage().Bytes})
	if err := ix.Add(2, hostile[20]); !errors.Is(err, index.ErrFull) {
		t.Fatalf("Add to a full index: %v", err)
	}
	if ix.Remove(1, hostile[0].ContentID); ix.Dead() != 1 {
		t.Fatalf("%d dead", ix.Dead()) // one removal out of twenty is too little to compact
	}
	if err := ix.Add(2, hostile[20]); !errors.Is(err, index.ErrFull) || ix.Dead() != 1 {
		t.Fatalf("Add after freeing a twentieth: %v, %d dead", err, ix.Dead())
	}
	for _, e := range hostile[1:5] {
		ix.Remove(1, e.ContentID)
	}
	// Five of twenty removed: a quarter of what is held, though the files differ a little.
	for i, e := range hostile[20:24] {
		if err := ix.Add(2, e); err != nil {
			t.Fatalf("Add %d after freeing a quarter: %v", i, err)
		}
	}
	if ix.Dead() != 0 {
		t.Fatalf("%d dead after the full index compacted", ix.Dead())
	}
	check(t, ix)
}

// TestChargeCoversHeap checks the accounting against the heap: what Usage counts and
// what sources are charged is at least what the index takes, for typical files and for
// the most expensive files a source can send.
func TestChargeCoversHeap(t *testing.T) {
	nReal, nHostile := 100_000, 2000
	if raceEnabled || testing.Short() {
		nReal, nHostile = 20_000, 500
	}
	for _, tc := range []struct {
		name   string
		ents   []index.Entry
		shared int // sources of each file
	}{
		{"typical", indextest.Names(1, nReal), 1},
		{"typical, each file shared by four", indextest.Names(1, nReal/4), 4},
		{"hostile", indextest.Hostile(1, nHostile), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := heapAlloc()
			ix := index.New()
			for k := range tc.shared {
				for i, e := range tc.ents {
					if err := ix.Add(index.SourceID(k<<20|i/100), e); err != nil {
						t.Fatal(err)
					}
				}
			}
			var charged int64
			for k := range tc.shared {
				for i := 0; i < len(tc.ents); i += 100 {
					charged += ix.SourceUsage(index.SourceID(k<<20 | i/100)).Bytes
				}
			}
			heap := int64(heapAlloc()) - int64(before)
			held := ix.Usage().Bytes
			n := float64(len(tc.ents) * tc.shared)
			t.Logf("%d files: heap %.0f B/file, counted %.0f B/file, charged %.0f B/file",
				int(n), float64(heap)/n, float64(held)/n, float64(charged)/n)
			if heap > held || held > charged {
				t.Errorf("heap %d, counted %d, charged %d: want heap <= counted <= charged", heap, held, charged)
			}
			runtime.KeepAlive(ix)
		})
	}
}

// TestChurnStaysBounded: a source that fills its share with the most expensive files,
// drops them and sends new ones, over and over, keeps the index's heap within its limit
// while another source's files stay found.
func TestChurnStaysBounded(t *testing.T) {
	const limit = 8 << 20
	rounds := 12
	if raceEnabled || testing.Short() {
		rounds = 4
	}
	before := heapAlloc()
	ix := index.New()
	ix.SetLimits(index.Limits{SourceBytes: 4 << 20, Bytes: limit})
	honest := indextest.Names(2, 2000)
	for _, e := range honest {
		if err := ix.Add(1, e); err != nil {
			t.Fatal(err)
		}
	}
	peak := int64(0)
	for round := range rounds {
		n := 0
		for _, e := range indextest.Hostile(int64(round), 400) {
			err := ix.Add(2, e)
			if err != nil {
				if !errors.Is(err, index.ErrSourceFull) {
					t.Fatalf("round %d: %v", round, err)
				}
				break
			}
			n++
		}
		heap := int64(heapAlloc()) - int64(before)
		peak = max(peak, heap)
		if heap > limit || ix.Usage().Bytes > limit {
			t.Fatalf("round %d: heap %d, counted %d, limit %d", round, heap, ix.Usage().Bytes, limit)
		}
		if round%2 == 0 {
			ix.RemoveSource(2)
		} else {
			for _, e := range indextest.Hostile(int64(round), n) {
				ix.Remove(2, e.ContentID)
			}
		}
		if res := ix.Search(honest[round].Name, 0); len(res) == 0 {
			t.Fatalf("round %d: %q not found", round, honest[round].Name)
		}
	}
	t.Logf("peak heap %.1f MiB of a %d MiB limit", float64(peak)/(1<<20), limit>>20)
	check(t, ix)
	runtime.KeepAlive(ix)
}

func ExampleIndex_SetLimits() {
	ix := index.New()
	ix.SetLimits(index.Limits{SourceFiles: 1})
	fmt.Println(ix.Add(1, index.Entry{ContentID: protocol.ContentID{1}, Name: "one.mp3"}))
	fmt.Println(ix.Add(1, index.Entry{ContentID: protocol.ContentID{2}, Name: "two.mp3"}))
	// Output:
	// <nil>
	// index: source at its limit: 1 files
}
