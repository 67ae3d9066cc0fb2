package supernode

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
)

// ringView is the member list the supernodes of a keyword ring net see.
type ringView struct {
	gen  uint64
	live []RingMember
}

func (v *ringView) get() *RingView { return NewRingView(v.gen, v.live) }

// drop takes peer off the list, as the member list does once it is dead.
func (v *ringView) drop(peer protocol.PeerID) {
	v.live = slices.DeleteFunc(v.live, func(m RingMember) bool { return m.Peer == peer })
	v.gen++
}

// newKeyRingNet is newMemNet with the keyword ring, the supernodes linked
// in a ring of their indexes (not of their IDs: batches find their way
// over whatever links there are).
func newKeyRingNet(t *testing.T, n int) (*memNet, *ringView) {
	t.Helper()
	net, view := newKeyRingNetUnlinked(t, n)
	net.ring()
	return net, view
}

// newKeyRingNetUnlinked is newKeyRingNet with no links between the
// supernodes.
func newKeyRingNetUnlinked(t *testing.T, n int) (*memNet, *ringView) {
	t.Helper()
	view := &ringView{gen: 1}
	cfg := testRouterConfig()
	cfg.Ring = view.get
	cfg.Incarnation = 1
	net := newMemNet(t, n, cfg)
	for _, nd := range net.nodes {
		nd.r.out = memDirectOutbox{memOutbox{nd}}
		view.live = append(view.live, RingMember{Peer: nd.peer, Inc: 1})
	}
	return net, view
}

// settleKeys ticks, with the clock past SummaryEvery each time, until a
// tick sends nothing.
func (net *memNet) settleKeys() {
	net.t.Helper()
	net.settleSlow("the keyword ring")
}

// lookupMsgs counts the keyword ring's lookups and their answers, received
// anywhere in the net.
func (net *memNet) lookupMsgs() int {
	n := 0
	for _, nd := range net.nodes {
		n += nd.got[protocol.TypeTermLookup] + nd.got[protocol.TypeTermHolders]
	}
	return n
}

// keepersOf are the nodes that keep a term, by index in the net.
func (net *memNet) keepersOf(term string, live []RingMember) []int {
	ids := make([]ring.ID, len(live))
	for i, m := range live {
		ids[i] = ring.ID(m.Peer)
	}
	var out []int
	for _, id := range ring.New(ids).Replicas(ring.KeyPos(index.HashString(term)), ring.Copies) {
		out = append(out, slices.IndexFunc(net.nodes, func(nd *memNode) bool { return nd.peer == protocol.PeerID(id) }))
	}
	return out
}

// keepingNone are the supernodes that keep none of terms, in order.
func (net *memNet) keepingNone(live []RingMember, terms ...string) []int {
	var ks []int
	for _, t := range terms {
		ks = append(ks, net.keepersOf(t, live)...)
	}
	var out []int
	for i := range net.nodes {
		if !slices.Contains(ks, i) {
			out = append(out, i)
		}
	}
	return out
}

// lookupCost is what looking terms up from node asker costs: nothing for a
// term it keeps as first keeper, or holds a list for; else a lookup and its
// answer for each first keeper.
func (net *memNet) lookupCost(asker int, live []RingMember, terms ...string) int {
	firsts := map[int]bool{}
	for _, t := range terms {
		ks := net.keepersOf(t, live)
		if ks[0] == asker {
			continue
		}
		if slices.Contains(ks, asker) {
			nd := net.nodes[asker]
			if hs, _ := nd.r.kr.store.holders(index.HashString(t), 1, &nd.r.rnd); len(hs) > 0 {
				continue
			}
		}
		firsts[ks[0]] = true
	}
	return 2 * len(firsts)
}

