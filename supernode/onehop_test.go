package supernode

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// superMsgs counts the query messages between supernodes: queries and
// their QueryDones, received anywhere in the net.
func (net *memNet) superMsgs() int {
	n := 0
	for _, nd := range net.nodes {
		n += nd.got[protocol.TypeQuery] + nd.got[protocol.TypeQueryDone] + nd.got[protocol.TypeHits]
	}
	return n
}

// oneHopRing is n supernodes in a ring, one-hop routing, with every
// summary spread.
func oneHopRing(t *testing.T, n int) *memNet {
	t.Helper()
	net := newOneHopNet(t, n, testRouterConfig())
	net.ring()
	return net
}

// oneHopSongs is oneHopRing with a leaf on each supernode sharing a song
// of its own, and every summary spread.
func oneHopSongs(t *testing.T, n int) (*memNet, []*memLeaf) {
	t.Helper()
	net := oneHopRing(t, n)
	leaves := make([]*memLeaf, n)
	for i := range leaves {
		leaves[i] = net.addLeaf(i, fmt.Sprint("leaf", i))
		leaves[i].publish(fmt.Sprintf("song %d.mp3", i))
	}
	net.settleOneHop()
	return net, leaves
}

// settleOneHop ticks, with the clock past SummaryEvery each time, until a
// tick sends nothing.
func (net *memNet) settleOneHop() {
	net.t.Helper()
	net.settleSlow("one-hop summaries")
}

// settleSlow ticks, with the clock past SummaryEvery each time, until a
// tick sends nothing; what names what failed to settle.
func (net *memNet) settleSlow(what string) {
	net.t.Helper()
	for range 100 {
		net.clock.Advance(6 * time.Second)
		if net.tick() == 0 {
			return
		}
	}
	net.t.Fatalf("%s did not settle in 100 ticks", what)
}

// A term that exactly k supernodes hold costs a query and a QueryDone to
// each of them, and nothing to the others; a term that no supernode holds
// costs nothing past the asker's own.
func TestOneHopCostsTwoMessagesPerHolder(t *testing.T) {
	const n = 16
	net := oneHopRing(t, n)
	for i := range n {
		net.addLeaf(i, fmt.Sprint("leaf", i)).publish(fmt.Sprintf("common tune %d.mp3", i), fmt.Sprintf("b-side %d.ogg", i))
	}
	var holders []int
	for k := 1; k <= 5; k++ {
		holders = append(holders, 3*k-1)
		l := net.addLeaf(3*k-1, fmt.Sprint("holder", k))
		if err := l.publish(fmt.Sprintf("zebra crossing %d.mp3", k)); err != nil {
			t.Fatal(err)
		}
	}
	net.settleOneHop()
	net.noErrors()
	for _, nd := range net.nodes {
		if got := nd.r.Summaries(); got != n-1 {
			t.Fatalf("%s holds %d summaries, want %d", nd.name, got, n-1)
		}
	}
	asker := net.addLeaf(0, "asker")
	for name, tc := range map[string]struct {
		text  string
		found int
		msgs  int
	}{
		"held by five": {"zebra", 5, 2 * 5},
		"held by one":  {"zebra 3", 1, 2 * 1},
		"held nowhere": {"quagga", 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			before := net.superMsgs()
			r := asker.search(tc.text)
			if len(r.hits) != tc.found {
				t.Errorf("%d hits %v, want %d", len(r.hits), r.names(), tc.found)
			}
			if got := net.superMsgs() - before; got != tc.msgs {
				t.Errorf("%d messages between supernodes, want %d", got, tc.msgs)
			}
			if r.done.Status != protocol.StatusOK || int(r.done.Supernodes) != 1+tc.found {
				t.Errorf("done %+v, want ok from %d supernodes", r.done, 1+tc.found)
			}
		})
	}
	net.noErrors()
}

