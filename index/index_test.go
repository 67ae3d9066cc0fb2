package index_test

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

func cid(s string) protocol.ContentID {
	var c protocol.ContentID
	copy(c[:], s)
	return c
}

func names(rs []index.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func check(t *testing.T, ix *index.Index) {
	t.Helper()
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestSearchMatching(t *testing.T) {
	ix := index.New()
	ix.Add(1, index.Entry{ContentID: cid("a"), Name: "The Beatles - Hey Jude.mp3", Size: 1})
	ix.Add(1, index.Entry{ContentID: cid("b"), Name: "track01.mp3", Size: 2, Tags: protocol.Tags{Title: "Hey Jude", Artist: "The Beatles"}})
	ix.Add(2, index.Entry{ContentID: cid("c"), Name: "Hey Ya.mp3", Size: 3})
	ix.Add(2, index.Entry{ContentID: cid("d"), Name: "Beyoncé - Crazy in Love.flac", Size: 4, Tags: protocol.Tags{Genre: "R&B", Album: "Dangerously in Love"}})
	ix.Add(3, index.Entry{ContentID: cid("e"), Name: "jude.txt", Size: 5, Tags: protocol.Tags{Year: 1968}})
	check(t, ix)

	tests := []struct {
		query string
		want  []string
	}{
		{"hey jude", []string{"The Beatles - Hey Jude.mp3", "track01.mp3"}},
		{"HEY   Jude!", []string{"The Beatles - Hey Jude.mp3", "track01.mp3"}},
		{"jude hey", []string{"The Beatles - Hey Jude.mp3", "track01.mp3"}},
		{"hey", []string{"Hey Ya.mp3", "The Beatles - Hey Jude.mp3", "track01.mp3"}},
		{"beatles", []string{"The Beatles - Hey Jude.mp3", "track01.mp3"}},
		{"beyonce", []string{"Beyoncé - Crazy in Love.flac"}},
		{"beyoncé crazy", []string{"Beyoncé - Crazy in Love.flac"}},
		{"dangerously", []string{"Beyoncé - Crazy in Love.flac"}}, // album
		{"r b", []string{"Beyoncé - Crazy in Love.flac"}},         // genre
		{"hey jude ya", nil},
		{"hey nothing", nil},
		{"1968", nil}, // years are not search terms
		{"", nil},
		{" - . ", nil},
	}
	for _, tt := range tests {
		if got := names(ix.Search(tt.query, 0)); !slices.Equal(got, tt.want) {
			t.Errorf("Search(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}

	r := ix.Search("crazy", 0)
	if len(r) != 1 || r[0].ContentID != cid("d") || r[0].Size != 4 || r[0].Tags.Genre != "R&B" || !slices.Equal(r[0].Sources, []index.SourceID{2}) {
		t.Errorf("Search(crazy) = %+v", r)
	}
	if got := ix.QueryTerms("Hey  JUDE"); !slices.Equal(got, []string{"hey", "jude"}) {
		t.Errorf("QueryTerms = %q", got)
	}
}

func TestSearchRanking(t *testing.T) {
	ix := index.New()
	add := func(src index.SourceID, id, name string, tags protocol.Tags) {
		ix.Add(src, index.Entry{ContentID: cid(id), Name: name, Tags: tags})
	}
	add(1, "long", "The Beatles - Hey Jude (Live at the BBC 1968, Remastered, Disc 2).mp3", protocol.Tags{})
	add(1, "tags", "track01.mp3", protocol.Tags{Title: "Hey Jude"})
	add(1, "half", "Hey - track.mp3", protocol.Tags{Title: "Jude"})
	add(1, "short", "Hey Jude.mp3", protocol.Tags{})
	add(1, "short2", "hey_jude.mp3", protocol.Tags{})
	add(2, "short2", "hey_jude.mp3", protocol.Tags{}) // a second source
	add(1, "short3", "HEY JUDE.MP3", protocol.Tags{})
	add(1, "exact", "hey jude", protocol.Tags{})

	got := ix.Search("hey jude", 0)
	want := []string{
		"exact",  // the name is nothing but the query
		"short2", // "hey jude mp3", two sources
		"short",  // "hey jude mp3", one source; content ID "short" < "short3"
		"short3",
		"long",
		"half", // one term in the name, the other in a tag
		"tags", // both terms in tags only
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, string(bytes.TrimRight(r.ContentID[:], "\x00")))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("order %q, want %q", ids, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Score > got[i-1].Score {
			t.Errorf("score rises at %d: %v", i, got)
		}
	}
	if got[len(got)-1].Score != 0.5 {
		t.Errorf("tag-only score %v, want 0.5", got[len(got)-1].Score)
	}
	if n := len(ix.Search("hey jude", 3)); n != 3 {
		t.Errorf("limit 3 gave %d", n)
	}
}

func TestSourcesAndRemoval(t *testing.T) {
	ix := index.New()
	e := index.Entry{ContentID: cid("x"), Name: "Song.mp3", Size: 10}
	for _, s := range []index.SourceID{5, 3, 9, 3} {
		ix.Add(s, e)
	}
	ix.Add(7, index.Entry{ContentID: cid("x"), Name: "Other name.mp3"}) // keeps the first name
	ix.Add(3, index.Entry{ContentID: cid("y"), Name: "Other Song.mp3"})
	check(t, ix)
	if ix.Len() != 2 {
		t.Fatalf("Len = %d", ix.Len())
	}
	r, ok := ix.Lookup(cid("x"))
	if !ok || r.Name != "Song.mp3" || r.Size != 10 || !slices.Equal(r.Sources, []index.SourceID{3, 5, 7, 9}) {
		t.Fatalf("Lookup = %+v, %v", r, ok)
	}
	if rs := ix.Search("song", 0); len(rs) != 2 || rs[0].ContentID != cid("x") {
		t.Fatalf("grouped search = %+v", rs)
	}
	if _, ok := ix.Lookup(cid("nope")); ok {
		t.Fatal("Lookup of an unknown ID succeeded")
	}

	gen := ix.Generation()
	if !ix.Remove(5, cid("x")) || ix.Remove(5, cid("x")) || ix.Remove(4, cid("x")) || ix.Remove(5, cid("nope")) {
		t.Fatal("Remove results wrong")
	}
	if ix.Generation() != gen {
		t.Error("removing one of several sources changed the generation")
	}
	if n := ix.RemoveSource(3); n != 2 {
		t.Fatalf("RemoveSource(3) = %d, want 2", n)
	}
	if ix.Generation() == gen {
		t.Error("removing a file did not change the generation")
	}
	check(t, ix)
	if ix.Len() != 1 || len(ix.Search("other", 0)) != 0 {
		t.Fatalf("after RemoveSource: Len %d, %v", ix.Len(), ix.Search("other", 0))
	}
	r, _ = ix.Lookup(cid("x"))
	if !slices.Equal(r.Sources, []index.SourceID{7, 9}) {
		t.Fatalf("sources %v", r.Sources)
	}
	ix.RemoveSource(7)
	ix.Remove(9, cid("x"))
	if ix.Len() != 0 || ix.Search("song", 0) != nil || ix.RemoveSource(9) != 0 {
		t.Fatal("index not empty")
	}
	// A file removed and published again is found again.
	ix.Add(9, e)
	if rs := ix.Search("song", 0); len(rs) != 1 || !slices.Equal(rs[0].Sources, []index.SourceID{9}) {
		t.Fatalf("re-added: %+v", rs)
	}
	check(t, ix)
}

func TestAddCapsLongNames(t *testing.T) {
	ix := index.New()
	name := strings.Repeat("é", 2000) + " tail"
	ix.Add(1, index.Entry{ContentID: cid("a"), Name: name, Tags: protocol.Tags{Title: strings.Repeat("ü", 500)}})
	r, _ := ix.Lookup(cid("a"))
	if len(r.Name) > index.MaxNameBytes || len(r.Tags.Title) > index.MaxTagBytes || !strings.HasPrefix(name, r.Name) {
		t.Fatalf("name %d bytes, title %d bytes", len(r.Name), len(r.Tags.Title))
	}
	if !strings.HasSuffix(r.Name, "é") {
		t.Fatal("name cut inside a character")
	}
}

// model is the obvious implementation the index must agree with.
type model struct {
	files map[protocol.ContentID]*modelFile
}

type modelFile struct {
	e          index.Entry
	srcs       map[index.SourceID]bool
	name, tags []string // tokens
	charge     int64
}

func (m *model) add(src index.SourceID, e index.Entry) {
	f := m.files[e.ContentID]
	if f == nil {
		f = &modelFile{e: e, srcs: map[index.SourceID]bool{}, name: index.Tokenize(e.Name), charge: index.Charge(e)}
		for _, s := range []string{e.Tags.Title, e.Tags.Artist, e.Tags.Album, e.Tags.Genre} {
			f.tags = append(f.tags, index.Tokenize(s)...)
		}
		m.files[e.ContentID] = f
	}
	f.srcs[src] = true
}

func (m *model) remove(src index.SourceID, c protocol.ContentID) bool {
	f := m.files[c]
	if f == nil || !f.srcs[src] {
		return false
	}
	delete(f.srcs, src)
	if len(f.srcs) == 0 {
		delete(m.files, c)
	}
	return true
}

func (m *model) removeSource(src index.SourceID) int {
	n := 0
	for c := range m.files {
		if m.remove(src, c) {
			n++
		}
	}
	return n
}

// usage is what src must be charged: the charge of every file it shares, as its first
// publisher gave it.
func (m *model) usage(src index.SourceID) index.Usage {
	var u index.Usage
	for _, f := range m.files {
		if f.srcs[src] {
			u.Files++
			u.Bytes += f.charge
		}
	}
	return u
}

func (f *modelFile) sources() []index.SourceID {
	var s []index.SourceID
	for k := range f.srcs {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// keys are what AddTo must put in a filter.
func (m *model) keys() map[string]bool {
	k := map[string]bool{}
	for c, f := range m.files {
		k[string(c[:])] = true
		for _, t := range f.name {
			k[t] = true
		}
		for _, t := range f.tags {
			k[t] = true
		}
	}
	return k
}

func (m *model) search(q string) []index.Result {
	terms := index.Tokenize(q)
	if len(terms) == 0 {
		return nil
	}
	var out []index.Result
	for _, f := range m.files {
		name, tags := f.name, f.tags
		hits, ok := 0, true
		for _, t := range terms {
			switch {
			case slices.Contains(name, t):
				hits++
			case slices.Contains(tags, t):
			default:
				ok = false
			}
		}
		if !ok {
			continue
		}
		n := float64(len(terms))
		score := (float64(hits) + n) / (2 * n)
		if len(name) > 0 {
			score += float64(hits) / float64(len(name)) / 2
		}
		out = append(out, index.Result{Entry: f.e, Sources: f.sources(), Score: score})
	}
	slices.SortFunc(out, func(a, b index.Result) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := cmp.Compare(len(b.Sources), len(a.Sources)); c != 0 {
			return c
		}
		return bytes.Compare(a.ContentID[:], b.ContentID[:])
	})
	return out
}

func sameResults(a, b []index.Result) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d results, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ContentID != y.ContentID || x.Name != y.Name || x.Size != y.Size || x.Tags != y.Tags ||
			!slices.Equal(x.Sources, y.Sources) || fmt.Sprint(x.Score) != fmt.Sprint(y.Score) {
			return fmt.Errorf("result %d: got %+v, want %+v", i, x, y)
		}
	}
	return nil
}

// TestAgainstModel drives the index and the model with the same random operations and
// compares every answer. Growing and shrinking phases make dead files pile up and get
// compacted away. The small configuration has few words, so that every common word's
// list is split into tiers and has a bitmap; the large one has enough files that many
// split lists are too sparse for a bitmap.
func TestAgainstModel(t *testing.T) {
	small := strings.Fields("love you me the night day fire rain baby heart blue sky dance girl boy go home yeah")
	small = append(small, "Beyoncé", "ÉTÉ", "rare1", "rare2", "rare3")
	large := slices.Clone(small)
	for i := range 300 {
		large = append(large, fmt.Sprintf("w%d", i))
	}
	t.Run("small", func(t *testing.T) {
		testAgainstModel(t, modelConfig{words: small, files: 3000, sources: 40, leaveEvery: 100, steps: 40000, phase: 5000, every: 400, queries: 30})
	})
	t.Run("large", func(t *testing.T) {
		if testing.Short() {
			t.Skip("slow")
		}
		testAgainstModel(t, modelConfig{words: large, files: 100000, sources: 100, leaveEvery: 5000, steps: 120000, phase: 60000, every: 12000, queries: 12, sparse: true})
	})
}

type modelConfig struct {
	words                               []string
	files, sources, steps, phase, every int
	leaveEvery                          int  // steps per RemoveSource while growing, on average
	queries                             int  // per check
	sparse                              bool // expect split lists without bitmaps
}

func testAgainstModel(t *testing.T, cfg modelConfig) {
	r := rand.New(rand.NewPCG(42, 7))
	words := cfg.words
	randName := func() string {
		var b strings.Builder
		for i := range 1 + r.IntN(6) {
			if i > 0 {
				b.WriteString([]string{" ", " - ", "_", ", "}[r.IntN(4)])
			}
			u := r.Float64()
			b.WriteString(words[int(u*u*float64(len(words)))]) // word frequencies skewed over a wide range
		}
		b.WriteString([]string{".mp3", ".flac", "", ".avi"}[r.IntN(4)])
		return b.String()
	}
	nCIDs, nSrcs := cfg.files, cfg.sources
	entries := make([]index.Entry, nCIDs)
	for i := range entries {
		e := &entries[i]
		e.ContentID[0], e.ContentID[1], e.ContentID[2] = byte(r.IntN(4)), byte(i>>8), byte(i) // shared prefixes exercise the tie-break fallback
		e.Name = randName()
		e.Size = int64(i)
		if r.IntN(3) == 0 {
			e.Tags = protocol.Tags{Title: randName(), Artist: words[r.IntN(len(words))], Year: 1990 + r.IntN(30)}
		}
	}
	var queries []string
	for range 200 {
		var q []string
		for range 1 + r.IntN(3) {
			q = append(q, words[r.IntN(len(words))])
		}
		queries = append(queries, strings.Join(q, " "))
	}

	ix := index.New()
	m := &model{files: map[protocol.ContentID]*modelFile{}}
	compactions, tiered, dense, sparse := 0, 0, 0, 0
	gen, keys := ix.Generation(), m.keys()
	for step := range cfg.steps {
		addPct, leaveEvery := 80, cfg.leaveEvery
		if step/cfg.phase%2 == 1 {
			addPct, leaveEvery = 25, min(leaveEvery, 50)
		}
		dead := ix.Dead()
		switch op := r.IntN(100); {
		case r.IntN(leaveEvery) == 0:
			src := index.SourceID(r.IntN(nSrcs))
			if got, want := ix.RemoveSource(src), m.removeSource(src); got != want {
				t.Fatalf("step %d: RemoveSource = %d, want %d", step, got, want)
			}
		case op < addPct:
			src, e := index.SourceID(r.IntN(nSrcs)), entries[r.IntN(nCIDs)]
			if err := ix.Add(src, e); err != nil {
				t.Fatalf("step %d: Add: %v", step, err)
			}
			m.add(src, e)
		default:
			src, c := index.SourceID(r.IntN(nSrcs)), entries[r.IntN(nCIDs)].ContentID
			if got, want := ix.Remove(src, c), m.remove(src, c); got != want {
				t.Fatalf("step %d: Remove = %v, want %v", step, got, want)
			}
		}
		if ix.Dead() < dead {
			compactions++
		}
		if ix.Len() != len(m.files) {
			t.Fatalf("step %d: Len %d, want %d", step, ix.Len(), len(m.files))
		}
		if step%cfg.every != 0 {
			continue
		}
		check(t, ix)
		pairs := 0
		for src := range nSrcs {
			got, want := ix.SourceUsage(index.SourceID(src)), m.usage(index.SourceID(src))
			if got != want {
				t.Fatalf("step %d: source %d usage %+v, want %+v", step, src, got, want)
			}
			pairs += want.Files
		}
		if got := ix.Usage().Files; got != pairs {
			t.Fatalf("step %d: index usage %d files, want %d", step, got, pairs)
		}
		tr, de := ix.Tiered()
		tiered, dense, sparse = max(tiered, tr), max(dense, de), max(sparse, tr-de)
		newKeys := m.keys()
		if !maps.Equal(keys, newKeys) && ix.Generation() == gen {
			t.Fatalf("step %d: keys changed but the generation did not", step)
		}
		gen, keys = ix.Generation(), newKeys
		for _, q := range queries[:cfg.queries] {
			if err := sameResults(ix.Search(q, 1000000), m.search(q)); err != nil {
				t.Fatalf("step %d: Search(%q): %v", step, q, err)
			}
			want := m.search(q)
			if err := sameResults(ix.Search(q, 5), want[:min(5, len(want))]); err != nil {
				t.Fatalf("step %d: Search(%q, 5): %v", step, q, err)
			}
		}
		for range 20 {
			e := entries[r.IntN(nCIDs)]
			got, ok := ix.Lookup(e.ContentID)
			f := m.files[e.ContentID]
			if ok != (f != nil) {
				t.Fatalf("step %d: Lookup found %v", step, ok)
			}
			if ok {
				if err := sameResults([]index.Result{got}, []index.Result{{Entry: f.e, Sources: f.sources()}}); err != nil {
					t.Fatalf("step %d: Lookup: %v", step, err)
				}
			}
		}
		b := index.NewBloom(ix.KeyCount(), 0.01)
		ix.AddTo(b)
		for k := range keys {
			if !b.HasString(k) {
				t.Fatalf("step %d: AddTo left out %q", step, k)
			}
		}
	}
	if compactions < 3 || tiered < 5 || dense < 5 || cfg.sparse && sparse < 5 {
		t.Errorf("only %d compactions; up to %d terms split into tiers, %d with bitmaps, %d without", compactions, tiered, dense, sparse)
	}
	t.Logf("%d files at the end; %d compactions; up to %d terms split into tiers, %d with bitmaps, %d without", ix.Len(), compactions, tiered, dense, sparse)
}

// TestRemoveSourceMany removes leaves with many files, the way a supernode does when
// leaves disconnect, and checks that compaction keeps the index exact.
func TestRemoveSourceMany(t *testing.T) {
	ix := index.New()
	for s := range 50 {
		for i := range 200 {
			var c protocol.ContentID
			c[0], c[1] = byte(s), byte(i)
			ix.Add(index.SourceID(s), index.Entry{ContentID: c, Name: fmt.Sprintf("leaf%d file%d common.mp3", s, i)})
			if i%10 == 0 { // shared with the next leaf too
				ix.Add(index.SourceID(s+1), index.Entry{ContentID: c, Name: "ignored"})
			}
		}
	}
	for s := 0; s < 50; s += 2 {
		if n := ix.RemoveSource(index.SourceID(s)); n != 200+map[bool]int{true: 0, false: 20}[s == 0] {
			t.Fatalf("RemoveSource(%d) = %d", s, n)
		}
		check(t, ix)
	}
	// Even leaves are gone; files of odd leaves remain, plus even leaves' shared files
	// (held by the next, odd, leaf).
	want := 25*200 + 25*20
	if ix.Len() != want {
		t.Fatalf("Len = %d, want %d", ix.Len(), want)
	}
	if got := len(ix.Search("common", 100000)); got != want {
		t.Fatalf("search found %d, want %d", got, want)
	}
	if got := len(ix.Search("leaf2", 0)); got != 20 {
		t.Fatalf("leaf2's shared files: %d, want 20", got)
	}
}

// TestConcurrentSearch runs searches in parallel; with -race it shows that Search does
// not write to the index.
func TestConcurrentSearch(t *testing.T) {
	ix := index.New()
	for i := range 3000 {
		ix.Add(index.SourceID(i%7), index.Entry{ContentID: cid(fmt.Sprint(i)), Name: fmt.Sprintf("song %d love %d.mp3", i%13, i%29)})
	}
	want := ix.Search("love song", 50)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if err := sameResults(ix.Search("love song", 50), want); err != nil {
					t.Error(err)
					return
				}
				ix.Search("12 love", 0)
				ix.Lookup(cid("7"))
			}
		})
	}
	wg.Wait()
}

func TestSearchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	ix := index.New()
	for i := range 1000 {
		ix.Add(index.SourceID(i%3), index.Entry{ContentID: cid(fmt.Sprint(i)), Name: fmt.Sprintf("artist %d - song %d.mp3", i%10, i%100)})
	}
	ix.Search("artist song", 20)
	// Results, their strings and their sources: three allocations whatever the count.
	if n := testing.AllocsPerRun(100, func() { ix.Search("artist song", 20) }); n > 3 {
		t.Errorf("Search allocates %v times", n)
	}
}
