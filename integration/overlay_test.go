package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
)

// TestLineOverlay is the overlay of three supernodes in a line, A-B-C, ten peers
// on each, every peer sharing files of its own.
func TestLineOverlay(t *testing.T) {
	a := startSupernode(t)
	b := startSupernode(t, a)
	c := startSupernode(t, b)
	eventually(t, raceSlowdown*10*time.Second, "supernode links", func() bool {
		return a.Router().Neighbours() == 1 && b.Router().Neighbours() == 2 && c.Router().Neighbours() == 1
	})

	rare := randomBytes(1, 2_500_000) // ten pieces, the last one short
	common := randomBytes(2, 700_000)
	sns := map[string]*supernode.Server{"a": a, "b": b, "c": c}
	peers := map[string][]*peer.Daemon{}
	files := 0
	for _, name := range []string{"a", "b", "c"} {
		for i := 0; i < 10; i++ {
			f := map[string][]byte{
				fmt.Sprintf("%s%02d Ordinary Song %d.mp3", name, i, i): randomBytes(uint64(100+len(name)*i+i), 40_000+i*1000),
				fmt.Sprintf("notes-%s-%d.txt", name, i):                []byte(fmt.Sprintf("notes of %s %d", name, i)),
			}
			switch {
			case name == "c" && i == 7:
				f["Needle Rare Track.flac"] = rare
			case name == "a" && i == 2, name == "c" && i == 3:
				f["Common Anthem.mp3"] = common
			case name == "a" && i == 5:
				f["Zebracorn Local Only.ogg"] = randomBytes(9, 1000)
			}
			files += len(f)
			peers[name] = append(peers[name], startPeer(t, sns[name], fmt.Sprintf("%s-user%d", name, i), f))
		}
	}
	// Distinct content: everything is unique except the one file shared twice.
	wantIndexed := map[*supernode.Server]int{a: 10*2 + 1 + 1, b: 10 * 2, c: 10*2 + 1 + 1}
	eventually(t, raceSlowdown*20*time.Second, "all peers published", func() bool {
		for s, n := range wantIndexed {
			if s.Router().IndexedFiles() != n || s.Router().Leaves() != 10 {
				return false
			}
		}
		return true
	})
	settled(t, a, b, c)
	asker := peers["a"][0]
	// Summaries travel with the supernodes' ticks; wait until A learns of C's files.
	h := findOne(t, asker, "needle rare", 10*time.Second)
	if h.Name != "Needle Rare Track.flac" || h.Size != int64(len(rare)) || len(h.Sources) != 1 || h.Sources[0].Peer != peers["c"][7].ID() {
		t.Fatalf("rare hit = %+v", h)
	}

	out := filepath.Join(t.TempDir(), "rare.flac")
	path, err := asker.Get(context.Background(), h.ID, out, nil)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, rare) {
		t.Fatalf("downloaded file differs: %d bytes, want %d", len(got), len(rare))
	}

	// The file shared on A and on C is one result with both sources, and
	// B, which has none, is not asked: A sends the query to C directly.
	// C takes its leaves' later keys up to 5 s after its first ones, so
	// "needle rare" may be out before C's copy of this file: wait for both.
	bAsked := b.Router().Stats.QueriesFromNeighbors.Load()
	var hits []protocol.Hit
	var res apitype.SearchResult
	eventually(t, raceSlowdown*10*time.Second, "both sources of the common file", func() bool {
		hits, res = search(t, asker, "COMMON anthem")
		return len(hits) != 1 || len(hits[0].Sources) >= 2
	})
	if len(hits) != 1 {
		t.Fatalf("common: %d results, want 1: %+v", len(hits), hits)
	}
	srcs := map[protocol.PeerID]bool{}
	for _, s := range hits[0].Sources {
		srcs[s.Peer] = true
	}
	if len(srcs) != 2 || !srcs[peers["a"][2].ID()] || !srcs[peers["c"][3].ID()] {
		t.Fatalf("common sources = %+v", hits[0].Sources)
	}
	if res.Supernodes != 2 || b.Router().Stats.QueriesFromNeighbors.Load() != bAsked {
		t.Errorf("common search reached %d supernodes, B among them: %v; want A and C", res.Supernodes,
			b.Router().Stats.QueriesFromNeighbors.Load() != bAsked)
	}

	// A download by content ID without a search first finds its sources itself.
	fresh := peers["b"][4]
	p2 := filepath.Join(t.TempDir(), "common.mp3")
	if _, err := fresh.Get(context.Background(), hits[0].ID, p2, nil); err != nil {
		t.Fatalf("get by content ID: %v", err)
	}
	if got, _ := os.ReadFile(p2); !bytes.Equal(got, common) {
		t.Fatal("common file differs")
	}
}