// A new file is found from anywhere once its supernode's next version has
// gone round, as a diff of a few bytes; a file gone leaves its bits until
// the next clean version.
func TestOneHopSummaryChangesTravelAsDiffs(t *testing.T) {
	net, leaves := oneHopSongs(t, 6)
	asker := net.addLeaf(0, "asker")
	if r := asker.search("walrus"); len(r.hits) != 0 {
		t.Fatalf("found %v before it was shared", r.names())
	}
	var diffs, whole int
	net.drop = func(_, _ *memNode, m protocol.Message) bool {
		if s, ok := m.(*protocol.Summaries); ok {
			for _, u := range s.Updates {
				if u.Diff != nil {
					diffs++
					if len(u.Diff) > 64 {
						t.Errorf("a diff of %d bytes for one file", len(u.Diff))
					}
				}
				if u.Filter != nil {
					whole++
				}
			}
		}
		return false
	}
	leaves[3].publish("walrus song.mp3")
	net.settleOneHop()
	if diffs == 0 || whole != 0 {
		t.Errorf("%d diffs and %d whole filters sent for one new file", diffs, whole)
	}
	if r := asker.search("walrus"); len(r.hits) != 1 {
		t.Fatalf("found %v, want the walrus song", r.names())
	}
	// Gone again: supernode 3's versions keep the song's bits for a while,
	// so it is asked and answers nothing; once the clean version has gone
	// round, nobody asks it.
	diffs, whole = 0, 0
	leaves[3].send(&protocol.Unpublish{IDs: []protocol.ContentID{cidOf("walrus song.mp3")}})
	net.settleOneHop()
	if diffs != 0 || whole != 0 {
		t.Errorf("%d diffs and %d whole filters sent at once for one file gone", diffs, whole)
	}
	before := net.superMsgs()
	if r := asker.search("walrus"); len(r.hits) != 0 || net.superMsgs()-before != 2 {
		t.Fatalf("found %v with %d messages while supernode 3's summary was stale, want none with 2", r.names(), net.superMsgs()-before)
	}
	net.clock.Advance(summaryCleanEvery)
	net.settleOneHop()
	if diffs == 0 || whole != 0 {
		t.Errorf("%d diffs and %d whole filters sent for the clean version", diffs, whole)
	}
	before = net.superMsgs()
	if r := asker.search("walrus"); len(r.hits) != 0 || net.superMsgs() != before {
		t.Fatalf("found %v with %d messages after it was unshared", r.names(), net.superMsgs()-before)
	}
	net.noErrors()
}

// A supernode that lost a version notices at the next diff, whose base it
// does not hold, and gets one diff from the version it holds from the
// neighbour that sent it, not the whole filter.
func TestOneHopMissedDiffIsRepaired(t *testing.T) {
	net, leaves := oneHopSongs(t, 5)
	far := net.nodes[2]
	net.drop = func(_, to *memNode, m protocol.Message) bool {
		_, ok := m.(*protocol.Summaries)
		return ok && to == far
	}
	leaves[0].publish("first new.mp3")
	net.settleOneHop()
	net.drop = nil
	asker := net.addLeaf(2, "asker")
	if r := asker.search("first new"); len(r.hits) != 0 {
		t.Fatalf("found %v through a summary it never got", r.names())
	}
	wants := far.r.Stats.SummariesTaken.Load()
	wholes := 0
	net.drop = func(_, to *memNode, m protocol.Message) bool {
		if s, ok := m.(*protocol.Summaries); ok && to == far {
			for _, u := range s.Updates {
				if u.Filter != nil {
					wholes++
				}
			}
		}
		return false
	}
	leaves[0].publish("second new.mp3")
	net.settleOneHop()
	if far.r.Stats.SummariesTaken.Load() == wants {
		t.Fatal("no version taken after the gap")
	}
	repairs := uint64(0)
	for _, n := range net.nodes {
		repairs += n.r.Stats.SummaryRepairs.Load()
	}
	if wholes != 0 || repairs == 0 {
		t.Errorf("the gap was repaired with %d whole filters and %d diffs, want diffs only", wholes, repairs)
	}
	for _, text := range []string{"first new", "second new"} {
		if r := asker.search(text); len(r.hits) != 1 {
			t.Errorf("%q: found %v after the repair", text, r.names())
		}
	}
	net.noErrors()
}