// A term that exactly k supernodes hold costs the lookup (a message and its
// answer, nothing when the asker keeps the term) and a query and a
// QueryDone to each holder; a term that no supernode holds costs the
// lookup only.
func TestKeyRingCostsTwoMessagesPerHolder(t *testing.T) {
	const n = 16
	net, view := newKeyRingNet(t, n)
	for i := range n {
		net.addLeaf(i, fmt.Sprint("leaf", i)).publish(fmt.Sprintf("common tune %d.mp3", i), fmt.Sprintf("b-side %d.ogg", i))
	}
	for k := 1; k <= 5; k++ {
		l := net.addLeaf(3*k-1, fmt.Sprint("holder", k))
		if err := l.publish(fmt.Sprintf("zebra crossing %d.mp3", k)); err != nil {
			t.Fatal(err)
		}
	}
	net.settleKeys()
	net.noErrors()
	for _, asker := range []int{0, 7} {
		a := net.addLeaf(asker, fmt.Sprint("asker", asker))
		for _, tc := range []struct {
			text  string
			terms []string
			found int
		}{
			{"zebra", []string{"zebra"}, 5},
			{"zebra 3", []string{"zebra", "3"}, 1},
			{"quagga", []string{"quagga"}, 0},
		} {
			t.Run(fmt.Sprintf("%s from %d", tc.text, asker), func(t *testing.T) {
				before, looks := net.superMsgs(), net.lookupMsgs()
				r := a.search(tc.text)
				if len(r.hits) != tc.found {
					t.Errorf("%d hits %v, want %d", len(r.hits), r.names(), tc.found)
				}
				if got := net.superMsgs() - before; got != 2*tc.found {
					t.Errorf("%d query messages between supernodes, want %d", got, 2*tc.found)
				}
				if got, want := net.lookupMsgs()-looks, net.lookupCost(asker, view.live, tc.terms...); got != want {
					t.Errorf("%d lookup messages, want %d", got, want)
				}
				if r.done.Status != protocol.StatusOK || int(r.done.Supernodes) != 1+tc.found {
					t.Errorf("done %+v, want ok from %d supernodes", r.done, 1+tc.found)
				}
			})
		}
	}
	net.noErrors()
	// Every key of every supernode is kept three times.
	kept := 0
	for _, nd := range net.nodes {
		kept += nd.r.KeptKeys()
	}
	want := 0
	for _, nd := range net.nodes {
		want += ring.Copies * len(nd.r.keyRingKeys())
	}
	if kept != want {
		t.Errorf("%d keys kept in all, want %d (each supernode's keys, three times)", kept, want)
	}
}

// A file shared later is found once its changes reached the keepers; one
// unshared leaves them at the next clean-up, and is then not asked for.
func TestKeyRingFollowsChanges(t *testing.T) {
	net, _ := newKeyRingNet(t, 8)
	asker := net.addLeaf(0, "asker")
	net.settleKeys()
	if r := asker.search("walrus"); len(r.hits) != 0 {
		t.Fatalf("found %v before anyone shared it", r.names())
	}
	l := net.addLeaf(5, "sharer")
	if err := l.publish("walrus song.mp3"); err != nil {
		t.Fatal(err)
	}
	net.settleKeys()
	if r := asker.search("walrus"); len(r.hits) != 1 {
		t.Fatalf("%d hits for a shared file, want 1", len(r.hits))
	}
	kept := 0
	for _, nd := range net.nodes {
		kept += nd.r.KeptKeys()
	}
	if err := l.send(&protocol.Unpublish{IDs: []protocol.ContentID{cidOf("walrus song.mp3")}}); err != nil {
		t.Fatal(err)
	}
	net.settleKeys()
	// Until the clean-up its keys stay: a query costs a wasted message
	// and its answer, and finds nothing.
	before := net.superMsgs()
	if r := asker.search("walrus"); len(r.hits) != 0 {
		t.Fatalf("found %v after it was unshared", r.names())
	}
	if got := net.superMsgs() - before; got != 2 {
		t.Errorf("%d query messages for a file unshared a moment ago, want 2", got)
	}
	net.clock.Advance(keyCleanEvery)
	net.settleKeys()
	before = net.superMsgs()
	if r := asker.search("walrus"); len(r.hits) != 0 {
		t.Fatalf("found %v after it was unshared", r.names())
	}
	if got := net.superMsgs() - before; got != 0 {
		t.Errorf("%d query messages for a file no one shares, want 0", got)
	}
	after := 0
	for _, nd := range net.nodes {
		after += nd.r.KeptKeys()
	}
	// walrus, song, mp3 and the content ID, three copies each.
	if kept-after != 4*ring.Copies {
		t.Errorf("%d keys left the keepers, want %d", kept-after, 4*ring.Copies)
	}
	net.noErrors()
}

