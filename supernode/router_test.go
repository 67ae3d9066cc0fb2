package supernode

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/index/indextest"
	"github.com/supernet-p2p/supernet/protocol"
)

// words name each supernode's own file, so that a query for one finds one file.
var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}

func fileOf(i int) string { return words[i] + " common song.mp3" }

// shareOnEach attaches one leaf to every supernode, sharing fileOf(i).
func shareOnEach(t *testing.T, net *memNet) []*memLeaf {
	t.Helper()
	leaves := make([]*memLeaf, len(net.nodes))
	for i := range net.nodes {
		leaves[i] = net.addLeaf(i, "leaf"+net.nodes[i].name)
		if err := leaves[i].publish(fileOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	return leaves
}

// searchedBy returns how many supernodes searched for the last query: the origin,
// plus every Query delivered since before, minus the duplicates.
func searchedBy(net *memNet, before []int, dupsBefore uint64) int {
	n := 1
	for i, c := range net.queriesGot() {
		n += c - before[i]
	}
	return n - int(dups(net)-dupsBefore)
}

func dups(net *memNet) uint64 {
	var n uint64
	for _, nd := range net.nodes {
		n += nd.r.Stats.DuplicateQueries.Load()
	}
	return n
}

func TestFindEverywhere(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		edges [][2]int
		// exactLine checks QueryDone.Supernodes against the distance along a line
		// of supernodes numbered in order.
		exactLine bool
	}{
		{name: "line", nodes: 4, edges: [][2]int{{0, 1}, {1, 2}, {2, 3}}, exactLine: true},
		{name: "ring", nodes: 6, edges: [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 0}}},
		{name: "mesh", nodes: 7, edges: [][2]int{{0, 1}, {0, 2}, {1, 2}, {1, 3}, {2, 4}, {3, 4}, {3, 5}, {4, 6}, {5, 6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newMemNet(t, tt.nodes, testRouterConfig())
			for _, e := range tt.edges {
				net.connect(e[0], e[1])
			}
			leaves := shareOnEach(t, net)
			net.settle()
			for from := range net.nodes {
				for target := range net.nodes {
					before, d0 := net.queriesGot(), dups(net)
					r := leaves[from].search(words[target])
					if len(r.hits) != 1 || r.hits[0].Name != fileOf(target) || r.hits[0].ID != cidOf(fileOf(target)) {
						t.Fatalf("%s searching %q: hits %q, want [%q]", net.nodes[from].name, words[target], r.names(), fileOf(target))
					}
					if src := r.hits[0].Sources; len(src) != 1 || src[0].Peer != leaves[target].peer || src[0].Name != leaves[target].name {
						t.Errorf("%s searching %q: sources %+v", net.nodes[from].name, words[target], src)
					}
					if r.done.Status != protocol.StatusOK {
						t.Errorf("%s searching %q: status %v", net.nodes[from].name, words[target], r.done.Status)
					}
					if got, want := int(r.done.Supernodes), searchedBy(net, before, d0); got != want {
						t.Errorf("%s searching %q: QueryDone.Supernodes = %d, but %d searched", net.nodes[from].name, words[target], got, want)
					}
					if tt.exactLine {
						// Summaries take the query straight to the file and no further.
						if got, want := int(r.done.Supernodes), max(from, target)-min(from, target)+1; got != want {
							t.Errorf("%s searching %q: QueryDone.Supernodes = %d, want %d", net.nodes[from].name, words[target], got, want)
						}
					}
				}
				// A term every file has reaches every supernode, and every file once.
				before, d0 := net.queriesGot(), dups(net)
				r := leaves[from].search("common song")
				got := r.names()
				sort.Strings(got)
				var want []string
				for i := range net.nodes {
					want = append(want, fileOf(i))
				}
				sort.Strings(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s searching %q: hits %q, want %q", net.nodes[from].name, "common song", got, want)
				}
				if n := int(r.done.Supernodes); n != tt.nodes || n != searchedBy(net, before, d0) {
					t.Errorf("%s searching %q: QueryDone.Supernodes = %d, want %d", net.nodes[from].name, "common song", n, tt.nodes)
				}
			}
			net.noErrors()
		})
	}
}

func TestHopLimit(t *testing.T) {
	cfg := testRouterConfig()
	cfg.HopLimit = 2
	net := newMemNet(t, 4, cfg) // A-B-C-D: D is three hops from A
	net.line()
	leaves := shareOnEach(t, net)
	net.settle()

	tests := []struct {
		from       int
		text       string
		hops       uint8
		want       []int // the supernodes whose file is found
		supernodes int
	}{
		{from: 0, text: "alpha", want: []int{0}, supernodes: 1},
		{from: 0, text: "bravo", want: []int{1}, supernodes: 2},
		{from: 0, text: "charlie", want: []int{2}, supernodes: 3},
		{from: 0, text: "delta", want: nil, supernodes: 1}, // out of reach, and the summary says so
		{from: 0, text: "common", want: []int{0, 1, 2}, supernodes: 3},
		{from: 0, text: "common", hops: 1, want: []int{0, 1}, supernodes: 2},
		{from: 0, text: "common", hops: 8, want: []int{0, 1, 2}, supernodes: 3}, // clamped to HopLimit
		{from: 1, text: "delta", want: []int{3}, supernodes: 3},
		{from: 1, text: "common", want: []int{0, 1, 2, 3}, supernodes: 4},
		{from: 3, text: "common", want: []int{1, 2, 3}, supernodes: 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/hops=%d", net.nodes[tt.from].name, tt.text, tt.hops), func(t *testing.T) {
			before := net.queriesGot()
			r := leaves[tt.from].query(protocol.Query{Text: tt.text, Hops: tt.hops})
			got := r.names()
			sort.Strings(got)
			var want []string
			for _, i := range tt.want {
				want = append(want, fileOf(i))
			}
			if !slices.Equal(got, want) {
				t.Errorf("hits %q, want %q", got, want)
			}
			if int(r.done.Supernodes) != tt.supernodes {
				t.Errorf("QueryDone.Supernodes = %d, want %d", r.done.Supernodes, tt.supernodes)
			}
			// A supernode more than HopLimit hops away never sees the query.
			after := net.queriesGot()
			for i := range net.nodes {
				if d := max(i, tt.from) - min(i, tt.from); d > int(cfg.HopLimit) && after[i] != before[i] {
					t.Errorf("%s, %d hops away, received the query", net.nodes[i].name, d)
				}
			}
		})
	}
	net.noErrors()
}