// oneHopLine is three supernodes in a line, 0-1-2, with a leaf on 0 sharing
// a song, and every summary spread.
func oneHopLine(t *testing.T) (*memNet, *memLeaf) {
	t.Helper()
	net := newOneHopNet(t, 3, testRouterConfig())
	net.connect(0, 1)
	net.connect(1, 2)
	src := net.addLeaf(0, "source")
	src.publish("song 0.mp3")
	net.settleOneHop()
	return net, src
}

// Versions that arrive out of order, as they do over several paths, are
// applied once the missing one arrives, without asking for a whole filter.
func TestOneHopLateVersionIsWaitedFor(t *testing.T) {
	net, src := oneHopLine(t)
	far, via := net.nodes[2], net.nodes[1]
	var held []protocol.Message
	net.drop = func(_, to *memNode, m protocol.Message) bool {
		if s, ok := m.(*protocol.Summaries); ok && to == far {
			held = append(held, s)
			return true
		}
		return false
	}
	src.publish("first late.mp3")
	net.settleOneHop()
	src.publish("second late.mp3")
	net.settleOneHop()
	net.drop = nil
	if len(held) != 2 {
		t.Fatalf("%d frames held back, want 2", len(held))
	}
	wants := via.got[protocol.TypeSummaryWant]
	// The second version first: it waits for its base.
	if err := far.r.Handle(far.links[1], held[1]); err != nil {
		t.Fatal(err)
	}
	net.clock.Advance(catchUpWait / 2)
	net.tick()
	asker := net.addLeaf(2, "asker")
	if r := asker.search("second late"); len(r.hits) != 0 {
		t.Fatalf("found %v before the version it builds on", r.names())
	}
	if err := far.r.Handle(far.links[1], held[0]); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"first late", "second late"} {
		if r := asker.search(text); len(r.hits) != 1 {
			t.Errorf("%q: found %v once both versions were in", text, r.names())
		}
	}
	net.clock.Advance(2 * catchUpWait)
	net.settleOneHop()
	if got := via.got[protocol.TypeSummaryWant] - wants; got != 0 {
		t.Errorf("%d whole filters asked for", got)
	}
	net.noErrors()
}

// A neighbour that sends diffs far ahead of their base, large ones, many
// frames of them, gets no more than maxPendingBytes held; the whole filter
// is then asked for, and new versions still come through.
func TestOneHopDiffsAheadAreBounded(t *testing.T) {
	net, src := oneHopLine(t)
	origin, far := net.nodes[0], net.nodes[2]
	held := far.r.oh.remotes[origin.peer]
	if held == nil {
		t.Fatal("no summary of the origin to be ahead of")
	}
	most := 0
	for i := range uint64(200) {
		u := protocol.SummaryUpdate{Origin: origin.peer, Inc: held.inc, Base: held.ver + 1 + i, Ver: held.ver + 2 + i,
			Diff: make([]byte, 300<<10), Sig: make([]byte, ed25519.SignatureSize)}
		if err := far.r.Handle(far.links[1], &protocol.Summaries{Updates: []protocol.SummaryUpdate{u}}); err != nil {
			t.Fatal(err)
		}
		most = max(most, far.r.oh.pendingB)
	}
	if most > maxPendingBytes || most == 0 {
		t.Fatalf("at most %d bytes of diffs held, want some and no more than %d", most, maxPendingBytes)
	}
	net.clock.Advance(catchUpWait)
	net.settleOneHop()
	if far.r.oh.pendingB != 0 || len(far.r.oh.behind) != 0 {
		t.Errorf("%d bytes of diffs still held for %d origins", far.r.oh.pendingB, len(far.r.oh.behind))
	}
	src.publish("song 1.mp3")
	net.settleOneHop()
	if r := net.addLeaf(2, "asker").search("song 1"); len(r.hits) != 1 {
		t.Errorf("found %v after the flood", r.names())
	}
}