// When a keeper dies, the keys it kept move on to the next supernode on
// the ring, and every file is still found, the lookups going to the
// living.
func TestKeyRingKeeperDies(t *testing.T) {
	const n = 10
	net, view := newKeyRingNet(t, n)
	for i := range n {
		net.addLeaf(i, fmt.Sprint("leaf", i)).publish(fmt.Sprintf("tune%d common.mp3", i))
	}
	net.settleKeys()
	dead := net.keepersOf("tune4", view.live)[0]
	if dead == 4 || dead == 0 {
		dead = net.keepersOf("tune4", view.live)[1]
	}
	nd := net.nodes[dead]
	nd.mute = true
	for j := range net.nodes {
		if _, ok := nd.links[j]; ok {
			net.disconnect(dead, j)
		}
	}
	for _, o := range net.nodes {
		if o != nd {
			o.r.SupernodeGone(nd.peer)
		}
	}
	view.drop(nd.peer)
	net.settleKeys()
	asker := net.addLeaf(0, "asker")
	for i := range n {
		r := asker.search(fmt.Sprintf("tune%d", i))
		want := 1
		if i == dead {
			want = 0
		}
		if len(r.hits) != want {
			t.Errorf("tune%d: %d hits, want %d", i, len(r.hits), want)
		}
	}
	if got := nd.got[protocol.TypeTermLookup]; got != 0 {
		t.Errorf("the dead keeper was sent %d lookups", got)
	}
	// Its keys are kept three times again, by the living.
	for _, k := range net.keepersOf("tune4", view.live) {
		hs, _ := net.nodes[k].r.kr.store.holders(index.HashString("tune4"), 10, &net.nodes[k].r.rnd)
		if len(hs) != 1 || hs[0] != protocol.IDPrefix(net.nodes[4].peer) {
			t.Errorf("keeper %s of tune4 names %v", net.nodes[k].name, hs)
		}
	}
	net.noErrors()
}

// A keeper that does not answer is given the round's timeout, and the key
// is asked of its next keeper.
func TestKeyRingSilentKeeper(t *testing.T) {
	net, view := newKeyRingNet(t, 10)
	net.addLeaf(6, "holder").publish("okapi.mp3")
	net.settleKeys()
	ks := net.keepersOf("okapi", view.live)
	asker := 0
	for slices.Contains(ks, asker) || asker == 6 {
		asker++
	}
	net.nodes[ks[0]].mute = true
	a := net.addLeaf(asker, "asker")
	id := a.start(protocol.Query{Text: "okapi"})
	if r := a.collect(id); r.done != nil || len(r.hits) != 0 {
		t.Fatalf("the query ended before the timeout: %+v", r)
	}
	net.clock.Advance(testRouterConfig().RoundTimeout + 450*time.Millisecond)
	net.tick()
	r := a.collect(id)
	if r.done == nil || len(r.hits) != 1 {
		t.Fatalf("after the silent keeper's timeout: %d hits, done %v; want the file from the next keeper", len(r.hits), r.done)
	}
	if got := net.nodes[ks[1]].got[protocol.TypeTermLookup]; got != 1 {
		t.Errorf("the next keeper got %d lookups, want 1", got)
	}
}

// A keeper that restarts has lost what it kept; a new incarnation on the
// member list makes the publishers send their keys again.
func TestKeyRingRestartedKeeperIsRefilled(t *testing.T) {
	net, view := newKeyRingNet(t, 8)
	net.addLeaf(3, "holder").publish("narwhal.mp3")
	net.settleKeys()
	k := net.keepersOf("narwhal", view.live)[0]
	nd := net.nodes[k]
	cfg := nd.r.Config()
	cfg.Incarnation = 2
	nd.r = NewRouter(cfg, memDirectOutbox{memOutbox{nd}})
	for j, id := range nd.links {
		nd.r.NeighbourUp(id, net.nodes[j].peer)
	}
	for j, id := range nd.contacts {
		nd.r.ContactUp(id, net.nodes[j].peer)
	}
	view.live[k].Inc = 2
	view.gen++
	net.settleKeys()
	hs, _ := nd.r.kr.store.holders(index.HashString("narwhal"), 10, &nd.r.rnd)
	if len(hs) != 1 || hs[0] != protocol.IDPrefix(net.nodes[3].peer) {
		t.Fatalf("the restarted keeper names %v for narwhal, want the holder's supernode", hs)
	}
}

