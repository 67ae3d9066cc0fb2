package supernode

import (
	"math"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// A neighbour that has sent no summary gets no queries: it has told us of
// nothing to find through it.
func TestNoQueriesWithoutSummary(t *testing.T) {
	net := newMemNet(t, 2, testRouterConfig())
	a := net.nodes[0]
	l := net.addLeaf(0, "l")
	net.connect(0, 1)
	// B's summaries to A are lost: A never hears from it.
	net.queue = nil
	net.nodes[1].mute = true
	r := l.search("anything")
	if r.done == nil || len(net.nodes[1].queries) != 0 {
		t.Fatalf("query forwarded to a neighbour without a summary: done %+v, B got %d", r.done, len(net.nodes[1].queries))
	}
	if got := a.r.Stats.QueriesPruned.Load(); got != 1 {
		t.Errorf("pruned %d, want 1", got)
	}
}

// A neighbour that sends queries faster than its rate is answered
// "overloaded" without a search, and the supernode's own leaves keep being
// answered.
func TestNeighbourQueryRate(t *testing.T) {
	cfg := testRouterConfig()
	cfg.NeighbourQueryRate, cfg.NeighbourQueryBurst = 10, 5
	now := time.Unix(1_800_000_000, 0)
	cfg.Now = func() time.Time { return now }
	o := &captureOutbox{}
	r := NewRouter(cfg, o)
	r.NeighbourUp(7, protocol.PeerID{7})
	r.LeafUp(1, LeafInfo{Peer: protocol.PeerID{1}})
	if err := r.Handle(1, &protocol.Publish{Files: files("alpha song.mp3")}); err != nil {
		t.Fatal(err)
	}
	o.msgs = nil
	for i := range 50 {
		if err := r.Handle(7, &protocol.Query{ID: protocol.QueryID{0xee, byte(i)}, Text: "alpha", Hops: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var refused, hits int
	for _, m := range o.msgs {
		switch m := m.(type) {
		case *protocol.QueryDone:
			if m.Status == protocol.StatusOverloaded {
				refused++
			}
		case *protocol.Hits:
			hits += len(m.Hits)
		}
	}
	if refused != 45 || hits != 5 || r.Stats.NeighbourQueriesRefused.Load() != 45 {
		t.Fatalf("%d refused (counter %d), %d searched; want 45 and 5 at a burst of 5",
			refused, r.Stats.NeighbourQueriesRefused.Load(), hits)
	}
	o.msgs = nil
	if err := r.Handle(1, &protocol.Query{ID: protocol.QueryID{1}, Text: "alpha"}); err != nil {
		t.Fatal(err)
	}
	if len(o.msgs) == 0 {
		t.Fatal("the leaf's own search got no answer")
	}
	if h, ok := o.msgs[0].(*protocol.Hits); !ok || len(h.Hits) != 1 {
		t.Fatalf("the leaf's own search: %#v", o.msgs[0])
	}
}

type captureOutbox struct{ msgs []protocol.Message }

func (o *captureOutbox) Send(_ LinkID, m protocol.Message) { o.msgs = append(o.msgs, m) }

// Summary levels past a neighbour's rate are dropped, so a neighbour cannot
// make us recompute and resend our summaries to everyone else at its pace.
func TestNeighbourSummaryRate(t *testing.T) {
	cfg := testRouterConfig()
	cfg.NeighbourSummaryRate, cfg.NeighbourSummaryBurst = 4, 8
	now := time.Unix(1_800_000_000, 0)
	cfg.Now = func() time.Time { return now }
	r := NewRouter(cfg, nopOutbox{})
	r.NeighbourUp(7, protocol.PeerID{7})
	f := append([]byte{1, 10, 7}, make([]byte, 128)...)
	f[3] = 1
	for range 100 {
		if err := r.Handle(7, &protocol.Summary{Level: 0, Depth: 4, Filter: f}); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Stats.SummariesDropped.Load(); got != 92 {
		t.Fatalf("%d summary levels dropped, want 92 of 100 at a burst of 8", got)
	}
}

// Signals past a leaf's or a neighbour's rate are dropped: each may mint
// relay credentials or fan out to every neighbour.
func TestSignalRate(t *testing.T) {
	cfg := testRouterConfig()
	cfg.LeafSignalRate, cfg.LeafSignalBurst = 1, 3
	cfg.NeighbourSignalRate, cfg.NeighbourSignalBurst = 1, 4
	now := time.Unix(1_800_000_000, 0)
	cfg.Now = func() time.Time { return now }
	r := NewRouter(cfg, nopOutbox{})
	r.LeafUp(1, LeafInfo{Peer: protocol.PeerID{1}})
	r.NeighbourUp(2, protocol.PeerID{2})
	for i := range 20 {
		sig := &protocol.Signal{ID: uint64(i), Kind: protocol.SignalRequest, To: protocol.PeerID{9}, Hops: 2}
		r.Handle(1, sig)
		sig2 := *sig
		sig2.From = protocol.PeerID{8}
		r.Handle(2, &sig2)
	}
	if got := r.Stats.SignalsDropped.Load(); got != 17+16 {
		t.Fatalf("%d signals dropped, want 33 (17 of the leaf's, 16 of the neighbour's)", got)
	}
}

// A neighbour's hits are scored here and must match the query: a forged
// score does not put its hit first, and a hit for a file that does not hold
// the query's words never reaches the leaf.
func TestNeighbourHitsScoredHere(t *testing.T) {
	net := newMemNet(t, 2, testRouterConfig())
	net.connect(0, 1)
	a, b := net.nodes[0], net.nodes[1]
	asker := net.addLeaf(0, "asker")
	mine := net.addLeaf(0, "mine")
	if err := mine.publish("hey jude.mp3"); err != nil {
		t.Fatal(err)
	}
	theirs := net.addLeaf(1, "theirs")
	if err := theirs.publish("hey jude live in paris 1969 remaster.mp3"); err != nil {
		t.Fatal(err)
	}
	net.settle()
	b.mute = true
	id := asker.start(protocol.Query{Text: "hey jude"})
	inner := b.queries[len(b.queries)-1].ID
	src := []protocol.Source{{Peer: protocol.PeerID{9}}}
	forged := []protocol.Hit{
		{FileRecord: protocol.FileRecord{ID: cidOf("hey jude live in paris 1969 remaster.mp3"), Name: "hey jude live in paris 1969 remaster.mp3"},
			Sources: src, Score: 1e30},
		{FileRecord: protocol.FileRecord{ID: cidOf("malware.exe"), Name: "malware.exe"}, Sources: src, Score: math.MaxFloat32},
	}
	for _, m := range []protocol.Message{&protocol.Hits{ID: inner, Hits: forged}, &protocol.QueryDone{ID: inner, Supernodes: 1}} {
		if err := a.r.Handle(a.links[1], m); err != nil {
			t.Fatal(err)
		}
	}
	net.run()
	r := asker.collect(id)
	if r.done == nil || len(r.hits) != 2 {
		t.Fatalf("hits %q, done %+v; want ours and their matching one", r.names(), r.done)
	}
	var own, remote float32
	for _, h := range r.hits {
		switch h.Name {
		case "hey jude.mp3":
			own = h.Score
		case "hey jude live in paris 1969 remaster.mp3":
			remote = h.Score
		default:
			t.Errorf("hit %q reached the leaf", h.Name)
		}
	}
	if remote >= own || remote > 1.5 {
		t.Errorf("scores: ours %v, the forged one %v: want the better match first and scores of at most 1.5", own, remote)
	}
	if got := a.r.Stats.HitsDropped.Load(); got != 1 {
		t.Errorf("%d hits dropped, want 1", got)
	}
}

// A neighbour that never answers holds a search only to the timeout, and
// after SlowAfter such searches it gets no queries for SlowHoldoff: searches
// then end as soon as the others have answered.
func TestSilentNeighbourHeldOff(t *testing.T) {
	cfg := testRouterConfig()
	cfg.QueryTimeout = time.Second
	net := newMemNet(t, 3, cfg)
	net.connect(0, 1)
	net.connect(0, 2)
	a := net.nodes[0]
	asker := net.addLeaf(0, "asker")
	for i, n := range []int{1, 2} {
		l := net.addLeaf(n, "holder")
		if err := l.publish([]string{"song one.mp3", "song two.mp3"}[i]); err != nil {
			t.Fatal(err)
		}
	}
	net.settle()
	net.nodes[2].mute = true
	for i := range 4 { // SlowAfter's default
		id := asker.start(protocol.Query{Text: "song"})
		if r := asker.collect(id); r.done != nil {
			t.Fatalf("search %d ended before the timeout: %+v", i, r.done)
		}
		net.clock.Advance(cfg.QueryTimeout + time.Millisecond)
		net.tick()
		if r := asker.collect(id); r.done == nil || r.done.Status != protocol.StatusTimeout || len(r.hits) != 1 {
			t.Fatalf("search %d after the timeout: %q, %+v", i, r.names(), r.done)
		}
	}
	if a.r.Stats.SlowNeighbours.Load() != 1 {
		t.Fatalf("silent neighbour held off %d times, want 1", a.r.Stats.SlowNeighbours.Load())
	}
	got := len(net.nodes[2].queries)
	id := asker.start(protocol.Query{Text: "song"})
	if r := asker.collect(id); r.done == nil || r.done.Status != protocol.StatusOK || len(r.hits) != 1 || len(net.nodes[2].queries) != got {
		t.Fatalf("search while the silent neighbour is held off: %q, %+v, it got %d more queries",
			r.names(), r.done, len(net.nodes[2].queries)-got)
	}
	// Once the holdoff has passed it is asked again, and answering clears it.
	net.nodes[2].mute = false
	net.clock.Advance(30 * time.Second)
	id = asker.start(protocol.Query{Text: "song"})
	if r := asker.collect(id); r.done == nil || len(r.hits) != 2 {
		t.Fatalf("after the holdoff: %q, %+v", r.names(), r.done)
	}
}
