package swarm

import (
	"math/rand/v2"
	"testing"
)

// These tests call the picker with plain state: no swarm, no session, no
// stream.

// state is a download of n pieces, with the given pieces verified and
// avail[i] peers having piece i.
func state(n int, avail []int32, have ...int) *pieceState {
	ps := &pieceState{have: newBitset(n), avail: avail, pieces: make(map[int]*pieceDl)}
	for _, i := range have {
		ps.have.set(i)
		ps.nhave++
	}
	return ps
}

func peerWith(n int, pieces ...int) *peerPieces {
	p := &peerPieces{has: newBitset(n), reqs: make(map[int64]struct{})}
	for _, i := range pieces {
		p.has.set(i)
	}
	return p
}

// started is piece i (of two blocks) under way, with the asked blocks
// requested of owner.
func started(ps *pieceState, i int, owner *peerPieces, asked ...int) *pieceDl {
	pd := &pieceDl{idx: i, reqs: make([]uint8, 2), got: make([]bool, 2), free: 2, owner: owner}
	for _, b := range asked {
		pd.reqs[b]++
		pd.free--
		owner.reqs[blockKey(i, b*swarmBlock)] = struct{}{}
	}
	ps.addPiece(pd)
	return pd
}

func never(int) int { panic("the picker drew at random where nothing was to draw") }

func TestPickerRarestFirst(t *testing.T) {
	const n = 8
	// Past the random first pieces: 4 verified.
	avail := []int32{0, 0, 0, 0, 3, 1, 2, 1}
	ps := state(n, avail, 0, 1, 2, 3)
	p := peerWith(n, 4, 5, 6, 7)
	// 5 and 7 are the rarest; a draw picks between them.
	for _, draw := range []struct {
		intn func(int) int
		want int
	}{{func(int) int { return 0 }, 7}, {func(int) int { return 1 }, 5}} {
		if pd, _, start := ps.pick(p, draw.intn); pd != nil || start != draw.want {
			t.Errorf("pick: piece %v, start %d; want to start %d", pd, start, draw.want)
		}
	}
	// Only what the peer has.
	if _, _, start := ps.pick(peerWith(n, 4), never); start != 4 {
		t.Errorf("start %d, want 4, the one piece the peer has", start)
	}
	if pd, _, start := ps.pick(peerWith(n, 0, 1), never); pd != nil || start != -1 {
		t.Errorf("a peer with only what we have: %v %d", pd, start)
	}
}

func TestPickerRandomFirstPieces(t *testing.T) {
	const n = 8
	avail := []int32{1, 5, 5, 5, 5, 5, 5, 5}
	ps := state(n, avail)
	p := peerWith(n, 0, 1, 2, 3, 4, 5, 6, 7)
	// With nothing yet, rarity does not count: every piece is drawn from.
	seen := make(map[int]bool)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		_, _, start := ps.pick(p, rng.IntN)
		seen[start] = true
	}
	if len(seen) != n {
		t.Errorf("the first piece came from %d pieces, want all %d", len(seen), n)
	}
	// Once randomFirstPieces are under way, the rarest goes first.
	for i := 1; i <= randomFirstPieces; i++ {
		started(ps, i, peerWith(n), 0, 1)
	}
	if _, _, start := ps.pick(p, never); start != 0 {
		t.Errorf("after the random start: %d, want the rarest, 0", start)
	}
}

func TestPickerFinishesStartedPiecesOwnFirst(t *testing.T) {
	const n = 8
	ps := state(n, make([]int32, n), 0, 1, 2, 3)
	p, q := peerWith(n, 4, 5, 6), peerWith(n, 4, 5, 6)
	started(ps, 5, q, 0)
	mine := started(ps, 6, p, 0)
	if pd, b, start := ps.pick(p, never); pd != mine || b != 1 || start != -1 {
		t.Errorf("got %v block %d start %d; want its own piece 6, block 1", pd, b, start)
	}
	mine.reqs[1], mine.free = 1, 0
	// Then another's started piece before a new one.
	if pd, b, _ := ps.pick(p, never); pd == nil || pd.idx != 5 || b != 1 {
		t.Errorf("got %v block %d; want piece 5 block 1", pd, b)
	}
	if ps.pieces[5].owner != q {
		t.Error("a piece changed owner while its owner's session runs")
	}
	// A piece whose owner left passes to the peer that continues it.
	q.closed = true
	ps.pick(p, never)
	if ps.pieces[5].owner != p {
		t.Error("the piece of a closed session kept its owner")
	}
}