// What a keeper holds is bounded whatever publishers send: past a
// publisher's share, keys are refused, and the others' still go in.
func TestTermStoreBounds(t *testing.T) {
	s := newTermStore()
	a, b := uint64(1), uint64(2)
	keys := make([]uint64, maxPublisherKeys+100)
	for i := range keys {
		keys[i] = uint64(i)
	}
	s.put(a, 1, keys, nil)
	if s.held != maxPublisherKeys || s.refused != 100 {
		t.Fatalf("held %d, refused %d; want %d and 100", s.held, s.refused, maxPublisherKeys)
	}
	s.put(b, 1, keys[:10], nil)
	if hs, _ := s.holders(3, 10, &randSource{r: crand.Reader}); len(hs) != 2 {
		t.Fatalf("key 3 held by %v, want both publishers", hs)
	}
	// An earlier incarnation is ignored; a later one replaces.
	s.put(a, 0, nil, keys[:5])
	if hs, _ := s.holders(3, 10, &randSource{r: crand.Reader}); len(hs) != 2 {
		t.Fatalf("a stale removal took effect: %v", hs)
	}
	s.put(a, 2, keys[:1], nil)
	if hs, _ := s.holders(3, 10, &randSource{r: crand.Reader}); len(hs) != 1 || hs[0] != b {
		t.Fatalf("after a restart, key 3 held by %v, want only the other", hs)
	}
	if s.held-s.dead != 11 {
		t.Fatalf("%d live postings, want 11", s.held-s.dead)
	}
	if s.dead != 0 || s.keys() != 10 {
		t.Fatalf("the dead incarnation's keys were not swept: dead %d, %d keys", s.dead, s.keys())
	}
	// A sample when many hold a key.
	for i := range 300 {
		s.put(uint64(3+i), 1, []uint64{7}, nil)
	}
	hs, more := s.holders(7, protocol.MaxTermHolders, &randSource{r: crand.Reader})
	if len(hs) != protocol.MaxTermHolders || !more {
		t.Fatalf("%d holders, more %v; want a sample of %d", len(hs), more, protocol.MaxTermHolders)
	}
}

// Term messages come only from supernodes: a leaf's are refused, and a
// batch whose hops ran out is dropped, not passed on.
func TestKeyRingRefusesLeavesAndSpentBatches(t *testing.T) {
	net, _ := newKeyRingNet(t, 4)
	l := net.addLeaf(0, "leaf")
	b := protocol.TermBatch{To: protocol.IDPrefix(net.nodes[2].peer), Publisher: protocol.IDPrefix(l.peer), Inc: 1, Hops: 3, Add: protocol.KeyList{1}}
	if err := l.send(&protocol.TermPuts{Batches: []protocol.TermBatch{b}}); err == nil {
		t.Error("a leaf's term_puts was taken")
	}
	if err := l.send(&protocol.TermLookup{ID: protocol.QueryID{1}, Keys: protocol.KeyList{1}}); err == nil {
		t.Error("a leaf's term_lookup was taken")
	}
	b.Hops = 0
	n0 := net.nodes[0]
	if err := n0.r.Handle(n0.links[1], &protocol.TermPuts{Batches: []protocol.TermBatch{b}}); err != nil {
		t.Fatal(err)
	}
	net.clock.Advance(2 * time.Second)
	net.tick()
	if got := net.nodes[2].r.KeptKeys(); got != 0 {
		t.Errorf("a batch with no hops left reached its keeper (%d keys kept)", got)
	}
}

// The store agrees with a plain model of it through random puts, removals,
// restarts and publishers gone, across sweeps.
func TestTermStoreMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := newTermStore()
	model := map[uint64]map[uint64]bool{} // publisher -> keys
	incs := map[uint64]uint64{}
	for step := range 200000 {
		pub := 1 + rng.Uint64N(40)
		k := rng.Uint64N(500)
		switch op := rng.IntN(100); {
		case op < 60:
			s.put(pub, incs[pub], []uint64{k}, nil)
			if model[pub] == nil {
				model[pub] = map[uint64]bool{}
			}
			model[pub][k] = true
		case op < 95:
			s.put(pub, incs[pub], nil, []uint64{k})
			delete(model[pub], k)
		case op < 98:
			s.gone(pub)
			delete(model, pub)
		default:
			incs[pub]++ // a restart: the next put replaces all
			s.put(pub, incs[pub], []uint64{k}, nil)
			model[pub] = map[uint64]bool{k: true}
		}
		if step%997 != 0 {
			continue
		}
		for key := range uint64(500) {
			got, _ := s.holders(key, 1000, &randSource{r: crand.Reader})
			var want []uint64
			for p, ks := range model {
				if ks[key] {
					want = append(want, p)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: key %d held by %v, want %v", step, key, got, want)
			}
		}
	}
}

