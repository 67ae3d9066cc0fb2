package swarm

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// These tests drive a swarm's logic (piece choice, choking, a first source's
// reveals, what a remote peer may send) with sessions that have no stream:
// what the swarm would send sits in each session's queue.

const testPieces = 16

// testSwarm is a downloading swarm of testPieces pieces of 2 blocks each, with
// metadata and no partial file.
func testSwarm(t *testing.T, firstSource bool) *swarm {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	sws := New(ctx, &wg, Config{Self: id.ID, Log: zerolog.Nop(), Pipeline: 4, UnchokeSlots: 2, OptimisticSlots: 1, MaxSwarmPeers: 50,
		UnchokeInterval: time.Second, OptimisticInterval: 3 * time.Second})
	sw := sws.newSwarm(protocol.ContentID{1})
	m := content.Meta{Size: testPieces * 2 * swarmBlock, PieceSize: 2 * swarmBlock, Hashes: make([]byte, 32*testPieces)}
	if firstSource {
		sw.shared, sw.superSeed = true, true
		sw.adoptComplete(m)
		return sw
	}
	sw.meta, sw.hasMeta = m, true
	sw.have = newBitset(testPieces)
	sw.avail = make([]int32, testPieces)
	return sw
}

// addPeer joins a peer that has the given pieces.
func addPeer(t *testing.T, sw *swarm, b byte, has ...int) *session {
	t.Helper()
	s := newSession(sw, protocol.PeerID{b}, nil, nil, true)
	if err := sw.addSession(s); err != nil {
		t.Fatal(err)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	bits := newBitset(testPieces)
	for _, i := range has {
		bits.set(i)
	}
	if err := sw.onMessageLocked(s, &protocol.Bitfield{Bits: bits}); err != nil {
		t.Fatal(err)
	}
	return s
}

// sent takes the frames the swarm queued for s.
func sent[T protocol.Message](s *session) []T {
	var out []T
	for _, m := range s.ctrl {
		if x, ok := m.(T); ok {
			out = append(out, x)
		}
	}
	s.ctrl = s.ctrl[:0]
	return out
}

func requested(s *session) []int {
	var out []int
	for k := range s.reqs {
		out = append(out, int(k>>32))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Past the first few random pieces, a downloader asks for the rarest piece the
// peer has, and it finishes pieces it started before it starts new ones.
func TestPickRarestFirstAndFinishStarted(t *testing.T) {
	sw := testSwarm(t, false)
	for i := range randomFirstPieces {
		sw.have.set(i)
		sw.nhave++
	}
	// Pieces 4-9: held by three peers; 10: by two; 11: by one.
	a := addPeer(t, sw, 1, 4, 5, 6, 7, 8, 9, 10, 11)
	b := addPeer(t, sw, 2, 4, 5, 6, 7, 8, 9, 10)
	c := addPeer(t, sw, 3, 4, 5, 6, 7, 8, 9)
	sw.mu.Lock()
	defer sw.mu.Unlock()

	pd, blk, ok := sw.pickLocked(a)
	if !ok || pd.idx != 11 || blk != 0 {
		t.Fatalf("first pick from a: piece %v block %d, want piece 11 (rarest), block 0", pd, blk)
	}
	pd.reqs[0]++
	pd.free--
	// b does not have 11; its rarest is 10.
	if pd, _, _ := sw.pickLocked(b); pd.idx != 10 {
		t.Fatalf("pick from b: piece %d, want 10", pd.idx)
	}
	// a asked for block 0 of 11; its next block comes before any new piece.
	if pd, blk, _ := sw.pickLocked(a); pd.idx != 11 || blk != 1 {
		t.Fatalf("second pick from a: piece %d block %d, want 11 block 1", pd.idx, blk)
	}
	// c holds only the common pieces: a new one of them, and 10 is started by b
	// but c does not have it.
	if pd, _, _ := sw.pickLocked(c); pd.idx < 4 || pd.idx > 9 {
		t.Fatalf("pick from c: piece %d, want one of 4-9", pd.idx)
	}
}

// The first pieces of a new downloader are random, not the rarest, so it soon
// has something its neighbours want.
func TestPickRandomFirst(t *testing.T) {
	seen := map[int]bool{}
	for range 40 {
		sw := testSwarm(t, false)
		all := make([]int, testPieces)
		for i := range all {
			all[i] = i
		}
		a := addPeer(t, sw, 1, all...)
		addPeer(t, sw, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14) // 15 is rarest
		sw.mu.Lock()
		pd, _, _ := sw.pickLocked(a)
		sw.mu.Unlock()
		seen[pd.idx] = true
	}
	if len(seen) < 4 {
		t.Fatalf("first pieces over 40 new downloads: %v; want them spread at random", seen)
	}
}

// In the endgame every missing block may be asked of a second peer; the copy
// that arrives first cancels the other request.
func TestEndgame(t *testing.T) {
	sw := testSwarm(t, false)
	for i := range testPieces - 1 {
		sw.have.set(i)
		sw.nhave++
	}
	a := addPeer(t, sw, 1, 15)
	b := addPeer(t, sw, 2, 15)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	a.peerChoking, b.peerChoking = false, false
	sw.fillLocked(a)
	if got := len(a.reqs); got != 2 {
		t.Fatalf("a has %d blocks requested, want both blocks of piece 15", got)
	}
	sw.fillLocked(b)
	if got := len(b.reqs); got != 2 {
		t.Fatalf("in the endgame b has %d blocks requested, want the same 2 as a", got)
	}
	sent[*protocol.Request](b)
	if _, err := sw.onBlockLocked(a, 15, 0, make([]byte, swarmBlock)); err != nil {
		t.Fatal(err)
	}
	cancels := sent[*protocol.Cancel](b)
	if len(cancels) != 1 || cancels[0].Piece != 15 || cancels[0].Offset != 0 {
		t.Fatalf("cancels sent to b: %+v, want one for piece 15 offset 0", cancels)
	}
	if len(b.reqs) != 1 {
		t.Fatalf("b still has %d requests, want 1", len(b.reqs))
	}
	// The late copy from b is counted as waste, not stored twice.
	if pd, err := sw.onBlockLocked(b, 15, 0, make([]byte, swarmBlock)); pd != nil || err != nil || b.wasted != swarmBlock {
		t.Fatalf("late copy: piece %v, err %v, wasted %d", pd, err, b.wasted)
	}
}

// Tit-for-tat: the regular slots go to the interested peers that upload to us
// fastest, one more peer gets the optimistic slot, and the rest stay choked.
func TestRechokeByRate(t *testing.T) {
	sw := testSwarm(t, false)
	now := time.Now()
	var ss []*session
	for i := range 6 {
		s := addPeer(t, sw, byte(i+1), i)
		sw.mu.Lock()
		s.peerInterested = true
		s.down.add(int64(i+1)<<20, now) // peer 6 is the fastest
		sw.mu.Unlock()
		ss = append(ss, s)
	}
	sw.rechokeNow(true)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if ss[5].amChoking || ss[4].amChoking {
		t.Fatal("the two fastest uploaders are choked")
	}
	unchoked := 0
	for _, s := range ss {
		if !s.amChoking {
			unchoked++
			if len(sent[*protocol.Unchoke](s)) != 1 {
				t.Errorf("peer %d unchoked without an unchoke message", s.peer[0])
			}
		}
	}
	opt := sw.choke.opt
	if unchoked != 3 || !sw.choke.hasOpt || opt.amChoking || opt == ss[5] || opt == ss[4] {
		t.Fatalf("%d unchoked, optimistic %v; want the 2 fastest and one other", unchoked, opt)
	}
	// An unchoked peer that loses interest gives its slot to a waiting one at once.
	ss[5].peerInterested = false
	sw.mu.Unlock()
	sw.rechokeNow(false)
	sw.mu.Lock()
	if !ss[5].amChoking {
		t.Fatal("a peer that wants nothing keeps its slot")
	}
	unchoked = 0
	for _, s := range ss {
		if !s.amChoking {
			unchoked++
		}
	}
	if unchoked != 3 {
		t.Fatalf("%d unchoked after a peer lost interest, want 3", unchoked)
	}
}

// A first source reveals each piece to one peer only, reveals more as pieces
// arrive, and reveals again what a peer that left had not finished.
func TestFirstSourceRevealsEachPieceOnce(t *testing.T) {
	sw := testSwarm(t, true)
	a := addPeer(t, sw, 1)
	b := addPeer(t, sw, 2)
	sw.mu.Lock()
	if bf := sent[*protocol.Bitfield](a); len(bf) != 1 || slices.ContainsFunc(bf[0].Bits, func(x byte) bool { return x != 0 }) {
		sw.mu.Unlock()
		t.Fatalf("a first source's have-map: %v, want one, empty", bf)
	}
	sent[*protocol.Bitfield](b)
	sw.mu.Unlock()
	sw.rechokeNow(true)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	told := func(s *session) []int {
		var out []int
		for _, h := range sent[*protocol.Have](s) {
			out = append(out, int(h.Piece))
		}
		return out
	}
	ta, tb := told(a), told(b)
	if len(ta) != superSeedOffers || len(tb) != superSeedOffers {
		t.Fatalf("revealed %v to a and %v to b, want %d each", ta, tb, superSeedOffers)
	}
	for _, p := range ta {
		if slices.Contains(tb, p) {
			t.Fatalf("piece %d revealed to both peers: %v and %v", p, ta, tb)
		}
	}
	// a has its first piece: one more is revealed to it, not one of b's.
	if err := sw.onMessageLocked(a, &protocol.Have{Piece: uint32(ta[0])}); err != nil {
		t.Fatal(err)
	}
	more := told(a)
	if len(more) != 1 || slices.Contains(tb, more[0]) || slices.Contains(ta, more[0]) {
		t.Fatalf("after a piece arrived a was told %v (had %v, b has %v)", more, ta, tb)
	}
	// b leaves with nothing finished. As a takes what it is shown, it is shown
	// every piece, b's among them, each once.
	b.closeLocked(nil)
	all := append(ta, more...)
	pending := append(slices.Clone(ta[1:]), more...)
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if err := sw.onMessageLocked(a, &protocol.Have{Piece: uint32(p)}); err != nil {
			t.Fatal(err)
		}
		next := told(a)
		for _, q := range next {
			if slices.Contains(all, q) {
				t.Fatalf("piece %d revealed to a twice", q)
			}
		}
		all = append(all, next...)
		pending = append(pending, next...)
	}
	slices.Sort(all)
	if len(all) != testPieces {
		t.Fatalf("revealed to a in all: %v, want every piece once (b had %v)", all, tb)
	}
}

// A first source answers a request for a piece no longer revealed to the
// asker only while nobody else holds or fetches it; else it rejects it, and
// the asker stops counting the piece among the source's.
func TestFirstSourceRejectsSecondCopies(t *testing.T) {
	sw := testSwarm(t, true)
	a := addPeer(t, sw, 1)
	b := addPeer(t, sw, 2)
	sw.rechokeNow(true)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if a.amChoking || b.amChoking {
		t.Fatal("a first source with two free slots left a peer choked")
	}
	var ta, tb []int
	for p, o := range sw.offeredTo {
		if o == a {
			ta = append(ta, p)
		} else {
			tb = append(tb, p)
		}
	}
	// a's reveals lapse; one of them goes to b.
	lost, lapsed := ta[0], ta[1]
	sw.returnOffersLocked(a)
	sw.offeredTo[lost] = b
	b.offered[lost] = &offer{at: time.Now()}
	ask := func(s *session, p int) *protocol.Request {
		r := &protocol.Request{Piece: uint32(p), Length: swarmBlock}
		if err := sw.onMessageLocked(s, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	sent[*protocol.Reject](a)
	ask(a, lost)
	if rj := sent[*protocol.Reject](a); len(rj) != 1 || int(rj[0].Piece) != lost || len(a.queue) != 0 {
		t.Fatalf("a asked for piece %d, now revealed to b: rejects %+v, queued %v; want one reject, nothing queued", lost, rj, a.queue)
	}
	// Even when nobody fetches it any more, a's next request for it is refused:
	// a stopped counting it as the source's at the reject.
	withdrawn := b.offered[lost]
	sw.withdrawLocked(b, lost)
	ask(a, lost)
	if rj := sent[*protocol.Reject](a); len(rj) != 1 || len(a.queue) != 0 {
		t.Fatalf("a asked again for piece %d after its reject: rejects %+v, queued %v", lost, rj, a.queue)
	}
	sw.offeredTo[lost], b.offered[lost] = b, withdrawn
	ask(a, lapsed)
	if rj := sent[*protocol.Reject](a); len(rj) != 0 || len(a.queue) != 1 || sw.offeredTo[lapsed] != a {
		t.Fatalf("a asked for piece %d, which nobody holds or fetches: rejects %+v, queued %v; want it queued and revealed to a again", lapsed, rj, a.queue)
	}
	// b holds one of its pieces: a copy to a would be a second one.
	if err := sw.onMessageLocked(b, &protocol.Have{Piece: uint32(tb[0])}); err != nil {
		t.Fatal(err)
	}
	ask(a, tb[0])
	if rj := sent[*protocol.Reject](a); len(rj) != 1 || len(a.queue) != 1 {
		t.Fatalf("a asked for piece %d, which b holds: rejects %+v, queued %v", tb[0], rj, a.queue)
	}
}

// A rejected request frees its block, and the piece no longer counts as the
// rejecting peer's, so it is not asked for there again.
func TestRejectFreesBlockAndPiece(t *testing.T) {
	sw := testSwarm(t, false)
	c := addPeer(t, sw, 1, 5)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if err := sw.onMessageLocked(c, &protocol.Unchoke{}); err != nil {
		t.Fatal(err)
	}
	if got := requested(c); !slices.Equal(got, []int{5}) || len(c.reqs) != 2 {
		t.Fatalf("requested %v (%d blocks), want both blocks of piece 5", got, len(c.reqs))
	}
	sent[*protocol.NoInterest](c)
	if err := sw.onMessageLocked(c, &protocol.Reject{Piece: 5, Length: swarmBlock}); err != nil {
		t.Fatal(err)
	}
	pd := sw.pieces[5]
	if len(c.reqs) != 1 || pd.reqs[0] != 0 || pd.free != 1 {
		t.Fatalf("after the reject: %d blocks asked of c, block 0 asked %d times, %d free; want 1, 0, 1", len(c.reqs), pd.reqs[0], pd.free)
	}
	if c.has.has(5) || sw.avail[5] != 0 || c.useful != 0 {
		t.Fatalf("piece 5 still counted as c's: has %v, avail %d, useful %d", c.has.has(5), sw.avail[5], c.useful)
	}
	// Announced again, it counts again.
	if err := sw.onMessageLocked(c, &protocol.Have{Piece: 5}); err != nil {
		t.Fatal(err)
	}
	if !c.has.has(5) || sw.avail[5] != 1 || len(c.reqs) != 2 {
		t.Fatalf("after a new have: has %v, avail %d, %d blocks asked; want true, 1, 2", c.has.has(5), sw.avail[5], len(c.reqs))
	}
	if err := sw.onMessageLocked(c, &protocol.Reject{Piece: testPieces, Length: swarmBlock}); err == nil {
		t.Fatal("a reject for a piece past the end was accepted")
	}
}

// What a remote peer sends on a swarm stream is checked; anything out of place
// ends the session with a bad-request error.
func TestSwarmMessageChecks(t *testing.T) {
	cases := []struct {
		name string
		msgs []protocol.Message
	}{
		{"have before the have-map", []protocol.Message{&protocol.Have{Piece: 1}}},
		{"have-map too short", []protocol.Message{&protocol.Bitfield{Bits: []byte{0}}}},
		{"have-map with spare bits set", []protocol.Message{&protocol.Bitfield{Bits: []byte{0, 0, 1}}}},
		{"second have-map", []protocol.Message{&protocol.Bitfield{Bits: []byte{0, 0}}, &protocol.Bitfield{Bits: []byte{0, 0}}}},
		{"have past the end", []protocol.Message{&protocol.Bitfield{Bits: []byte{0, 0}}, &protocol.Have{Piece: testPieces}}},
		{"request for a piece we lack", []protocol.Message{&protocol.Bitfield{Bits: []byte{0, 0}}, &protocol.Request{Piece: 3, Length: swarmBlock}}},
		{"get_meta on a swarm stream", []protocol.Message{&protocol.Bitfield{Bits: []byte{0, 0}}, &protocol.GetMeta{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sw := testSwarm(t, false)
			s := newSession(sw, protocol.PeerID{9}, nil, nil, false)
			if err := sw.addSession(s); err != nil {
				t.Fatal(err)
			}
			sw.mu.Lock()
			defer sw.mu.Unlock()
			var err error
			for _, m := range tc.msgs {
				if err = sw.onMessageLocked(s, m); err != nil {
					break
				}
			}
			if !errors.Is(err, protocol.ErrBadRequest) {
				t.Fatalf("err = %v, want a bad request", err)
			}
		})
	}
	// A peer may not queue more requests than the cap.
	sw := testSwarm(t, false)
	sw.have.set(0)
	s := addPeer(t, sw, 1)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	s.amChoking = false
	var err error
	for i := 0; i <= maxQueuedRequests && err == nil; i++ {
		err = sw.onMessageLocked(s, &protocol.Request{Piece: 0, Length: swarmBlock})
	}
	if !errors.Is(err, protocol.ErrBadRequest) || len(s.queue) != maxQueuedRequests {
		t.Fatalf("after %d requests: %v with %d queued", maxQueuedRequests+1, err, len(s.queue))
	}
}