func TestDuplicateSuppression(t *testing.T) {
	t.Run("ring", func(t *testing.T) {
		net := newMemNet(t, 4, testRouterConfig())
		net.ring() // A-B-C-D-A: every query reaches C both ways
		leaves := shareOnEach(t, net)
		net.settle()
		for from := range net.nodes {
			before, d0 := net.queriesGot(), dups(net)
			r := leaves[from].search("common")
			if len(r.hits) != 4 {
				t.Errorf("from %s: %d hits %q, want 4", net.nodes[from].name, len(r.hits), r.names())
			}
			seen := map[protocol.ContentID]bool{}
			for _, h := range r.hits {
				if seen[h.ID] {
					t.Errorf("from %s: %s found twice", net.nodes[from].name, h.Name)
				}
				seen[h.ID] = true
			}
			if dups(net) == d0 {
				t.Errorf("from %s: no duplicate query in a ring", net.nodes[from].name)
			}
			// The query finished without any clock advancing: every duplicate was
			// answered at once.
			if r.done.Status != protocol.StatusOK || r.done.Supernodes != 4 || searchedBy(net, before, d0) != 4 {
				t.Errorf("from %s: QueryDone %+v, %d searched", net.nodes[from].name, r.done, searchedBy(net, before, d0))
			}
		}
		net.noErrors()
	})
	t.Run("direct", func(t *testing.T) {
		net := newMemNet(t, 2, testRouterConfig())
		net.connect(0, 1)
		shareOnEach(t, net)
		b, link := net.nodes[1].r, net.nodes[1].links[0]
		q := &protocol.Query{ID: protocol.QueryID{1, 2, 3}, Text: "bravo", Hops: 1}
		for i, want := range []struct {
			hits       int
			supernodes uint32
		}{{1, 1}, {0, 0}} {
			net.queue = net.queue[:0]
			if err := b.Handle(link, q); err != nil {
				t.Fatal(err)
			}
			hits, dones := 0, 0
			for _, e := range net.queue {
				switch m := e.m.(type) {
				case *protocol.Hits:
					hits += len(m.Hits)
				case *protocol.QueryDone:
					dones++
					if m.ID != q.ID || m.Supernodes != want.supernodes {
						t.Errorf("copy %d: QueryDone %+v, want Supernodes %d", i+1, m, want.supernodes)
					}
				}
			}
			if hits != want.hits || dones != 1 {
				t.Errorf("copy %d: %d hits and %d QueryDones, want %d and 1", i+1, hits, dones, want.hits)
			}
		}
		if n := b.Stats.DuplicateQueries.Load(); n != 1 {
			t.Errorf("DuplicateQueries = %d, want 1", n)
		}
		net.queue = net.queue[:0]
		// Past SeenTTL the ID is forgotten, and the same query is searched again.
		net.clock.Advance(b.Config().SeenTTL + time.Second)
		b.Tick()
		net.queue = net.queue[:0]
		if err := b.Handle(link, q); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(net.queue, func(e envelope) bool { return e.m.Type() == protocol.TypeHits }) {
			t.Error("query not searched again after SeenTTL")
		}
		net.queue = net.queue[:0]
	})
}

func TestSummariesPrune(t *testing.T) {
	net := newMemNet(t, 4, testRouterConfig())
	net.line()
	leaves := shareOnEach(t, net)
	net.settle()
	a := leaves[0]
	tests := []struct {
		name string
		q    protocol.Query
		hits int
		want []int // Query messages each supernode receives
	}{
		{"own term", protocol.Query{Text: "alpha"}, 1, []int{0, 0, 0, 0}},
		{"next", protocol.Query{Text: "bravo"}, 1, []int{0, 1, 0, 0}},
		{"two away", protocol.Query{Text: "charlie"}, 1, []int{0, 1, 1, 0}},
		{"far end", protocol.Query{Text: "delta"}, 1, []int{0, 1, 1, 1}},
		{"nobody", protocol.Query{Text: "zebra"}, 0, []int{0, 0, 0, 0}},
		{"and across supernodes", protocol.Query{Text: "bravo delta"}, 0, []int{0, 0, 0, 0}},
		{"and on one supernode", protocol.Query{Text: "charlie song"}, 1, []int{0, 1, 1, 0}},
		{"content id", protocol.Query{CID: cidOf(fileOf(3))}, 1, []int{0, 1, 1, 1}},
		{"unknown content id", protocol.Query{CID: cidOf("nothing")}, 0, []int{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := net.queriesGot()
			r := a.query(tt.q)
			if len(r.hits) != tt.hits {
				t.Errorf("%d hits %q, want %d", len(r.hits), r.names(), tt.hits)
			}
			got := net.queriesGot()
			for i := range got {
				got[i] -= before[i]
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("queries received per supernode %v, want %v", got, tt.want)
			}
		})
	}
	if net.nodes[0].r.Stats.QueriesPruned.Load() == 0 {
		t.Error("QueriesPruned = 0")
	}
	net.noErrors()
}