// A neighbour that floods batches for others costs a bounded queue: past
// maxForwardKeys they are dropped until the next flush.
func TestKeyRingForwardQueueIsBounded(t *testing.T) {
	net, _ := newKeyRingNet(t, 4)
	n0 := net.nodes[0]
	keys := make(protocol.KeyList, protocol.MaxTermKeys)
	for i := range keys {
		keys[i] = uint64(i + 1)
	}
	far := protocol.IDPrefix(net.nodes[2].peer)
	// Within the neighbour's burst of frames, each about a frame's worth.
	for range testRouterConfig().NeighbourSummaryBurst + 32 {
		m := &protocol.TermPuts{}
		for range 24 {
			m.Batches = append(m.Batches, protocol.TermBatch{To: far, Publisher: 77, Inc: 1, Hops: 5, Add: keys})
		}
		if err := n0.r.Handle(n0.links[1], m); err != nil {
			t.Fatal(err)
		}
	}
	n0.r.mu.Lock()
	held, batches := n0.r.kr.fwdKeys, len(n0.r.kr.fwd)
	n0.r.mu.Unlock()
	if held > maxForwardKeys || held != batches*protocol.MaxTermKeys {
		t.Fatalf("%d keys held in %d batches; want at most %d", held, batches, maxForwardKeys)
	}
	if n0.r.Stats.SummariesDropped.Load() == 0 {
		t.Fatal("nothing was dropped: the flood did not reach the bound")
	}
	// The flush passes them on and empties the queue.
	net.clock.Advance(2 * time.Second)
	n0.r.Tick()
	n0.r.mu.Lock()
	left := n0.r.kr.fwdKeys
	n0.r.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys still held after the flush", left)
	}
}

// failingOutbox fails the first direct link to each supernode, as a dial
// that times out does: the router is told, and sends again.
type failingOutbox struct {
	memDirectOutbox
	failed map[protocol.PeerID]bool
}

func (o failingOutbox) SendDirect(to protocol.PeerID, m protocol.Message) {
	if _, ok := m.(*protocol.TermPuts); ok && !o.failed[to] {
		o.failed[to] = true
		o.n.r.DirectFailed(to)
		return
	}
	o.memDirectOutbox.SendDirect(to, m)
}

// A batch sent over a direct link that did not open is sent again, and its
// keeper keeps it.
func TestKeyRingRetriesAFailedDirectLink(t *testing.T) {
	// Supernodes not linked: batches can only go over direct links.
	net, _ := newKeyRingNetUnlinked(t, 3)
	for _, nd := range net.nodes {
		nd.r.out = failingOutbox{memDirectOutbox{memOutbox{nd}}, map[protocol.PeerID]bool{}}
	}
	net.addLeaf(0, "holder").publish("okapi.mp3")
	// A tick whose sends all failed delivers nothing, so settling would
	// stop there: tick on past every retry instead.
	for range 20 {
		net.clock.Advance(2 * time.Second)
		net.tick()
	}
	for _, nd := range net.nodes[1:] {
		hs, _ := nd.r.kr.store.holders(index.HashString("okapi"), 10, &nd.r.rnd)
		if len(hs) != 1 || hs[0] != protocol.IDPrefix(net.nodes[0].peer) {
			t.Errorf("keeper %s names %v for okapi after a failed direct link", nd.name, hs)
		}
	}
	if kept := net.nodes[0].r.kr.fwdKeys; kept != 0 {
		t.Errorf("%d keys still held for passing on", kept)
	}
}

// When no keeper of one word answers, the search goes on with what the
// keepers of the others named: that word rules nothing out.
func TestKeyRingLookupGoesOnWithoutAWord(t *testing.T) {
	const n = 12
	net, view := newKeyRingNet(t, n)
	walrus := net.keepersOf("walrus", view.live)
	free := net.keepingNone(view.live, "walrus", "okapi")
	holder, asker := free[0], free[1]
	net.addLeaf(holder, "holder").publish("walrus okapi.mp3")
	net.settleKeys()
	for _, k := range walrus {
		net.nodes[k].mute = true
	}
	a := net.addLeaf(asker, "asker")
	id := a.start(protocol.Query{Text: "walrus okapi"})
	for range 12 {
		net.clock.Advance(testRouterConfig().RoundTimeout + 200*time.Millisecond)
		net.tick()
	}
	r := a.collect(id)
	if r.done == nil || len(r.hits) != 1 {
		t.Fatalf("%d hits, done %v: want the file, found through the other word's keepers", len(r.hits), r.done)
	}
	for _, k := range walrus {
		if got := net.nodes[k].got[protocol.TypeTermLookup]; got != 1 {
			t.Errorf("keeper %s of walrus got %d lookups, want 1", net.nodes[k].name, got)
		}
	}
}