// TestSummariesPruneQueries counts query messages per supernode: a query goes
// only where a summary says a match may be, straight there, past the
// supernodes between.
func TestSummariesPruneQueries(t *testing.T) {
	a := startSupernode(t)
	b := startSupernode(t, a)
	c := startSupernode(t, b)
	pa := startPeer(t, a, "pa", map[string][]byte{"Zebracorn Anthem.mp3": randomBytes(1, 5000)})
	pb := startPeer(t, b, "pb", map[string][]byte{"Middle Ground.mp3": randomBytes(2, 5000)})
	pc := startPeer(t, c, "pc", map[string][]byte{"Quokka Lullaby.ogg": randomBytes(3, 5000)})
	_ = pb
	eventually(t, raceSlowdown*10*time.Second, "overlay up", func() bool {
		return a.Router().IndexedFiles() == 1 && b.Router().IndexedFiles() == 1 && c.Router().IndexedFiles() == 1 &&
			b.Router().Neighbours() == 2
	})
	// A supernode's keys reach the keepers a second per hop after it took
	// them, at most every 5 s. Three searches a round, paced within a leaf's query rate (20 a
	// second): over it, most would be refused.
	eventually(t, raceSlowdown*15*time.Second, "every supernode's file to be found", func() bool {
		h1, _ := search(t, pc, "zebracorn")
		h2, _ := search(t, pa, "quokka")
		h3, _ := search(t, pa, "middle")
		if len(h1) == 1 && len(h2) == 1 && len(h3) == 1 {
			return true
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	settled(t, a, b, c)
	type counts struct{ a, b, c uint64 }
	got := func() counts {
		return counts{
			a.Router().Stats.QueriesFromNeighbors.Load(),
			b.Router().Stats.QueriesFromNeighbors.Load(),
			c.Router().Stats.QueriesFromNeighbors.Load(),
		}
	}
	// A keeps every word of an overlay of three. A word held nowhere costs
	// a lookup of its first keeper unless that is A: an empty list of A's
	// own may be one whose keys have not reached it yet.
	var nowhere counts
	ids := []ring.ID{ring.ID(a.ID()), ring.ID(b.ID()), ring.ID(c.ID())}
	switch ring.New(ids).Replicas(ring.KeyPos(index.HashString("nonexistentword")), 1)[0] {
	case ids[1]:
		nowhere.b = 1
	case ids[2]:
		nowhere.c = 1
	}
	cases := []struct {
		from  *peer.Daemon
		query string
		hits  int
		delta counts // query messages (and lookups) each supernode receives from other supernodes
	}{
		{pa, "zebracorn", 1, counts{0, 0, 0}},      // only on A: nobody else is asked
		{pa, "quokka lullaby", 1, counts{0, 0, 1}}, // on C: directly, not through B
		{pc, "zebracorn anthem", 1, counts{1, 0, 0}},
		{pa, "middle", 1, counts{0, 1, 0}},           // on B: C is not asked
		{pa, "nonexistentword", 0, nowhere},          // nowhere: no holder is asked
		{pa, "zebracorn quokka", 0, counts{0, 0, 0}}, // AND of terms on different supernodes
	}
	for _, tc := range cases {
		before := got()
		hits, _ := search(t, tc.from, tc.query)
		after := got()
		d := counts{after.a - before.a, after.b - before.b, after.c - before.c}
		if len(hits) != tc.hits || d != tc.delta {
			t.Errorf("%q: %d hits, query messages per supernode %+v; want %d hits, %+v", tc.query, len(hits), d, tc.hits, tc.delta)
		}
	}
	if p := a.Router().Stats.QueriesPruned.Load(); p == 0 {
		t.Error("A never pruned a query")
	}
}

// TestCorruptSourceIsBanned: one source serves a file whose bytes changed on disk
// after hashing; the downloader detects the bad pieces, bans that source and gets
// the pieces from the other one.
func TestCorruptSourceIsBanned(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(7, 8<<20) // 32 pieces
	startPeer(t, sn, "good", map[string][]byte{"Big Song.mp3": data})
	bad := startPeer(t, sn, "bad", map[string][]byte{"Big Song.mp3": data})
	getter := startPeer(t, sn, "getter", nil, func(c *peer.Config) { c.Pipeline = 2 })
	eventually(t, raceSlowdown*10*time.Second, "both sources published", func() bool {
		h, _ := search(t, getter, "big song")
		return len(h) == 1 && len(h[0].Sources) == 2
	})
	// Flip one byte in every piece of the bad copy, keeping size and mtime, as a
	// failing disk would.
	f := bad.Share().Files()[0]
	st, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), data...)
	for off := 0; off < len(corrupt); off += int(f.Meta.PieceSize) {
		corrupt[off+100] ^= 0xff
	}
	if err := os.WriteFile(f.Path, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f.Path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	var last apitype.Progress
	out := filepath.Join(t.TempDir(), "big.mp3")
	_, err = getter.Get(context.Background(), f.ID, out, func(p apitype.Progress) { last = p })
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if last.BadPieces < 1 || last.Banned != 1 {
		t.Fatalf("bad pieces %d, banned %d; want >= 1 and 1", last.BadPieces, last.Banned)
	}
	t.Logf("%d bad pieces detected, source banned, all %d pieces verified", last.BadPieces, last.Have)
}