// TestSummaryLevelsStayPrecise checks that a neighbour that sends fewer summary
// levels than the hop limit (one with no other neighbours sends only its own) does
// not degrade the levels built from it: an empty stand-in level folded into a union
// would shrink it to the smallest filter size and make it match everything.
func TestSummaryLevelsStayPrecise(t *testing.T) {
	//   A - B - C
	//       |
	//       E - F (F shares many files)
	cfg := testRouterConfig()
	cfg.SummaryBits = 1 << 18 // few enough false positives to count them
	net := newMemNet(t, 5, cfg)
	const a, b, c, e, f = 0, 1, 2, 3, 4
	net.connect(a, b)
	net.connect(b, c)
	net.connect(b, e)
	net.connect(e, f)
	big := net.addLeaf(f, "big")
	entries := indextest.Names(7, 3000)
	for i := 0; i < len(entries); i += protocol.MaxFilesPerFrame {
		var fs []protocol.FileRecord
		for _, x := range entries[i:min(i+protocol.MaxFilesPerFrame, len(entries))] {
			fs = append(fs, protocol.FileRecord{ID: x.ContentID, Name: x.Name, Size: x.Size, Tags: x.Tags})
		}
		if err := big.send(&protocol.Publish{Files: fs}); err != nil {
			t.Fatal(err)
		}
	}
	leafC := net.addLeaf(c, "leafC")
	net.settle()

	before := net.queriesGot()
	for i := range 50 {
		r := leafC.search(fmt.Sprintf("nosuchword%d", i))
		if len(r.hits) != 0 {
			t.Fatalf("hits for a word nobody has: %q", r.names())
		}
	}
	if n := net.queriesGot()[b] - before[b]; n > 1 { // a false positive at most
		t.Errorf("B received %d of 50 queries for words nobody has", n)
	}
	// And F's files are still found, three hops away.
	if r := leafC.search(entries[0].Name); len(r.hits) == 0 {
		t.Errorf("%q not found", entries[0].Name)
	}
	net.noErrors()
}