// A word whose keepers all failed names no one: the candidates come from a
// word that was answered, even with a sample, not from the empty list.
func TestKeyRingUnansweredWordNamesNoOne(t *testing.T) {
	net, _ := newKeyRingNet(t, 6)
	net.settleKeys()
	r := net.nodes[0].r
	named := []uint64{protocol.IDPrefix(net.nodes[2].peer), protocol.IDPrefix(net.nodes[3].peer)}
	p := &pending{direct: &direct{asked: map[protocol.PeerID]bool{}, waiting: map[protocol.PeerID]bool{},
		found: map[protocol.ContentID]*foundFile{}, look: &lookup{words: []lookupKey{
			{key: 1, done: true, unknown: true},
			{key: 2, done: true, list: named, more: true}}}},
		limit: 10}
	r.mu.Lock()
	r.candidatesFromLookupLocked(protocol.QueryID{9}, p, net.clock.Now())
	cands := p.direct.cands
	r.mu.Unlock()
	if len(cands) != 2 {
		t.Fatalf("%d candidates, want the 2 the answered word named", len(cands))
	}
}

// keeps reports whether node k of net keeps term for publisher pub.
func (net *memNet) keeps(k int, term string, pub int) bool {
	hs, _ := net.nodes[k].r.kr.store.holders(index.HashString(term), 10, &net.nodes[k].r.rnd)
	return slices.Contains(hs, protocol.IDPrefix(net.nodes[pub].peer))
}

// A first keeper that dies with a batch it was to pass on leaves the keepers
// after it without the keys. The publisher sends them again: when its link
// to the keeper goes down, or, with no link, when the member list takes the
// keeper as dead.
func TestKeyRingChainBrokenByDeadKeeper(t *testing.T) {
	for _, linked := range []bool{true, false} {
		name := "taken as dead"
		if linked {
			name = "link down"
		}
		t.Run(name, func(t *testing.T) {
			const n = 10
			net, view := newKeyRingNet(t, n)
			ks := net.keepersOf("ibex", view.live)
			first := net.nodes[ks[0]]
			// The publisher: linked to the first keeper or not, and no
			// keeper itself.
			pub := -1
			for i := range n {
				_, ok := first.links[i]
				if !slices.Contains(ks, i) && ok == linked {
					pub = i
					break
				}
			}
			if pub < 0 && linked {
				// Both ring neighbours of the first keeper keep the word.
				pub = net.keepingNone(view.live, "ibex")[0]
				net.connect(pub, ks[0])
			}
			// The first keeper takes the batch and passes nothing on.
			net.drop = func(from, _ *memNode, m protocol.Message) bool {
				_, ok := m.(*protocol.TermPuts)
				return ok && from == first
			}
			net.addLeaf(pub, "holder").publish("ibex.mp3")
			net.settleKeys()
			if !net.keeps(ks[0], "ibex", pub) || net.keeps(ks[1], "ibex", pub) || net.keeps(ks[2], "ibex", pub) {
				t.Fatal("the chain did not break at the first keeper")
			}
			first.mute = true
			for j := range net.nodes {
				if _, ok := first.links[j]; ok {
					net.disconnect(ks[0], j)
				}
			}
			if !linked {
				net.settleKeys()
				if net.keeps(ks[1], "ibex", pub) {
					t.Fatal("the keys went on before anything told the publisher")
				}
				for _, o := range net.nodes {
					if o != first {
						o.r.SupernodeGone(first.peer)
					}
				}
				view.drop(first.peer)
			}
			net.settleKeys()
			for _, k := range net.keepersOf("ibex", view.live) {
				if k != ks[0] && !net.keeps(k, "ibex", pub) {
					t.Errorf("keeper %s lacks ibex", net.nodes[k].name)
				}
			}
			asker := 0
			for asker == pub || asker == ks[0] {
				asker++
			}
			// The asker may not know the first keeper is dead: it waits a
			// round on it.
			a := net.addLeaf(asker, "asker")
			id := a.start(protocol.Query{Text: "ibex"})
			net.clock.Advance(testRouterConfig().RoundTimeout + 450*time.Millisecond)
			net.tick()
			if r := a.collect(id); r.done == nil || len(r.hits) != 1 {
				t.Errorf("%d hits for ibex, done %v; want 1", len(r.hits), r.done)
			}
		})
	}
}

// Keys a keeper lost without anyone knowing (a batch dropped on its way)
// are back within keyRefreshEvery, when the publisher sends them all again.
func TestKeyRingRefreshesKeys(t *testing.T) {
	net, view := newKeyRingNet(t, 8)
	net.addLeaf(2, "holder").publish("okapi.mp3")
	net.settleKeys()
	ks := net.keepersOf("okapi", view.live)
	for _, k := range ks {
		if k != 2 {
			net.nodes[k].r.kr.store = newTermStore()
		}
	}
	pub := net.nodes[2].r
	before := pub.Stats.KeyRefreshes.Load()
	for range keyRefreshEvery / time.Minute {
		net.clock.Advance(time.Minute)
		net.tick()
	}
	if got := pub.Stats.KeyRefreshes.Load() - before; got != 1 {
		t.Errorf("%d refreshes in %v, want 1", got, keyRefreshEvery)
	}
	// A refresh in the last minute may still be on its way.
	net.settleKeys()
	for _, k := range ks {
		if !net.keeps(k, "okapi", 2) {
			t.Errorf("keeper %s lacks okapi after the refresh", net.nodes[k].name)
		}
	}
}