// A joining supernode gets every summary from its first neighbour: the
// neighbour announces each version, and it asks for the whole filters.
func TestOneHopNewNeighbourCatchesUp(t *testing.T) {
	net := newOneHopNet(t, 6, testRouterConfig())
	for i := 1; i < 5; i++ {
		net.connect(i, i+1)
	}
	for i := range 6 {
		net.addLeaf(i, fmt.Sprint("leaf", i)).publish(fmt.Sprintf("song %d.mp3", i))
	}
	net.settleOneHop()
	if got := net.nodes[0].r.Summaries(); got != 0 {
		t.Fatalf("an unlinked supernode holds %d summaries", got)
	}
	net.connect(0, 1)
	net.settleOneHop()
	for _, nd := range net.nodes {
		if got := nd.r.Summaries(); got != 5 {
			t.Errorf("%s holds %d summaries, want 5", nd.name, got)
		}
	}
	r := net.addLeaf(0, "asker").search("song 4")
	if !slices.Equal(r.names(), []string{"song 4.mp3"}) {
		t.Errorf("found %v", r.names())
	}
	net.noErrors()
}

// Summaries with a bad signature close the link they came on; those of
// supernodes that are not members are dropped.
func TestOneHopRefusesForgedSummaries(t *testing.T) {
	net := oneHopRing(t, 3)
	net.addLeaf(1, "leaf").publish("song.mp3")
	net.settleOneHop()
	a, b := net.nodes[0], net.nodes[1]
	from := a.links[1]
	held := a.r.Summaries()
	stranger := protocol.PeerID{0x77}
	forged := &protocol.Summaries{Updates: []protocol.SummaryUpdate{
		{Origin: stranger, Ver: 1, Filter: mustFilter(t), Sig: make([]byte, 64)},
	}}
	if err := a.r.Handle(from, net.roundTrip(forged)); err != nil {
		t.Fatalf("a non-member's summary: %v, want it dropped quietly", err)
	}
	bad := &protocol.Summaries{Updates: []protocol.SummaryUpdate{
		{Origin: b.peer, Inc: 1 << 62, Ver: 1, Filter: mustFilter(t), Sig: make([]byte, 64)},
	}}
	if err := a.r.Handle(from, net.roundTrip(bad)); err == nil {
		t.Fatal("a summary with a forged signature taken")
	}
	if a.r.Summaries() != held {
		t.Fatalf("%d summaries held after the forgeries, was %d", a.r.Summaries(), held)
	}
	if r := net.addLeaf(0, "asker").search("song"); len(r.hits) != 1 {
		t.Fatalf("found %v after the forgeries", r.names())
	}
}