func TestSummariesStayCurrent(t *testing.T) {
	tests := []struct {
		name string
		// change makes "delta" (shared by a leaf on D, at the end of A-B-C-D) vanish.
		change func(t *testing.T, net *memNet, leaf *memLeaf)
		// searchable is whether D still answers for delta until summaries update.
		stillSearched bool
	}{
		{"leaf down", func(t *testing.T, net *memNet, leaf *memLeaf) { leaf.remove() }, true},
		{"unpublish", func(t *testing.T, net *memNet, leaf *memLeaf) {
			if err := leaf.send(&protocol.Unpublish{IDs: []protocol.ContentID{cidOf(fileOf(3))}}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"publish reset", func(t *testing.T, net *memNet, leaf *memLeaf) {
			if err := leaf.send(&protocol.Publish{Reset: true, Files: files("golf new song.mp3")}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"neighbour down", func(t *testing.T, net *memNet, leaf *memLeaf) { net.disconnect(2, 3) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newMemNet(t, 4, testRouterConfig())
			net.line()
			leaves := shareOnEach(t, net)
			a := leaves[0]
			net.settle()
			if r := a.search("delta"); len(r.hits) != 1 {
				t.Fatalf("before: hits %q", r.names())
			}

			tt.change(t, net, leaves[3])
			before := net.queriesGot()
			if r := a.search("delta"); len(r.hits) != 0 {
				t.Errorf("right after: hits %q", r.names())
			}
			if got := net.queriesGot()[3] - before[3]; tt.stillSearched && got != 1 {
				t.Errorf("right after: D received %d queries; its neighbours' summaries changed before a Tick", got)
			}

			net.settle()
			before = net.queriesGot()
			if r := a.search("delta"); len(r.hits) != 0 {
				t.Errorf("after ticks: hits %q", r.names())
			}
			if got := net.queriesGot(); !slices.Equal(got, before) {
				t.Errorf("after ticks: queries received per supernode went from %v to %v; the summaries are stale", before, got)
			}
			// What is left is still found.
			if r := a.search("charlie"); len(r.hits) != 1 {
				t.Errorf("charlie: hits %q", r.names())
			}
			if tt.name == "publish reset" {
				if r := a.search("golf"); len(r.hits) != 1 || r.hits[0].Sources[0].Peer != leaves[3].peer {
					t.Errorf("golf after reset: hits %+v", r.hits)
				}
				if n := net.nodes[3].r.IndexedFiles(); n != 1 {
					t.Errorf("D indexes %d files after a reset to one", n)
				}
			}
			net.noErrors()
		})
	}
}

func TestQueryByContentID(t *testing.T) {
	net := newMemNet(t, 4, testRouterConfig())
	net.line()
	shareOnEach(t, net)
	// One file, shared by two leaves of A and one each of C and D, under different names.
	cid := cidOf("the shared file")
	want := map[protocol.PeerID]string{}
	for i, at := range []int{0, 0, 2, 3} {
		l := net.addLeaf(at, fmt.Sprintf("sharer%d", i))
		f := protocol.FileRecord{ID: cid, Name: fmt.Sprintf("copy %d.mp3", i), Size: 4242}
		if err := l.send(&protocol.Publish{Files: []protocol.FileRecord{f}}); err != nil {
			t.Fatal(err)
		}
		want[l.peer] = l.name
	}
	net.settle()

	for from, l := range []*memLeaf{net.addLeaf(0, "qa"), net.addLeaf(1, "qb"), net.addLeaf(3, "qd")} {
		r := l.query(protocol.Query{CID: cid})
		got := map[protocol.PeerID]string{}
		for _, h := range r.hits {
			if h.ID != cid || h.Size != 4242 {
				t.Errorf("from %s: hit %+v", l.node.name, h.FileRecord)
			}
			for _, s := range h.Sources {
				if _, dup := got[s.Peer]; dup {
					t.Errorf("from %s: source %s twice", l.node.name, s.Name)
				}
				got[s.Peer] = s.Name
			}
		}
		if len(got) != len(want) {
			t.Errorf("from %d (%s): sources %v, want %v", from, l.node.name, got, want)
		}
		for p, n := range want {
			if got[p] != n {
				t.Errorf("from %s: source %s missing", l.node.name, n)
			}
		}
		// One hit per supernode holding the file: A, C and D.
		if len(r.hits) != 3 {
			t.Errorf("from %s: %d hits, want 3", l.node.name, len(r.hits))
		}
	}
	net.noErrors()
}

func TestQueryTimeout(t *testing.T) {
	cfg := testRouterConfig()
	cfg.QueryTimeout = 2 * time.Second
	var (
		mu    sync.Mutex
		ended []time.Duration // leaf queries' durations, as /metrics gets them
	)
	cfg.LeafQueryEnded = func(took time.Duration, _ uint32) {
		mu.Lock()
		defer mu.Unlock()
		ended = append(ended, took)
	}
	net := newMemNet(t, 3, cfg)
	net.line()
	leaves := shareOnEach(t, net)
	net.settle()
	net.nodes[2].mute = true // C takes queries and never answers

	id := leaves[0].start(protocol.Query{Text: "common"})
	if r := leaves[0].collect(id); r.done != nil || len(r.hits) != 2 {
		t.Fatalf("before the timeout: %d hits, QueryDone %+v; want 2 hits and no QueryDone", len(r.hits), r.done)
	}
	net.clock.Advance(cfg.QueryTimeout / 2)
	net.tick()
	if r := leaves[0].collect(id); r.done != nil {
		t.Fatalf("QueryDone %+v before the timeout", r.done)
	}
	net.clock.Advance(cfg.QueryTimeout)
	net.tick()
	r := leaves[0].collect(id)
	if r.done == nil {
		t.Fatal("no QueryDone after the timeout")
	}
	if r.done.Status != protocol.StatusTimeout || r.dones != 1 || r.after != 0 {
		t.Errorf("QueryDone %+v (%d of them, %d hits after)", r.done, r.dones, r.after)
	}
	if got := r.names(); len(got) != 2 || !slices.Contains(got, fileOf(0)) || !slices.Contains(got, fileOf(1)) {
		t.Errorf("hits %q, want A's and B's", got)
	}
	if a, b := net.nodes[0].r.Stats.QueryTimeouts.Load(), net.nodes[1].r.Stats.QueryTimeouts.Load(); a+b == 0 {
		t.Error("no QueryTimeouts counted")
	}
	mu.Lock()
	if want := cfg.QueryTimeout * 3 / 2; len(ended) != 1 || ended[0] != want {
		t.Errorf("leaf query durations %v, want one of %v", ended, want)
	}
	mu.Unlock()
	// The timed-out query holds no state.
	for _, nd := range net.nodes[:2] {
		nd.r.mu.Lock()
		n := len(nd.r.queries)
		nd.r.mu.Unlock()
		if n != 0 {
			t.Errorf("%s still has %d queries in flight", nd.name, n)
		}
	}
}

func TestNeighbourDownFinishesQuery(t *testing.T) {
	tests := []struct {
		name       string
		down       [2]int
		supernodes uint32
	}{
		{"next hop", [2]int{0, 1}, 1},   // A gives up on B
		{"further on", [2]int{1, 2}, 2}, // B gives up on C and reports to A
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newMemNet(t, 3, testRouterConfig())
			net.line()
			leaves := shareOnEach(t, net)
			net.settle()
			net.nodes[2].mute = true
			id := leaves[0].start(protocol.Query{Text: "common"})
			if r := leaves[0].collect(id); r.done != nil {
				t.Fatalf("QueryDone %+v while C is silent", r.done)
			}
			net.disconnect(tt.down[0], tt.down[1])
			net.run()
			r := leaves[0].collect(id)
			if r.done == nil {
				t.Fatal("no QueryDone after the link went down")
			}
			if r.done.Status != protocol.StatusOK || r.done.Supernodes != tt.supernodes || r.dones != 1 {
				t.Errorf("QueryDone %+v (%d), want Supernodes %d", r.done, r.dones, tt.supernodes)
			}
			if len(r.hits) != 2 {
				t.Errorf("hits %q, want A's and B's", r.names())
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("query limit", func(t *testing.T) {
		cfg := testRouterConfig()
		cfg.MaxResults = 25
		net := newMemNet(t, 2, cfg)
		net.connect(0, 1)
		la, lb := net.addLeaf(0, "la"), net.addLeaf(1, "lb")
		var na, nb []string
		for i := range 5 {
			na = append(na, fmt.Sprintf("common a%d.mp3", i))
		}
		for i := range 40 {
			nb = append(nb, fmt.Sprintf("common b%d.mp3", i))
		}
		if err := la.publish(na...); err != nil {
			t.Fatal(err)
		}
		if err := lb.publish(nb...); err != nil {
			t.Fatal(err)
		}
		net.settle()
		for _, tt := range []struct {
			leaf  *memLeaf
			limit uint16
			want  int
		}{
			{la, 3, 3},   // the local index alone fills it
			{la, 10, 10}, // 5 local, 5 of B's 10
			{la, 0, 25},  // MaxResults
			{la, 1000, 25},
			{lb, 10, 10},
			{lb, 0, 25},
		} {
			r := tt.leaf.query(protocol.Query{Text: "common", Limit: tt.limit})
			if len(r.hits) != tt.want {
				t.Errorf("from %s, limit %d: %d hits, want %d", tt.leaf.node.name, tt.limit, len(r.hits), tt.want)
			}
		}
	})

	t.Run("files per leaf", func(t *testing.T) {
		cfg := testRouterConfig()
		cfg.MaxFilesPerLeaf = 3
		net := newMemNet(t, 1, cfg)
		r := net.nodes[0].r
		l := net.addLeaf(0, "l")
		err := l.publish("one.mp3", "two.mp3", "three.mp3", "four.mp3", "five.mp3")
		if !errors.Is(err, protocol.ErrOverloaded) {
			t.Fatalf("publish of 5 with a cap of 3: %v, want ErrOverloaded", err)
		}
		if n := r.IndexedFiles(); n != 3 {
			t.Errorf("%d files indexed, want 3", n)
		}
		if err := l.publish("six.mp3"); !errors.Is(err, protocol.ErrOverloaded) {
			t.Errorf("publish past the cap: %v", err)
		}
		// Unpublishing makes room; Reset starts from zero; other leaves have their own cap.
		if err := l.send(&protocol.Unpublish{IDs: []protocol.ContentID{cidOf("one.mp3")}}); err != nil {
			t.Fatal(err)
		}
		if err := l.publish("six.mp3"); err != nil {
			t.Errorf("publish after unpublish: %v", err)
		}
		if err := l.send(&protocol.Publish{Reset: true, Files: files("x.mp3", "y.mp3", "z.mp3")}); err != nil {
			t.Errorf("reset: %v", err)
		}
		if err := net.addLeaf(0, "m").publish("p.mp3", "q.mp3", "r.mp3"); err != nil {
			t.Errorf("second leaf: %v", err)
		}
		if n := r.IndexedFiles(); n != 6 {
			t.Errorf("%d files indexed, want 6", n)
		}
	})

	t.Run("unknown link", func(t *testing.T) {
		net := newMemNet(t, 2, testRouterConfig())
		net.connect(0, 1)
		l := net.addLeaf(0, "l")
		r := net.nodes[0].r
		const stranger LinkID = 99999
		for _, tt := range []struct {
			from LinkID
			m    protocol.Message
		}{
			{stranger, &protocol.Publish{Files: files("x.mp3")}},
			{stranger, &protocol.Unpublish{IDs: []protocol.ContentID{cidOf("x.mp3")}}},
			{stranger, &protocol.Query{Text: "x"}},
			{net.nodes[0].links[1], &protocol.Publish{Files: files("x.mp3")}}, // a supernode is not a leaf
			{l.id, &protocol.Summary{Level: 0, Depth: 1, Filter: mustMarshal(t, index.NewBloomBits(1024))}},
		} {
			if err := r.Handle(tt.from, tt.m); !errors.Is(err, protocol.ErrForbidden) {
				t.Errorf("%s from link %d: %v, want ErrForbidden", tt.m.Type(), tt.from, err)
			}
		}
		if err := r.Handle(l.id, &protocol.Meta{Size: 1, PieceSize: 1}); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("meta from a leaf: %v, want ErrBadRequest", err)
		}
		if len(net.queue) != 0 || r.IndexedFiles() != 0 {
			t.Errorf("refused messages had effects: %d sent, %d files", len(net.queue), r.IndexedFiles())
		}
	})

	t.Run("stray hits", func(t *testing.T) {
		net := newMemNet(t, 3, testRouterConfig())
		net.connect(0, 1)
		net.connect(0, 2)
		leaves := shareOnEach(t, net)
		net.settle()
		a := net.nodes[0]
		net.nodes[1].mute = true
		id := leaves[0].start(protocol.Query{Text: "bravo"}) // waits on B only
		if len(net.nodes[1].queries) == 0 {
			t.Fatal("B did not get the query")
		}
		inner := net.nodes[1].queries[len(net.nodes[1].queries)-1].ID
		stray := []protocol.Hit{{
			FileRecord: protocol.FileRecord{ID: cidOf("stray"), Name: "stray.mp3"},
			Sources:    []protocol.Source{{Peer: protocol.PeerID{9}}},
		}}
		for _, tt := range []struct {
			name string
			from LinkID
			id   protocol.QueryID
		}{
			{"unknown query", a.links[1], protocol.QueryID{0xde, 0xad}},
			{"the leaf's own ID", a.links[1], id},
			{"a neighbour the query did not go to", a.links[2], inner},
		} {
			for _, m := range []protocol.Message{&protocol.Hits{ID: tt.id, Hits: stray}, &protocol.QueryDone{ID: tt.id, Supernodes: 5}} {
				if err := a.r.Handle(tt.from, m); err != nil {
					t.Errorf("%s: %s: %v", tt.name, m.Type(), err)
				}
			}
			if len(net.queue) != 0 {
				t.Errorf("%s: %d messages sent for it", tt.name, len(net.queue))
			}
		}
		if r := leaves[0].collect(id); r.done != nil || len(r.hits) != 0 {
			t.Errorf("the leaf got %q, QueryDone %+v", r.names(), r.done)
		}
		// The real answer still completes it.
		answer := []protocol.Hit{{
			FileRecord: protocol.FileRecord{ID: cidOf("bravo answer"), Name: "bravo answer.mp3"},
			Sources:    []protocol.Source{{Peer: protocol.PeerID{9}}},
		}}
		for _, m := range []protocol.Message{&protocol.Hits{ID: inner, Hits: answer}, &protocol.QueryDone{ID: inner, Supernodes: 1}} {
			if err := a.r.Handle(a.links[1], m); err != nil {
				t.Fatal(err)
			}
		}
		net.run()
		if r := leaves[0].collect(id); r.done == nil || r.done.Supernodes != 2 || len(r.hits) != 1 {
			t.Errorf("after B's answer: hits %q, QueryDone %+v", r.names(), r.done)
		}
	})
}

// matchAll has neighbour nid send r a summary that matches every query at
// every level: a neighbour gets queries only once it has sent a summary.
func matchAll(t testing.TB, r *Router, nid LinkID) {
	t.Helper()
	depth := r.Config().HopLimit
	for lvl := range depth {
		f := []byte{1, 10, 7}
		f = append(f, bytes.Repeat([]byte{0xff}, 1<<10/8)...)
		if err := r.Handle(nid, &protocol.Summary{Level: lvl, Depth: depth, Filter: f}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustMarshal(t *testing.T, b *index.Bloom) []byte {
	t.Helper()
	p, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// instantOutbox is a neighbour that answers a Query as it is sent, the way a
// neighbour on another goroutine can answer before the sender has moved on.
type instantOutbox struct {
	r       *Router
	nb      LinkID
	nbHits  int
	toLeaf  []protocol.Message
	leafID  LinkID
	nbQuery protocol.Query
}

func (o *instantOutbox) Send(to LinkID, m protocol.Message) {
	switch {
	case to == o.leafID:
		o.toLeaf = append(o.toLeaf, m)
	case to == o.nb:
		q, ok := m.(*protocol.Query)
		if !ok {
			return
		}
		o.nbQuery = *q
		var hits []protocol.Hit
		for i := range min(o.nbHits, int(q.Limit)) {
			hits = append(hits, protocol.Hit{
				FileRecord: protocol.FileRecord{ID: cidOf(fmt.Sprint("remote", i)), Name: fmt.Sprintf("common remote %d", i)},
				Sources:    []protocol.Source{{Peer: protocol.PeerID{1}}},
			})
		}
		if len(hits) > 0 {
			o.r.Handle(o.nb, &protocol.Hits{ID: q.ID, Hits: hits})
		}
		o.r.Handle(o.nb, &protocol.QueryDone{ID: q.ID, Supernodes: 1})
	}
}

// TestLocalHitsPrecedeQueryDone checks the order a leaf sees when neighbours answer
// faster than the local search: the supernode's own hits still come before its
// QueryDone, and the limit still holds.
func TestLocalHitsPrecedeQueryDone(t *testing.T) {
	for _, nbHits := range []int{0, 3, 50} {
		t.Run(fmt.Sprintf("neighbour hits %d", nbHits), func(t *testing.T) {
			o := &instantOutbox{nb: 2, leafID: 1, nbHits: nbHits}
			r := NewRouter(testRouterConfig(), o)
			o.r = r
			r.NeighbourUp(o.nb, protocol.PeerID{2})
			matchAll(t, r, o.nb)
			r.LeafUp(o.leafID, LeafInfo{Peer: protocol.PeerID{3}})
			var names []string
			for i := range 5 {
				names = append(names, fmt.Sprintf("common local %d.mp3", i))
			}
			if err := r.Handle(o.leafID, &protocol.Publish{Files: files(names...)}); err != nil {
				t.Fatal(err)
			}
			const limit = 10
			if err := r.Handle(o.leafID, &protocol.Query{ID: protocol.QueryID{7}, Text: "common", Limit: limit}); err != nil {
				t.Fatal(err)
			}
			if o.nbQuery.ID.IsZero() {
				t.Fatal("query not forwarded")
			}
			hits, done := 0, false
			for _, m := range o.toLeaf {
				switch m := m.(type) {
				case *protocol.Hits:
					if done {
						t.Errorf("%d hits after QueryDone", len(m.Hits))
					}
					hits += len(m.Hits)
				case *protocol.QueryDone:
					if done {
						t.Error("second QueryDone")
					}
					done = true
					if m.Supernodes != 2 {
						t.Errorf("QueryDone.Supernodes = %d, want 2", m.Supernodes)
					}
				}
			}
			if !done {
				t.Error("no QueryDone")
			}
			if want := min(5+nbHits, limit); hits != want {
				t.Errorf("%d hits, want %d", hits, want)
			}
		})
	}
}

// concOutbox delivers to neighbours running on their own goroutines, the way
// Server runs one read loop per link, and records what goes to leaves in order.
type concOutbox struct {
	mu     sync.Mutex
	toLeaf map[LinkID][]protocol.Message
	nb     map[LinkID]chan *protocol.Query
}

func (o *concOutbox) Send(to LinkID, m protocol.Message) {
	if ch, ok := o.nb[to]; ok {
		if q, ok := m.(*protocol.Query); ok {
			ch <- q
		}
		return
	}
	o.mu.Lock()
	o.toLeaf[to] = append(o.toLeaf[to], m)
	o.mu.Unlock()
}

// TestRouterConcurrent runs leaves, neighbours and ticks on their own goroutines,
// as Server does, and checks under the race detector that every query ends once,
// after all its hits, within its limit.
func TestRouterConcurrent(t *testing.T) {
	const (
		nLeaves    = 4
		nNeighbour = 3
		perLeaf    = 40
		limit      = 400 // above what the local index holds, so every query is forwarded
	)
	o := &concOutbox{toLeaf: map[LinkID][]protocol.Message{}, nb: map[LinkID]chan *protocol.Query{}}
	for i := range nNeighbour {
		o.nb[LinkID(100+i)] = make(chan *protocol.Query, nLeaves*perLeaf)
	}
	cfg := testRouterConfig()
	cfg.MaxResults = 1000
	start := time.Now()
	cfg.Now = func() time.Time { return start } // no query times out, however slow the race detector
	r := NewRouter(cfg, o)
	for id := range o.nb {
		r.NeighbourUp(id, protocol.PeerID{byte(id)})
		matchAll(t, r, id)
	}
	var wg sync.WaitGroup
	for id, ch := range o.nb {
		wg.Add(1)
		go func() { // a neighbour: a few hits, then done
			defer wg.Done()
			for q := range ch {
				hits := []protocol.Hit{{
					FileRecord: protocol.FileRecord{ID: cidOf(fmt.Sprint(id, q.ID)), Name: "common remote.mp3"},
					Sources:    []protocol.Source{{Peer: protocol.PeerID{byte(id)}}},
				}}
				r.Handle(id, &protocol.Hits{ID: q.ID, Hits: hits})
				r.Handle(id, &protocol.QueryDone{ID: q.ID, Supernodes: 1})
			}
		}()
	}
	stop := make(chan struct{})
	tickerDone := make(chan struct{})
	go func() {
		defer close(tickerDone)
		for {
			select {
			case <-stop:
				return
			default:
				r.Tick()
			}
		}
	}()
	var leaves sync.WaitGroup
	for l := range nLeaves {
		id := LinkID(1 + l)
		r.LeafUp(id, LeafInfo{Peer: protocol.PeerID{0xa0, byte(l)}})
		leaves.Add(1)
		go func() {
			defer leaves.Done()
			var names []string
			for i := range 80 {
				names = append(names, fmt.Sprintf("common leaf%d file%d.mp3", l, i))
			}
			if err := r.Handle(id, &protocol.Publish{Files: files(names...)}); err != nil {
				t.Error(err)
			}
			for i := range perLeaf {
				if err := r.Handle(id, &protocol.Query{ID: protocol.QueryID{byte(l), byte(i)}, Text: "common", Limit: limit}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	leaves.Wait()
	for _, ch := range o.nb {
		close(ch)
	}
	wg.Wait()
	close(stop)
	<-tickerDone

	for l := range nLeaves {
		type state struct {
			hits  int
			dones int
		}
		qs := map[protocol.QueryID]*state{}
		for _, m := range o.toLeaf[LinkID(1+l)] {
			switch m := m.(type) {
			case *protocol.Hits:
				s := qs[m.ID]
				if s == nil {
					s = &state{}
					qs[m.ID] = s
				}
				if s.dones > 0 {
					t.Errorf("leaf %d query %x: hits after QueryDone", l, m.ID[:2])
				}
				s.hits += len(m.Hits)
			case *protocol.QueryDone:
				s := qs[m.ID]
				if s == nil {
					s = &state{}
					qs[m.ID] = s
				}
				s.dones++
				if m.Supernodes != 1+nNeighbour {
					t.Errorf("leaf %d query %x: Supernodes %d", l, m.ID[:2], m.Supernodes)
				}
			}
		}
		if len(qs) != perLeaf {
			t.Errorf("leaf %d: answers for %d queries, want %d", l, len(qs), perLeaf)
		}
		for id, s := range qs {
			if s.dones != 1 || s.hits > limit || s.hits < min(limit, 80) {
				t.Errorf("leaf %d query %x: %d hits, %d QueryDones", l, id[:2], s.hits, s.dones)
			}
		}
	}
}

type nopOutbox struct{}

func (nopOutbox) Send(LinkID, protocol.Message) {}

// BenchmarkRouterQuery100k is the routing logic's cost for one leaf query on a
// supernode indexing 100,000 files of 200 leaves: no network, no neighbours.
func BenchmarkRouterQuery100k(b *testing.B) {
	const nFiles, nLeaves = 100_000, 200
	entries := indextest.Names(1, nFiles)
	queries := indextest.Queries(2, entries, 4096)
	r := NewRouter(RouterConfig{}, nopOutbox{})
	per := nFiles / nLeaves
	for l := range nLeaves {
		id := LinkID(l + 1)
		r.LeafUp(id, LeafInfo{Peer: protocol.PeerID{byte(l), byte(l >> 8)}, Name: fmt.Sprint("leaf", l), Addrs: []string{"192.0.2.1:4000"}})
		mine := entries[l*per : (l+1)*per]
		for i := 0; i < len(mine); i += protocol.MaxFilesPerFrame {
			var fs []protocol.FileRecord
			for _, e := range mine[i:min(i+protocol.MaxFilesPerFrame, len(mine))] {
				fs = append(fs, protocol.FileRecord{ID: e.ContentID, Name: e.Name, Size: e.Size, Tags: e.Tags})
			}
			if err := r.Handle(id, &protocol.Publish{Files: fs}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if n := r.IndexedFiles(); n != nFiles {
		b.Fatalf("%d files indexed", n)
	}
	r.Tick()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q := &protocol.Query{ID: protocol.QueryID{byte(i), byte(i >> 8), byte(i >> 16)}, Text: queries[i%len(queries)]}
		if err := r.Handle(LinkID(1+i%nLeaves), q); err != nil {
			b.Fatal(err)
		}
	}
}

// A keyword query answered in full by the local index is not forwarded; a lookup
// by content ID always is, since other supernodes may add sources.
func TestFullLocalAnswerNotForwarded(t *testing.T) {
	cfg := testRouterConfig()
	o := &concOutbox{toLeaf: map[LinkID][]protocol.Message{}, nb: map[LinkID]chan *protocol.Query{100: make(chan *protocol.Query, 4)}}
	r := NewRouter(cfg, o)
	r.NeighbourUp(100, protocol.PeerID{1})
	matchAll(t, r, 100)
	r.LeafUp(1, LeafInfo{Peer: protocol.PeerID{2}})
	if err := r.Handle(1, &protocol.Publish{Files: files("alpha one.mp3", "alpha two.mp3", "alpha three.mp3")}); err != nil {
		t.Fatal(err)
	}
	r.Handle(1, &protocol.Query{ID: protocol.QueryID{1}, Text: "alpha", Limit: 2})
	r.Handle(1, &protocol.Query{ID: protocol.QueryID{2}, Text: "alpha", Limit: 5})
	r.Handle(1, &protocol.Query{ID: protocol.QueryID{3}, CID: cidOf("alpha one.mp3"), Limit: 1})
	close(o.nb[100])
	var fwd []string
	for q := range o.nb[100] {
		fwd = append(fwd, q.Text+q.CID.Short())
	}
	if len(fwd) != 2 {
		t.Fatalf("forwarded %v; want the limit-5 keyword query and the content-ID lookup", fwd)
	}
}

// A leaf that queries faster than its rate is refused with Overloaded, naming
// its query; after a pause it may query again.
func TestLeafQueryRate(t *testing.T) {
	cfg := testRouterConfig()
	cfg.LeafQueryRate, cfg.LeafQueryBurst = 10, 3
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	o := &concOutbox{toLeaf: map[LinkID][]protocol.Message{}, nb: map[LinkID]chan *protocol.Query{}}
	r := NewRouter(cfg, o)
	r.LeafUp(1, LeafInfo{Peer: protocol.PeerID{1}})
	for i := range 5 {
		r.Handle(1, &protocol.Query{ID: protocol.QueryID{byte(i)}, Text: "x"})
	}
	now = now.Add(time.Second)
	r.Handle(1, &protocol.Query{ID: protocol.QueryID{9}, Text: "x"})
	var done, refused []byte
	for _, m := range o.toLeaf[1] {
		switch m := m.(type) {
		case *protocol.QueryDone:
			done = append(done, m.ID[0])
		case *protocol.Error:
			if m.Code != protocol.StatusOverloaded {
				t.Fatalf("error %v", m.Code)
			}
			refused = append(refused, m.Ref[0])
		}
	}
	if string(done) != "\x00\x01\x02\x09" || string(refused) != "\x03\x04" {
		t.Fatalf("answered %v, refused %v", done, refused)
	}
	if r.Stats.QueriesRefused.Load() != 2 {
		t.Fatalf("QueriesRefused = %d", r.Stats.QueriesRefused.Load())
	}
}

// TestPongPacesLeaves: a supernode answers a leaf's ping with the interval
// that keeps all its leaves' pings under LeafPings a second: none asked of
// a few leaves, more as they grow, never past MaxPingEvery.
func TestPongPacesLeaves(t *testing.T) {
	o := newRecOutbox()
	r := NewRouter(RouterConfig{LeafPings: 100, MaxPingEvery: 2 * time.Second}, o)
	pong := func(leaf LinkID) time.Duration {
		t.Helper()
		o.mu.Lock()
		o.got[leaf] = nil
		o.mu.Unlock()
		if err := r.Handle(leaf, &protocol.Ping{Seq: 9}); err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.got[leaf]) != 1 {
			t.Fatalf("%d answers to a ping", len(o.got[leaf]))
		}
		p, ok := o.got[leaf][0].(*protocol.Pong)
		if !ok || p.Seq != 9 {
			t.Fatalf("answer %#v, want Pong 9", o.got[leaf][0])
		}
		return time.Duration(p.Every) * time.Millisecond
	}
	up := func(from, to int) {
		for l := from; l < to; l++ {
			r.LeafUp(LinkID(l+1), LeafInfo{Peer: protocol.PeerID{byte(l), byte(l >> 8)}, Addrs: []string{"192.0.2.1:4000"}})
		}
	}
	up(0, 1)
	if got := pong(1); got != 10*time.Millisecond {
		t.Fatalf("1 leaf of 100 pings a second: asked every %v, want 10ms", got)
	}
	up(1, 50)
	if got := pong(1); got != 500*time.Millisecond {
		t.Fatalf("50 leaves: asked every %v, want 500ms", got)
	}
	up(50, 1000)
	if got := pong(7); got != 2*time.Second {
		t.Fatalf("1000 leaves: asked every %v, want the cap of 2s", got)
	}
	// The supernode allows silence by the longest interval it asked lately:
	// after the leaves go, for a period and the next.
	for l := 1; l < 1000; l++ {
		r.LeafDown(LinkID(l + 1))
	}
	if got := pong(1); got != 10*time.Millisecond {
		t.Fatalf("1 leaf again: asked every %v", got)
	}
	for i, want := range []time.Duration{2 * time.Second, 2 * time.Second, 10 * time.Millisecond} {
		if got := r.AskedEvery(); got != want {
			t.Fatalf("period %d after the leaves went: AskedEvery %v, want %v", i, got, want)
		}
		r.NextAskPeriod()
		pong(1)
	}
}