// A supernode that keeps a word but has no list for it, as one that became
// a keeper lately may not yet, asks the keeper before it on the ring.
func TestKeyRingLateKeeperAsksTheOneBefore(t *testing.T) {
	net, view := newKeyRingNet(t, 10)
	ks := net.keepersOf("ibex", view.live)
	pub := 0
	for slices.Contains(ks, pub) {
		pub++
	}
	net.addLeaf(pub, "holder").publish("ibex.mp3")
	net.settleKeys()
	late := net.nodes[ks[1]]
	late.r.kr.store = newTermStore()
	looks := net.lookupMsgs()
	if r := net.addLeaf(ks[1], "asker").search("ibex"); len(r.hits) != 1 {
		t.Fatalf("%d hits for ibex from a keeper without its list, want 1", len(r.hits))
	}
	if got := net.nodes[ks[0]].got[protocol.TypeTermLookup]; got != 1 || net.lookupMsgs()-looks != 2 {
		t.Errorf("the first keeper got %d lookups (%d lookup messages in all), want 1 (2)", got, net.lookupMsgs()-looks)
	}
	// Its own list, once it has one, is enough.
	net.clock.Advance(keyRefreshEvery)
	net.settleKeys()
	looks = net.lookupMsgs()
	if r := net.addLeaf(ks[1], "asker2").search("ibex"); len(r.hits) != 1 || net.lookupMsgs() != looks {
		t.Errorf("%d hits, %d lookup messages, after the keys came back; want 1 and none", len(r.hits), net.lookupMsgs()-looks)
	}
}

// publishIbex has a supernode that keeps no part of the word "ibex" hold
// ibex.mp3, and settles the ring: it returns the word's keepers and another
// supernode that keeps no part of it either, to ask.
func (net *memNet) publishIbex(view *ringView) (keepers []int, asker int) {
	net.t.Helper()
	ks := net.keepersOf("ibex", view.live)
	var others []int
	for i := range net.nodes {
		if !slices.Contains(ks, i) {
			others = append(others, i)
		}
	}
	net.addLeaf(others[0], "holder").publish("ibex.mp3")
	net.settleKeys()
	return ks, others[1]
}

// A keeper that died while asked may leave the ring before the lookup asks
// the next: the next is the first keeper not yet asked on the ring as it
// is now, not the one that came after the dead one on the old ring.
func TestKeyRingLookupFollowsTheRingAsItChanges(t *testing.T) {
	net, view := newKeyRingNet(t, 10)
	ks, asker := net.publishIbex(view)
	dead := net.nodes[ks[0]]
	dead.mute = true
	a := net.addLeaf(asker, "asker")
	id := a.start(protocol.Query{Text: "ibex"})
	view.drop(dead.peer)
	net.clock.Advance(testRouterConfig().RoundTimeout + 450*time.Millisecond)
	net.tick()
	if r := a.collect(id); r.done == nil || len(r.hits) != 1 {
		t.Fatalf("%d hits, done %v; want ibex once", len(r.hits), r.done)
	}
	if got := net.nodes[ks[1]].got[protocol.TypeTermLookup]; got != 1 {
		t.Errorf("the keeper after the dead one got %d lookups, want 1", got)
	}
	if got := net.nodes[ks[2]].got[protocol.TypeTermLookup]; got != 0 {
		t.Errorf("the third keeper got %d lookups, want none", got)
	}
}

// A lookup goes to a word's first keeper even when a link to a later one
// is open: after supernodes die, a later keeper may be one that took over
// only lately and lacks the keys, and its empty list would name no one.
func TestKeyRingAsksTheFirstKeeper(t *testing.T) {
	net, view := newKeyRingNetUnlinked(t, 10)
	ks, asker := net.publishIbex(view)
	net.nodes[asker].r.cfg.PeerRTT = func(protocol.PeerID) time.Duration { return 50 * time.Millisecond }
	net.connect(asker, ks[2])
	if r := net.addLeaf(asker, "asker").search("ibex"); len(r.hits) != 1 {
		t.Fatalf("%d hits for ibex, want 1", len(r.hits))
	}
	for i, k := range ks {
		want := 0
		if i == 0 {
			want = 1
		}
		if got := net.nodes[k].got[protocol.TypeTermLookup]; got != want {
			t.Errorf("keeper %d of ibex got %d lookups, want %d", i, got, want)
		}
	}
}