func mustFilter(t *testing.T) []byte {
	t.Helper()
	f := index.NewBloomBits(index.MinBloomBits)
	f.AddString("song")
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Rounds stop once every file found has EnoughSources sources: a file on
// every supernode costs a few of them, not all.
func TestOneHopStopsWhenEnoughIsFound(t *testing.T) {
	cfg := testRouterConfig()
	cfg.EnoughSources = 5
	net := newOneHopNet(t, 12, cfg)
	net.ring()
	for i := 1; i < 12; i++ {
		for j := range 3 {
			net.addLeaf(i, fmt.Sprint("leaf", i, "-", j)).publish("hit single.mp3")
		}
	}
	net.settleOneHop()
	before := net.superMsgs()
	r := net.addLeaf(0, "asker").search("hit single")
	var sources int
	for _, h := range r.hits {
		sources += len(h.Sources)
	}
	// One supernode, then two: 9 sources, and 3 of the 11 asked.
	if got := net.superMsgs() - before; got != 2*3 || sources != 9 {
		t.Errorf("%d messages between supernodes for %d sources, want 6 for 9", got, sources)
	}
	net.noErrors()
}

// A candidate that left SlowAfter queries in a row to the round timeout is
// asked nothing while others may answer, but still when it alone may.
func TestOneHopHeldOffCandidateAskedWhenAlone(t *testing.T) {
	cfg := testRouterConfig()
	net := newOneHopNet(t, 3, cfg)
	net.ring()
	net.addLeaf(1, "slow").publish("only here.mp3", "both places.mp3")
	net.addLeaf(2, "quick").publish("both places.mp3")
	net.settleOneHop()
	slow := net.nodes[1]
	asker := net.addLeaf(0, "asker")
	queries := func() int { return slow.got[protocol.TypeQuery] }
	// Make supernode 1 slow: it leaves SlowAfter queries for "only here" to
	// the timeout.
	for range DefaultRouterConfig().SlowAfter {
		slow.mute = true
		id := asker.start(protocol.Query{Text: "only here"})
		net.clock.Advance(DefaultRouterConfig().RoundTimeout + time.Millisecond)
		net.tick()
		slow.mute = false
		asker.collect(id)
	}
	before := queries()
	if r := asker.search("both places"); len(r.hits) != 1 || queries() != before {
		t.Fatalf("found %v with %d queries to the held-off supernode, want the quick one's answer alone", r.names(), queries()-before)
	}
	if r := asker.search("only here"); len(r.hits) != 1 || queries() != before+1 {
		t.Fatalf("found %v with %d queries to the held-off supernode, want it asked as the only candidate", r.names(), queries()-before)
	}
	net.noErrors()
}

// A leaf attached to several supernodes is found through each, and counts
// as one source: the query goes on until enough distinct ones are in.
func TestOneHopCountsEachSourceOnce(t *testing.T) {
	cfg := testRouterConfig()
	cfg.EnoughSources = 2
	net := newOneHopNet(t, 12, cfg)
	net.ring()
	// The same peer on supernodes 1 to 11, and a second holder on 11 only.
	for i := 1; i < 12; i++ {
		net.addLeaf(i, "everywhere").publish("hit single.mp3")
	}
	net.addLeaf(11, "second").publish("hit single.mp3")
	net.settleOneHop()
	r := net.addLeaf(0, "asker").search("hit single")
	peers := map[protocol.PeerID]bool{}
	for _, h := range r.hits {
		for _, s := range h.Sources {
			peers[s.Peer] = true
		}
	}
	if len(peers) != 2 {
		t.Errorf("found %d distinct sources, want both holders", len(peers))
	}
	net.noErrors()
}

// A candidate that does not answer holds its round up to RoundTimeout; the
// next round goes on without it, and its late answer is still taken.
func TestOneHopSilentCandidateTimesOut(t *testing.T) {
	cfg := testRouterConfig()
	net := newOneHopNet(t, 4, cfg)
	net.ring()
	for i := 1; i < 4; i++ {
		net.addLeaf(i, fmt.Sprint("leaf", i)).publish(fmt.Sprintf("tune %d.mp3", i))
	}
	net.settleOneHop()
	for _, nd := range net.nodes[1:] {
		nd.mute = true
	}
	asker := net.addLeaf(0, "asker")
	id := asker.start(protocol.Query{Text: "tune"})
	if r := asker.collect(id); r.done != nil {
		t.Fatalf("done before any candidate answered: %+v", r.done)
	}
	for _, nd := range net.nodes[1:] {
		nd.mute = false
	}
	asked := func() int {
		n := 0
		for _, nd := range net.nodes[1:] {
			n += nd.got[protocol.TypeQuery]
		}
		return n
	}
	if got := asked(); got != 1 {
		t.Fatalf("%d asked in the first round, want 1", got)
	}
	net.clock.Advance(DefaultRouterConfig().RoundTimeout + time.Millisecond)
	net.tick()
	r := asker.collect(id)
	if got := asked(); got != 3 || r.done == nil || len(r.hits) != 2 {
		t.Fatalf("after the timeout %d asked, %d hits, done %v; want all 3 asked, 2 hits, done", got, len(r.hits), r.done)
	}
	if r.done.Status != protocol.StatusTimeout {
		t.Errorf("status %v, want a timeout: one supernode did not answer", r.done.Status)
	}
}

// A neighbour that packs a frame with a thousand signed versions of its own
// summary gets one of them checked and taken, not a thousand.
func TestOneHopFrameOfVersionsChecksOne(t *testing.T) {
	net := oneHopRing(t, 3)
	net.settleOneHop()
	a, b := net.nodes[0], net.nodes[1]
	f := index.NewBloomBits(index.MinBloomBits)
	m := &protocol.Summaries{}
	for v := range uint64(1000) {
		f.AddString(fmt.Sprint("word", v))
		enc, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ver := 1000 + v
		sig := ed25519.Sign(b.key, protocol.SummarySigned(b.peer, 1<<62, ver, enc))
		m.Updates = append(m.Updates, protocol.SummaryUpdate{Origin: b.peer, Inc: 1 << 62, Ver: ver, Filter: enc, Sig: sig})
	}
	before := a.r.Stats.SummariesTaken.Load()
	if err := a.r.Handle(a.links[1], net.roundTrip(m)); err != nil {
		t.Fatal(err)
	}
	if got := a.r.Stats.SummariesTaken.Load() - before; got != 1 {
		t.Fatalf("%d versions taken from one frame, want 1", got)
	}
	if r := net.addLeaf(0, "asker").search("word999"); len(r.done.Hits)+len(r.hits) != 0 || r.done.Supernodes != 2 {
		// B's newest version names word999, so B is asked; it holds no file.
		t.Fatalf("search for the last version's word: %+v", r.done)
	}
}

// Once the files found have enough sources, a candidate whose summary holds
// one of their content IDs is not asked: that file is likely why it
// matched. One that holds none of them is, since it may hold another file:
// a rare match is still found beside a popular one.
func TestOneHopRareFileBesidePopularOne(t *testing.T) {
	cfg := testRouterConfig()
	cfg.EnoughSources = 3
	net := newOneHopNet(t, 10, cfg)
	net.ring()
	for i := 1; i < 9; i++ {
		for j := range 2 {
			net.addLeaf(i, fmt.Sprint("fan", i, "-", j)).publish("moonlight sonata.mp3")
		}
	}
	net.addLeaf(9, "collector").publish("moonlight sonata live bootleg.flac")
	net.settleOneHop()
	before := net.superMsgs()
	r := net.addLeaf(0, "asker").search("moonlight sonata")
	names := r.names()
	slices.Sort(names)
	if !slices.Equal(names, []string{"moonlight sonata live bootleg.flac", "moonlight sonata.mp3", "moonlight sonata.mp3"}) {
		t.Errorf("found %v, want the popular file from two supernodes and the bootleg", names)
	}
	// Two holders of the popular file (4 sources, enough at 3), and the
	// bootleg's supernode, whose summary lacks the popular file's ID.
	if got := net.superMsgs() - before; got != 2*3 {
		t.Errorf("%d messages between supernodes, want %d", got, 2*3)
	}
	net.noErrors()
}

// Versions passed on to a few neighbours each still reach every supernode
// of a mesh: those the gossip missed repair from the next diff or from an
// announcement.
func TestOneHopVersionsReachTheWholeMesh(t *testing.T) {
	const n = 24
	net := newOneHopNet(t, n, testRouterConfig())
	for i := range n {
		for _, d := range []int{1, 2, 5} {
			net.connect(i, (i+d)%n)
		}
	}
	origin := net.addLeaf(0, "origin")
	origin.publish("first.mp3")
	net.settleOneHop()
	askers := make([]*memLeaf, n)
	for i := range askers {
		askers[i] = net.addLeaf(i, fmt.Sprint("asker", i))
	}
	for v := range 5 {
		name := fmt.Sprintf("version%d.mp3", v)
		origin.publish(name)
		var missing []string
		for range 600 {
			net.clock.Advance(6 * time.Second)
			net.tick()
			missing = missing[:0]
			for i, a := range askers[1:] {
				if len(a.search(fmt.Sprint("version", v)).hits) != 1 {
					missing = append(missing, net.nodes[i+1].name)
				}
			}
			if len(missing) == 0 {
				break
			}
		}
		if len(missing) > 0 {
			t.Fatalf("%s is not found from %v", name, missing)
		}
	}
	net.noErrors()
}
