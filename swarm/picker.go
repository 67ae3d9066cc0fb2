package swarm

import (
	"slices"

	"github.com/supernet-p2p/supernet/protocol"
)

// The picker decides which block to ask a peer for next. It is plain code
// over the download's piece state and what one peer has; the swarm sends the
// requests it picks, and passes in the randomness.

type bitset []byte

func newBitset(n int) bitset        { return make(bitset, (n+7)/8) }
func (b bitset) has(i int) bool     { return b[i/8]&(0x80>>(i%8)) != 0 }
func (b bitset) set(i int)          { b[i/8] |= 0x80 >> (i % 8) }
func (b bitset) unset(i int)        { b[i/8] &^= 0x80 >> (i % 8) }
func (b bitset) clone() bitset      { return slices.Clone(b) }
func blockKey(piece, off int) int64 { return int64(piece)<<32 | int64(off) }

// pieceDl is a piece being downloaded: its blocks arrive into buf.
type pieceDl struct {
	idx       int
	buf       []byte
	reqs      []uint8 // per block: how many peers have it requested
	got       []bool
	received  int
	free      int // blocks neither received nor requested
	owner     *peerPieces
	from      []protocol.PeerID // peers that sent blocks of it
	verifying bool
	// solo: the piece failed before with blocks from several peers, so
	// this time its owner alone sends them, and alone answers for them.
	solo bool
}

// takes reports whether p may be asked for blocks of pd: any peer, but only
// the owner for a solo piece while the owner is connected.
func (pd *pieceDl) takes(p *peerPieces) bool {
	return !pd.solo || pd.owner == p || pd.owner == nil || pd.owner.closed
}

// pieceState is what the download has: the pieces verified, how many
// connected peers have each piece, and the pieces under way.
type pieceState struct {
	have   bitset
	nhave  int
	avail  []int32
	pieces map[int]*pieceDl
	// started marks the pieces in pieces, for the scans over every piece
	// that starting one makes: a map lookup for each piece there was about
	// half their cost.
	started bitset
	// solo are the pieces that failed verification with blocks from
	// several peers: which of them sent the bad block is unknown, so the
	// piece comes from one peer next time (see pieceDl.solo).
	solo map[int]bool
}

// addPiece records pd as under way.
func (ps *pieceState) addPiece(pd *pieceDl) {
	if ps.started == nil {
		ps.started = newBitset(len(ps.avail))
	}
	ps.pieces[pd.idx] = pd
	ps.started.set(pd.idx)
}

// dropPiece records that piece i is no longer under way.
func (ps *pieceState) dropPiece(i int) {
	delete(ps.pieces, i)
	if ps.started != nil {
		ps.started.unset(i)
	}
}

// isStarted reports whether piece i is under way.
func (ps *pieceState) isStarted(i int) bool { return ps.started != nil && ps.started.has(i) }

// failedMixed records that piece i failed with blocks from several peers.
func (ps *pieceState) failedMixed(i int) {
	if ps.solo == nil {
		ps.solo = make(map[int]bool)
	}
	ps.solo[i] = true
}

// peerPieces is what the picker knows of one peer: the pieces it has, the
// blocks asked of it, and whether its session ended.
type peerPieces struct {
	has    bitset
	reqs   map[int64]struct{} // blocks we asked it for
	closed bool
}

// pick chooses the next block to ask p for: first the free blocks of pieces
// already started (p's own first), then a new piece, rarest first, and at
// the very end blocks others are fetching too (endgame). It returns the
// started piece and its block, or start, a piece to begin (at block 0), or
// neither (pd nil and start -1) when p has nothing for us now. intn(n)
// draws from [0, n).
func (ps *pieceState) pick(p *peerPieces, intn func(int) int) (pd *pieceDl, block, start int) {
	var best *pieceDl
	for _, pd := range ps.pieces {
		if pd.free == 0 || pd.verifying || !p.has.has(pd.idx) || !pd.takes(p) {
			continue
		}
		if pd.owner == p {
			best = pd
			break
		}
		if best == nil || pd.idx < best.idx {
			best = pd
		}
	}
	if best != nil {
		for b := range best.reqs {
			if best.reqs[b] == 0 && !best.got[b] {
				if best.owner == nil || best.owner.closed {
					best.owner = p
				}
				return best, b, -1
			}
		}
	}
	if i := ps.newPiece(p, intn); i >= 0 {
		return nil, 0, i
	}
	if !ps.endgame() {
		return nil, 0, -1 // pieces remain that p does not have; not endgame yet
	}
	for _, pd := range ps.pieces {
		if !p.has.has(pd.idx) {
			continue
		}
		if b := ps.endgameBlock(p, pd); b >= 0 {
			return pd, b, -1
		}
	}
	return nil, 0, -1
}

// newPiece picks a piece nobody here has started: at random for the first
// few (so a newcomer soon has something to trade), then the rarest among
// those p has, at random among equals. It is -1 when there is none.
func (ps *pieceState) newPiece(p *peerPieces, intn func(int) int) int {
	random := ps.nhave+len(ps.pieces) < randomFirstPieces
	pick, seen := -1, 0
	var best int32
	for i := range ps.avail {
		if ps.have.has(i) || ps.isStarted(i) || !p.has.has(i) {
			continue
		}
		a := ps.avail[i]
		if random {
			a = 0
		}
		switch {
		case pick < 0 || a < best:
			pick, best, seen = i, a, 1
		case a == best:
			seen++
			if intn(seen) == 0 {
				pick = i
			}
		}
	}
	return pick
}

// canUse reports whether p has a block we could ask it for now.
func (ps *pieceState) canUse(p *peerPieces) bool {
	endgame := ps.endgame()
	for i := range ps.avail {
		if ps.have.has(i) || !p.has.has(i) {
			continue
		}
		if !ps.isStarted(i) {
			return true
		}
		pd := ps.pieces[i]
		if pd.free > 0 && !pd.verifying && pd.takes(p) {
			return true
		}
		if endgame && ps.endgameBlock(p, pd) >= 0 {
			return true
		}
	}
	return false
}

// endgame reports whether every missing piece is started: from then on a
// block may be asked of a second peer.
func (ps *pieceState) endgame() bool {
	return len(ps.pieces)+ps.nhave >= len(ps.avail)
}

// endgameBlock is a block of pd that p could be asked for in the endgame:
// missing, asked of fewer than maxBlockDupes peers, none of them p. It is -1
// when there is none.
func (ps *pieceState) endgameBlock(p *peerPieces, pd *pieceDl) int {
	if pd.verifying || !pd.takes(p) {
		return -1
	}
	for b := range pd.reqs {
		if pd.got[b] || pd.reqs[b] >= maxBlockDupes {
			continue
		}
		if _, mine := p.reqs[blockKey(pd.idx, b*swarmBlock)]; !mine {
			return b
		}
	}
	return -1
}