// Rounds that wait out their time on candidates that never answer must not
// leave a holder unasked: the last round that ends before the query's
// deadline asks every candidate left.
func TestLastRoundAsksEveryCandidateLeft(t *testing.T) {
	const n = 48
	net, view := newKeyRingNet(t, n)
	ks := net.keepersOf("ibex", view.live)
	free := net.keepingNone(view.live, "ibex")
	asker, live := free[0], free[1]
	for i := range n {
		if i != asker {
			net.addLeaf(i, fmt.Sprint("holder", i)).publish(fmt.Sprintf("ibex %d.mp3", i))
		}
	}
	net.settleKeys()
	// Every holder but the keepers and one is silent, and that one, the
	// most loaded, comes last among the candidates.
	for i, nd := range net.nodes {
		nd.mute = i != asker && i != live && !slices.Contains(ks, i)
		if i == live {
			view.live[i].Leaves = 1000
		}
	}
	view.gen++
	net.tick()
	cfg := net.nodes[asker].r.Config()
	a := net.addLeaf(asker, "asker")
	id := a.start(protocol.Query{Text: "ibex"})
	var r result
	for range int(cfg.DirectTimeout/(cfg.RoundTimeout+300*time.Millisecond)) + 2 {
		net.clock.Advance(cfg.RoundTimeout + 300*time.Millisecond)
		net.tick()
		if r = a.collect(id); r.done != nil {
			break
		}
	}
	want := fmt.Sprintf("ibex %d.mp3", live)
	if !slices.Contains(r.names(), want) {
		t.Fatalf("the search found %v, not %s from the last candidate", r.names(), want)
	}
}

// A first keeper that dies long after a change went down its chain passed
// it on: the keepers after it are not sent it again, only the one that
// takes a place on the chain.
func TestKeyRingOldChangeNotSentAgain(t *testing.T) {
	for _, linked := range []bool{true, false} {
		t.Run(fmt.Sprintf("publisher linked to the keeper %v", linked), func(t *testing.T) {
			const n = 10
			net, view := newKeyRingNet(t, n)
			ks := net.keepersOf("ibex", view.live)
			pub := net.keepingNone(view.live, "ibex")[0]
			first := net.nodes[ks[0]]
			_, ok := first.links[pub]
			if linked && !ok {
				net.connect(pub, ks[0])
			} else if !linked && ok {
				net.disconnect(pub, ks[0])
			}
			net.addLeaf(pub, "holder").publish("ibex.mp3")
			net.settleKeys()
			for _, k := range ks {
				if !net.keeps(k, "ibex", pub) {
					t.Fatalf("keeper %s lacks ibex", net.nodes[k].name)
				}
			}
			// Past passOnWithin, with no refresh of all keys due.
			p := net.nodes[pub].r
			p.mu.Lock()
			p.kr.refreshAt = net.clock.Now().Add(time.Hour)
			p.mu.Unlock()
			net.clock.Advance(passOnWithin + time.Second)
			net.settleKeys()

			sent := map[uint64]int{} // batches of the publisher's, by keeper
			self := protocol.IDPrefix(net.nodes[pub].peer)
			net.drop = func(from, _ *memNode, m protocol.Message) bool {
				if tp, ok := m.(*protocol.TermPuts); ok && from == net.nodes[pub] {
					for _, b := range tp.Batches {
						if b.Publisher == self {
							sent[b.To]++
						}
					}
				}
				return false
			}
			first.mute = true
			for j := range net.nodes {
				if _, ok := first.links[j]; ok {
					net.disconnect(ks[0], j)
				}
			}
			for _, o := range net.nodes {
				if o != first {
					o.r.SupernodeGone(first.peer)
				}
			}
			view.drop(first.peer)
			net.settleKeys()
			now := net.keepersOf("ibex", view.live)
			for _, k := range now {
				if !net.keeps(k, "ibex", pub) {
					t.Errorf("keeper %s lacks ibex", net.nodes[k].name)
				}
				to := protocol.IDPrefix(net.nodes[k].peer)
				if got := sent[to]; slices.Contains(ks, k) && got > 0 {
					t.Errorf("keeper %s, which held ibex, was sent it again in %d batches", net.nodes[k].name, got)
				} else if !slices.Contains(ks, k) && got == 0 {
					t.Errorf("keeper %s, new on the chain, was not sent ibex", net.nodes[k].name)
				}
			}
		})
	}
}