func TestPickerEndgame(t *testing.T) {
	const n = 4
	ps := state(n, make([]int32, n), 0, 1)
	a, b, c := peerWith(n, 2, 3), peerWith(n, 2, 3), peerWith(n, 2, 3)
	started(ps, 2, a, 0, 1)
	if ps.endgame() {
		t.Fatal("endgame with piece 3 not started")
	}
	// b gets piece 3; no block is asked twice before the endgame.
	if pd, _, start := ps.pick(b, never); pd != nil || start != 3 {
		t.Fatalf("got %v start %d, want to start 3", pd, start)
	}
	started(ps, 3, b, 0, 1)
	if !ps.endgame() {
		t.Fatal("every missing piece is under way: that is the endgame")
	}
	// c may ask again for what a and b are fetching, but not a block it
	// asked already, and not one asked of maxBlockDupes peers.
	pd, blk, _ := ps.pick(c, never)
	if pd == nil {
		t.Fatal("no endgame block for a third peer")
	}
	pd.reqs[blk]++
	c.reqs[blockKey(pd.idx, blk*swarmBlock)] = struct{}{}
	if ps.endgameBlock(c, pd) == blk {
		t.Error("an endgame block asked of the same peer twice")
	}
	for _, x := range ps.pieces {
		for i := range x.reqs {
			x.reqs[i] = maxBlockDupes
		}
	}
	if pd, _, start := ps.pick(c, never); pd != nil || start != -1 {
		t.Error("a block asked of more than maxBlockDupes peers")
	}
	if ps.canUse(c) {
		t.Error("canUse with every block asked of maxBlockDupes peers")
	}
}

func TestPickerCanUse(t *testing.T) {
	const n = 4
	ps := state(n, make([]int32, n), 0)
	if ps.canUse(peerWith(n, 0)) {
		t.Error("a peer with only what we have is of use")
	}
	if !ps.canUse(peerWith(n, 1)) {
		t.Error("a peer with a piece we lack is of no use")
	}
	pd := started(ps, 1, peerWith(n), 0, 1)
	if ps.canUse(peerWith(n, 1)) {
		t.Error("a piece with every block asked, outside the endgame, is of use")
	}
	pd.verifying = true
	if ps.canUse(peerWith(n, 1)) {
		t.Error("a piece being verified is of use")
	}
}

// A piece that failed with blocks from several peers comes from its owner
// alone the next time: another peer gets none of its blocks, not even in
// the endgame, until the owner's session ends.
func TestPickerSoloPiece(t *testing.T) {
	const n = 4
	ps := state(n, make([]int32, n), 0, 1, 2)
	a, b := peerWith(n, 3), peerWith(n, 3)
	ps.failedMixed(3)
	pd := started(ps, 3, a, 0)
	pd.solo = ps.solo[3]
	if !pd.solo {
		t.Fatal("the piece that failed mixed is not solo")
	}
	if got, blk, start := ps.pick(b, never); got != nil || start != -1 {
		t.Errorf("another peer got block %d of a solo piece (start %d)", blk, start)
	}
	if !ps.endgame() || ps.endgameBlock(b, pd) != -1 {
		t.Error("another peer may fetch a solo piece in the endgame")
	}
	if ps.canUse(b) {
		t.Error("a peer with only another's solo piece is of use")
	}
	if got, blk, _ := ps.pick(a, never); got != pd || blk != 1 {
		t.Errorf("the owner got %v block %d, want its solo piece, block 1", got, blk)
	}
	a.closed = true
	if got, _, _ := ps.pick(b, never); got != pd || pd.owner != b {
		t.Error("a solo piece whose owner left did not pass to the next peer")
	}
}
