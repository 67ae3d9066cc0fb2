package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
)

// A swarm is everyone exchanging one file. Each peer in it talks to each other
// peer it knows over one swarm stream, which carries have-maps and have
// announcements, interest, choking, block requests and cancels, and blocks, in
// both directions. Downloaders pick pieces rarest first and upload what they
// have verified; uploads go tit-for-tat to the peers that upload to us fastest,
// with one optimistic slot. A peer that shares the file from its folder (a first
// source) reveals to each peer only pieces no connected peer has yet, so it
// never sends a piece twice while another has not been sent once.

// swarmBlock is the size of one block request.
const swarmBlock = 16 << 10

// Bounds on what a remote peer can make us hold.
const (
	maxQueuedRequests = 1024 // requests a peer may have waiting with us
	maxBlockDupes     = 2    // copies of one block requested at once in endgame
	randomFirstPieces = 4    // pieces picked at random before rarest-first starts
	superSeedOffers   = 4    // unsent pieces a first source reveals to one peer at a time
	maxKnownPeers     = 1000 // peers of one swarm remembered, from the tracker and peer exchange
	firstSourceExtra  = 0.05 // of the file a first source sends beyond one copy, to speed the rarest pieces
)

// pexInterval is how often a swarm tells its peers of the peers that joined it
// since; a new peer hears of everyone at once.
const pexInterval = 500 * time.Millisecond

// ErrStalled ends a download that made no progress while no connected peer had
// what it still needs.
var ErrStalled = errors.New("download stalled")

// swarm is one file's exchange state in this daemon.
type swarm struct {
	m   *Swarms
	id  protocol.ContentID
	log zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	to Target // where a download goes, as Get was asked
	// ioMu is held shared while reading blocks to upload and exclusively while
	// the file under them changes (a download moved into place or closed).
	ioMu sync.RWMutex

	mu       sync.Mutex
	meta     content.Meta
	hasMeta  bool
	metaSet  chan struct{}
	name     string
	part     *content.Partial // while downloading
	path     string           // final path of a download
	fromFile string           // completed download being seeded
	shared   bool             // seeding from the share folder: a first source
	complete bool
	// what is verified, how many peers have each piece, the pieces under way
	pieceState
	sessions map[protocol.PeerID]*session
	known    map[protocol.PeerID]*knownPeer
	banned   map[protocol.PeerID]bool

	// A first source's record of what it has revealed.
	superSeed bool
	offeredTo map[int]*session // piece -> the peer it is revealed to, until it has it

	finished   chan struct{} // closed when every piece is verified
	failErr    error
	fail       chan struct{} // closed with failErr set
	rechoke    chan struct{}
	lastChange time.Time // last verified piece or session change
	choke      choker[*session]
	pexSeq     uint64 // sessions added so far

	prog      Progress
	verified  int64 // bytes verified during this run, for the rate
	published bool
}

// knownPeer is a source the tracker (the supernodes) or a peer told us of.
type knownPeer struct {
	src      protocol.Source
	busy     bool // a join runs: being set up, or exchanging
	joined   bool // the join's session is under way
	failures int
	retryAt  time.Time
}

func (m *Swarms) newSwarm(id protocol.ContentID) *swarm {
	ctx, cancel := context.WithCancel(m.ctx)
	return &swarm{
		m: m, id: id, ctx: ctx, cancel: cancel,
		log:        m.log.With().Str("content_id", id.Short()).Logger(),
		metaSet:    make(chan struct{}),
		pieceState: pieceState{pieces: make(map[int]*pieceDl)},
		choke: choker[*session]{slots: m.cfg.UnchokeSlots, optimistic: m.cfg.OptimisticSlots > 0,
			interval: m.cfg.OptimisticInterval},
		sessions:   make(map[protocol.PeerID]*session),
		known:      make(map[protocol.PeerID]*knownPeer),
		banned:     make(map[protocol.PeerID]bool),
		offeredTo:  make(map[int]*session),
		finished:   make(chan struct{}),
		fail:       make(chan struct{}),
		rechoke:    make(chan struct{}, 1),
		lastChange: time.Now(),
		prog:       Progress{ContentID: id.String(), State: "locating"},
	}
}

// swarmFor returns the running swarm for id, or starts a seeding one when the
// file is shared here or was downloaded here. It returns nil when this peer has
// nothing of id.
func (m *Swarms) swarmFor(id protocol.ContentID) *swarm {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sw := m.swarms[id]; sw != nil {
		rec, seeded := m.seeding[id]
		switch {
		case sw.ctx.Err() != nil:
			delete(m.swarms, id)
		case sw.shared && m.share != nil:
			// The file may have been renamed since: joiners get its name now.
			if f, ok := m.share.Get(id); ok {
				sw.mu.Lock()
				sw.name = f.Name
				sw.mu.Unlock()
			}
			return sw
		case seeded && sw.seedPath() != "" && !rec.unchanged():
			m.mu.Unlock()
			m.stopSeeding(sw, errors.New("the file changed or is gone"))
			m.mu.Lock()
			return nil
		default:
			return sw
		}
	}
	if m.ctx.Err() != nil {
		return nil
	}
	var sw *swarm
	if m.share != nil {
		if f, ok := m.share.Get(id); ok {
			sw = m.newSwarm(id)
			sw.shared, sw.superSeed = true, true
			sw.name = f.Name
			sw.adoptComplete(f.Meta)
		}
	}
	if sw == nil {
		if s, ok := m.seeding[id]; ok && s.unchanged() {
			sw = m.newSwarm(id)
			sw.name, sw.fromFile = s.name, s.path
			sw.adoptComplete(s.meta)
		}
	}
	if sw == nil {
		return nil
	}
	m.swarms[id] = sw
	m.wg.Add(1)
	go sw.chokeLoop()
	return sw
}

func (sw *swarm) adoptComplete(m content.Meta) {
	n := m.NumPieces()
	sw.meta, sw.hasMeta = m, true
	sw.have = newBitset(n)
	for i := range n {
		sw.have.set(i)
	}
	sw.nhave, sw.complete = n, true
	sw.avail = make([]int32, n)
	close(sw.metaSet)
	close(sw.finished)
}

// readBlock reads verified data for an upload.
func (sw *swarm) readBlock(piece int, off int64, buf []byte) error {
	sw.ioMu.RLock()
	defer sw.ioMu.RUnlock()
	sw.mu.Lock()
	part, file, meta := sw.part, sw.fromFile, sw.meta
	sw.mu.Unlock()
	switch {
	case sw.shared:
		_, err := sw.m.share.ReadAt(sw.id, buf, int64(piece)*meta.PieceSize+off)
		return err
	case file != "":
		err := sw.m.readSeeded(file, buf, int64(piece)*meta.PieceSize+off)
		if err != nil {
			sw.m.stopSeeding(sw, err)
		}
		return err
	case part != nil:
		return part.ReadAt(piece, off, buf)
	}
	return content.ErrNotVerified
}

// seedPath is the finished download sw serves, or "".
func (sw *swarm) seedPath() string {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.fromFile
}

// stopSeeding ends a finished download's swarm whose file is gone or changed.
func (m *Swarms) stopSeeding(sw *swarm, why error) {
	m.mu.Lock()
	_, was := m.dropSeedLocked(sw.id)
	if m.swarms[sw.id] == sw {
		delete(m.swarms, sw.id)
	}
	m.mu.Unlock()
	sw.cancel()
	if was {
		sw.log.Info().Err(why).Msg("no longer serving a finished download")
		go m.republish()
	}
}

// dropSeedLocked forgets the finished download id: its record, its open file,
// and the swarm serving that file, which it returns for the caller to cancel
// once m.mu is released. It reports whether there was a record.
func (m *Swarms) dropSeedLocked(id protocol.ContentID) (*swarm, bool) {
	rec, ok := m.seeding[id]
	if !ok {
		return nil, false
	}
	delete(m.seeding, id)
	if f := m.seedFiles[rec.path]; f != nil {
		f.Close()
		delete(m.seedFiles, rec.path)
	}
	sw := m.swarms[id]
	if sw == nil || sw.seedPath() != rec.path {
		return nil, true
	}
	delete(m.swarms, id)
	return sw, true
}

// readSeeded reads from a finished download, keeping its file open while seeded.
func (m *Swarms) readSeeded(path string, buf []byte, off int64) error {
	m.mu.Lock()
	f := m.seedFiles[path]
	m.mu.Unlock()
	if f == nil {
		nf, err := os.Open(path)
		if err != nil {
			return err
		}
		m.mu.Lock()
		if f = m.seedFiles[path]; f == nil {
			m.seedFiles[path], f = nf, nf
		} else {
			nf.Close()
		}
		m.mu.Unlock()
	}
	_, err := f.ReadAt(buf, off)
	return err
}

// setMetaLocked adopts validated metadata for a download and opens its partial
// file, resuming whatever was verified before.
func (sw *swarm) setMetaLocked(m content.Meta, name string) error {
	if sw.hasMeta {
		return nil
	}
	if name == "" {
		name = sw.name
	}
	path, err := TargetPath(sw.to, name, sw.id)
	if err != nil {
		return err
	}
	p, err := content.OpenPartial(path, m)
	if err != nil {
		return err
	}
	if sw.to.Overwrite {
		p.ReplaceOnFinish()
	}
	n := m.NumPieces()
	sw.meta, sw.hasMeta, sw.part, sw.path = m, true, p, path
	sw.name = name
	sw.have = newBitset(n)
	sw.avail = make([]int32, n)
	for i := range n {
		if p.Have(i) {
			sw.have.set(i)
			sw.nhave++
		}
	}
	sw.prog.Path, sw.prog.Size, sw.prog.Pieces, sw.prog.State = path, m.Size, n, "downloading"
	sw.prog.Have, sw.prog.Resumed, sw.prog.Verified = sw.nhave, sw.nhave, p.BytesVerified()
	if sw.prog.Name == "" {
		sw.prog.Name = name
	}
	close(sw.metaSet)
	if sw.nhave == n {
		sw.finishLocked()
	}
	return nil
}

// addSession makes s the session with its peer. Two peers that join each
// other at once keep the stream opened by the peer with the smaller ID; a
// second stream opened the same way replaces the first, whose peer has lost it
// (it restarted, or its link died) even if we have not noticed yet.
func (sw *swarm) addSession(s *session) error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.banned[s.peer] {
		return fmt.Errorf("%w: peer banned for this content after bad data", protocol.ErrForbidden)
	}
	if sw.ctx.Err() != nil {
		return ErrClosed
	}
	if old := sw.sessions[s.peer]; old != nil {
		me := sw.m.ID()
		keepOld := old.outgoing == (bytes.Compare(me[:], s.peer[:]) < 0)
		if old.outgoing != s.outgoing && keepOld {
			return fmt.Errorf("%w: already exchanging this content", protocol.ErrBadRequest)
		}
		old.closeLocked(errors.New("replaced by a new stream with the same peer"))
	}
	if len(sw.sessions) >= sw.m.cfg.MaxSwarmPeers {
		return fmt.Errorf("%w: swarm full", protocol.ErrOverloaded)
	}
	n := sw.meta.NumPieces()
	now := time.Now()
	s.has = newBitset(n)
	s.amChoking, s.peerChoking = true, true
	s.reqs = make(map[int64]struct{})
	s.offered = make(map[int]*offer)
	s.down = newRateMeter(2*sw.m.cfg.UnchokeInterval, now)
	s.up = newRateMeter(2*sw.m.cfg.UnchokeInterval, now)
	s.since = now
	sw.sessions[s.peer] = s
	sw.pexSeq++
	s.seq = sw.pexSeq
	sw.lastChange = now
	sw.prog.Active = len(sw.sessions)
	// The have-map goes first. A first source starts with an empty one and
	// reveals pieces one by one as it unchokes.
	bits := sw.have
	if sw.superSeed {
		bits = newBitset(n)
		s.told = newBitset(n)
	}
	s.queueLocked(&protocol.Bitfield{Bits: bits.clone()})
	sw.pexLocked(s)
	return nil
}

// pexLocked tells s of the peers that joined the swarm since it was last told.
func (sw *swarm) pexLocked(s *session) {
	if s.closed || s.pexSent == sw.pexSeq {
		return
	}
	var out []protocol.Source
	for _, o := range sw.sessions {
		if o != s && o.seq > s.pexSent && o.src.Peer == o.peer && o.src.SN != nil {
			out = append(out, o.src)
		}
	}
	s.pexSent = sw.pexSeq
	for len(out) > 0 {
		n := min(len(out), protocol.MaxSourcesPerHit)
		s.queueLocked(&protocol.Peers{Peers: out[:n]})
		out = out[n:]
	}
}

// learnLocked adds peers that from told us of. They are reached only through
// their supernode, never by dialling the addresses a peer gave: else one peer
// could point a whole swarm at any host.
func (sw *swarm) learnLocked(from *session, peers []protocol.Source) {
	me := sw.m.ID()
	for _, p := range peers {
		if p.Peer == me || p.Peer == from.peer || p.Peer.IsZero() || p.SN == nil || p.SN.IsZero() {
			continue
		}
		p.Addrs = nil
		if k := sw.known[p.Peer]; k != nil {
			if k.src.SN == nil && p.SN != nil {
				k.src.SN, k.src.NAT = p.SN, p.NAT
			}
			continue
		}
		if len(sw.known) >= maxKnownPeers {
			return
		}
		sw.known[p.Peer] = &knownPeer{src: p}
	}
	sw.prog.Sources = len(sw.known)
}

// removeLocked forgets a closed session and gives its requests back.
func (sw *swarm) removeLocked(s *session) {
	if sw.sessions[s.peer] != s {
		return
	}
	delete(sw.sessions, s.peer)
	sw.prog.Active = len(sw.sessions)
	sw.lastChange = time.Now()
	if s.gotBitfield {
		for i := range sw.avail {
			if s.has.has(i) {
				sw.avail[i]--
			}
		}
	}
	sw.dropRequestsLocked(s)
	sw.returnOffersLocked(s)
	sw.choke.forget(s)
	sw.kick()
	sw.fillAllLocked()
	// Pieces only s had come back into reach of a first source's offers.
	sw.offerAllLocked()
}

// dropRequestsLocked frees the blocks requested from s.
func (sw *swarm) dropRequestsLocked(s *session) {
	for k := range s.reqs {
		sw.unaskLocked(s, k)
	}
}

// unaskLocked frees block k if it was requested from s.
func (sw *swarm) unaskLocked(s *session, k int64) {
	if _, ok := s.reqs[k]; !ok {
		return
	}
	delete(s.reqs, k)
	piece, off := int(k>>32), int(k&0xffffffff)
	if pd := sw.pieces[piece]; pd != nil {
		b := off / swarmBlock
		if pd.reqs[b] > 0 {
			pd.reqs[b]--
			if pd.reqs[b] == 0 && !pd.got[b] {
				pd.free++
			}
		}
	}
}

func (sw *swarm) kick() {
	select {
	case sw.rechoke <- struct{}{}:
	default:
	}
}

func (sw *swarm) fillAllLocked() {
	for _, o := range sw.sessions {
		sw.fillLocked(o)
	}
}

func (sw *swarm) offerAllLocked() {
	for _, o := range sw.sessions {
		sw.offerLocked(o)
	}
}

// depth is how many blocks to keep requested from s: enough for about a
// quarter second at its recent rate, and never less than the configured pipeline.
func (sw *swarm) depth(s *session, now time.Time) int {
	n := int(s.down.rate(now) / 4 / swarmBlock)
	return min(max(n, sw.m.cfg.Pipeline), 256)
}

// fillLocked keeps s's request pipeline full and our interest in s honest:
// interested only while s has something we could ask it for now, so a peer
// that unchoked us does not keep a slot for us that we cannot use.
func (sw *swarm) fillLocked(s *session) {
	if s.closed || !sw.hasMeta {
		return
	}
	if sw.complete || s.useful == 0 {
		sw.setInterestLocked(s, false)
		return
	}
	if !s.peerChoking && !s.moving {
		want := sw.depth(s, time.Now())
		for len(s.reqs) < want {
			pd, b, ok := sw.pickLocked(s)
			if !ok {
				break
			}
			off := b * swarmBlock
			n := min(swarmBlock, int(sw.meta.PieceLen(pd.idx))-off)
			if pd.reqs[b] == 0 && !pd.got[b] {
				pd.free--
			}
			pd.reqs[b]++
			s.reqs[blockKey(pd.idx, off)] = struct{}{}
			sw.setInterestLocked(s, true) // before the request it is for
			s.queueLocked(&protocol.Request{Piece: uint32(pd.idx), Offset: uint32(off), Length: uint32(n)})
		}
	}
	sw.setInterestLocked(s, len(s.reqs) > 0 || (!s.moving && sw.canUse(&s.peerPieces)))
}

func (sw *swarm) setInterestLocked(s *session, want bool) {
	if want == s.amInterested {
		return
	}
	s.amInterested = want
	if want {
		s.queueLocked(&protocol.Interest{})
	} else {
		s.queueLocked(&protocol.NoInterest{})
	}
}

// pickLocked chooses the next block to ask s for (see pieceState.pick),
// starting a new piece when that is the choice.
func (sw *swarm) pickLocked(s *session) (*pieceDl, int, bool) {
	pd, b, start := sw.pick(&s.peerPieces, rand.IntN)
	if start >= 0 {
		return sw.startPieceLocked(start, s), 0, true
	}
	return pd, b, pd != nil
}

func (sw *swarm) startPieceLocked(i int, s *session) *pieceDl {
	n := int((sw.meta.PieceLen(i) + swarmBlock - 1) / swarmBlock)
	pd := &pieceDl{idx: i, buf: sw.m.pieceBuf(sw.meta.PieceLen(i)), reqs: make([]uint8, n), got: make([]bool, n), free: n, owner: &s.peerPieces, solo: sw.solo[i]}
	sw.addPiece(pd)
	return pd
}

// onBlock stores a block that arrived from s. It returns a piece that is now
// complete and must be verified, if any.
func (sw *swarm) onBlockLocked(s *session, piece, off int, data []byte) (*pieceDl, error) {
	if piece >= len(sw.avail) || off%swarmBlock != 0 || int64(off+len(data)) > sw.meta.PieceLen(piece) ||
		(len(data) != swarmBlock && int64(off+len(data)) != sw.meta.PieceLen(piece)) {
		return nil, fmt.Errorf("%w: block piece %d offset %d length %d is not one we ask for", protocol.ErrBadRequest, piece, off, len(data))
	}
	key := blockKey(piece, off)
	_, asked := s.reqs[key]
	if asked {
		delete(s.reqs, key)
	}
	pd := sw.pieces[piece]
	b := off / swarmBlock
	if pd == nil || pd.got[b] || pd.verifying {
		if asked && pd != nil && pd.reqs[b] > 0 {
			pd.reqs[b]--
		}
		s.wasted += int64(len(data))
		return nil, nil // a late copy (endgame, or after a cancel)
	}
	if asked && pd.reqs[b] > 0 {
		pd.reqs[b]--
	} else if pd.reqs[b] == 0 {
		pd.free-- // unasked but useful: it was free
	}
	copy(pd.buf[off:], data)
	pd.got[b] = true
	pd.received++
	if !slices.Contains(pd.from, s.peer) {
		pd.from = append(pd.from, s.peer)
	}
	// Cancel the other copies asked for in endgame.
	if pd.reqs[b] > 0 {
		for _, o := range sw.sessions {
			if o == s {
				continue
			}
			if _, ok := o.reqs[key]; ok {
				delete(o.reqs, key)
				pd.reqs[b]--
				o.queueLocked(&protocol.Cancel{Piece: uint32(piece), Offset: uint32(off), Length: uint32(len(data))})
			}
		}
	}
	if pd.received == len(pd.got) {
		pd.verifying = true
		return pd, nil
	}
	return nil, nil
}

// verify checks and writes a complete piece, outside the lock.
func (sw *swarm) verify(pd *pieceDl) {
	sw.mu.Lock()
	part := sw.part
	sw.mu.Unlock()
	err := os.ErrClosed
	if part != nil {
		err = part.WritePiece(pd.idx, pd.buf)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.dropPiece(pd.idx)
	sw.m.recycle(pd.buf)
	switch {
	case errors.Is(err, os.ErrClosed):
		return // the download ended (aborted or finished) meanwhile
	case errors.Is(err, content.ErrBadPiece):
		sw.prog.BadPieces++
		if len(pd.from) == 1 {
			sw.banLocked(pd.from[0], fmt.Sprintf("piece %d failed verification", pd.idx))
		} else {
			// Striking every sender would ban an honest peer that shared
			// pieces with a bad one; fetched from one peer, the piece
			// shows who sends bad data.
			sw.failedMixed(pd.idx)
		}
		sw.fillAllLocked()
		return
	case err != nil:
		sw.failLocked(fmt.Errorf("writing piece %d: %w", pd.idx, err))
		return
	}
	if sw.have.has(pd.idx) {
		return
	}
	sw.have.set(pd.idx)
	sw.nhave++
	n := sw.meta.PieceLen(pd.idx)
	sw.verified += n
	sw.prog.Have, sw.prog.Verified = sw.nhave, sw.prog.Verified+n
	sw.lastChange = time.Now()
	sw.m.downloaded.Add(n)
	// Every peer hears of it, those that have it too: a first source learns
	// from it that the piece it revealed arrived.
	for _, o := range sw.sessions {
		if o.has.has(pd.idx) {
			o.useful--
		}
		o.queueLocked(&protocol.Have{Piece: uint32(pd.idx)})
	}
	if !sw.published {
		sw.published = true
		go sw.m.republish() // we are a source now, for the pieces we have
	}
	if sw.nhave == len(sw.avail) {
		sw.finishLocked()
	}
	sw.fillAllLocked()
}

func (sw *swarm) banLocked(p protocol.PeerID, why string) {
	if sw.banned[p] {
		return
	}
	sw.banned[p] = true
	sw.prog.Banned++
	sw.log.Warn().Str("peer_id", p.Short()).Str("reason", why).Msg("peer banned for this content")
	if s := sw.sessions[p]; s != nil {
		s.closeLocked(fmt.Errorf("banned: %s", why))
	}
}

// finishLocked marks the download complete; Get moves the file into place.
func (sw *swarm) finishLocked() {
	if sw.complete {
		return
	}
	sw.complete = true
	for _, o := range sw.sessions {
		sw.dropRequestsLocked(o)
		sw.setInterestLocked(o, false)
	}
	close(sw.finished)
	sw.kick()
}

func (sw *swarm) failLocked(err error) {
	if sw.failErr != nil {
		return
	}
	sw.failErr = err
	close(sw.fail)
}

// chokeLoop reruns the choice of who to upload to: on a timer, and at once
// when an unchoked peer leaves or loses interest or a slot is free.
func (sw *swarm) chokeLoop() {
	defer sw.m.wg.Done()
	cfg := &sw.m.cfg
	t := time.NewTicker(cfg.UnchokeInterval)
	defer t.Stop()
	pex := time.NewTicker(pexInterval)
	defer pex.Stop()
	for {
		select {
		case <-sw.ctx.Done():
			return
		case <-t.C:
			sw.rechokeNow(true)
		case <-sw.rechoke:
			sw.rechokeNow(false)
		case now := <-pex.C:
			sw.mu.Lock()
			for _, s := range sw.sessions {
				sw.pexLocked(s)
			}
			sw.expireOffersLocked(now)
			sw.mu.Unlock()
		}
	}
}

// rechokeNow hands the peers that want something to the choker (see
// choker.choose): by how fast they upload to us, or when we are complete how
// fast we upload to them. It then sends the chokes and unchokes it chose.
func (sw *swarm) rechokeNow(periodic bool) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	now := time.Now()
	var cands []chokePeer[*session]
	for _, s := range sw.sessions {
		// A first source shows an empty have-map, so a peer cannot say it is
		// interested until it is unchoked and told of a piece: any peer that
		// still lacks pieces is a candidate.
		wants := s.peerInterested || (sw.superSeed && s.gotBitfield && s.nhas < len(sw.avail))
		if !wants || s.closed {
			continue
		}
		rate := s.down.rate(now)
		if sw.complete {
			rate = s.up.rate(now)
		}
		cands = append(cands, chokePeer[*session]{key: s, rate: rate, unchoked: !s.amChoking, since: s.since})
	}
	unchoke := sw.choke.choose(cands, periodic, now, rand.IntN)
	for _, s := range sw.sessions {
		switch {
		case unchoke[s] && s.draining:
			s.draining = false
			sw.offerLocked(s)
		case unchoke[s] == !s.amChoking:
		case unchoke[s]:
			s.amChoking = false
			s.queueLocked(&protocol.Unchoke{})
			sw.offerLocked(s)
		case sw.superSeed && s.midPiece():
			// A first source lets a peer finish the pieces it is fetching
			// before choking it, or it would have to send them again.
			s.draining = true
			sw.returnUnaskedLocked(s)
		default:
			sw.chokeLocked(s)
		}
	}
}

// chokeLocked stops answering s's requests.
func (sw *swarm) chokeLocked(s *session) {
	s.amChoking, s.draining = true, false
	s.queue = s.queue[:0]
	sw.returnOffersLocked(s)
	s.queueLocked(&protocol.Choke{})
}

// offerLocked reveals to an unchoked peer, as a first source, pieces that no
// connected peer holds and that are not revealed to another peer already, a
// few at a time. A revealed piece stays with its peer until the peer announces
// it has it, or is choked or leaves; so a piece goes out twice only when the
// peer it went to left, or was choked before it had all of it. Once every
// piece is held by some peer, the source sends second copies of pieces only
// one peer holds: they are the ones the swarm is slowest to spread, and would
// be lost if that peer left. It does so until it has sent firstSourceExtra of
// the file beyond one copy: the swarm can finish on its own, and the first
// source's upload is often the scarcest in it.
func (sw *swarm) offerLocked(s *session) {
	if !sw.superSeed || s.amChoking || s.draining || s.closed || s.told == nil {
		return
	}
	for len(s.offered) < superSeedOffers {
		pick, seen, missing := -1, 0, 0
		for i := range sw.avail {
			if sw.avail[i] == 0 {
				missing++
			}
			// A peer told of a piece before may ask for it anyway; one that let
			// its offer lapse is not offered it again (unless its request was
			// rejected since, which untold it).
			if sw.avail[i] > 0 || sw.offeredTo[i] != nil || s.told.has(i) {
				continue
			}
			seen++
			if rand.IntN(seen) == 0 {
				pick = i
			}
		}
		second := false
		if pick < 0 && missing == 0 && sw.secondCopyRoomLocked() {
			second = true
			for i := range sw.avail {
				if sw.avail[i] != 1 || sw.offeredTo[i] != nil || s.has.has(i) {
					continue
				}
				seen++
				if rand.IntN(seen) == 0 {
					pick = i
				}
			}
		}
		if pick < 0 {
			return // every piece is on its way to a peer, or held by two
		}
		sw.offeredTo[pick] = s
		s.offered[pick] = &offer{at: time.Now(), second: second}
		if !s.told.has(pick) {
			s.told.set(pick)
			s.queueLocked(&protocol.Have{Piece: uint32(pick)})
		}
	}
}

// takenLocked ends the offer of a piece s now holds, and offers the next.
func (sw *swarm) takenLocked(s *session, piece int) {
	if s.offered[piece] == nil {
		return
	}
	sw.withdrawLocked(s, piece)
	if s.draining && !s.midPiece() {
		sw.chokeLocked(s)
	}
	sw.offerLocked(s)
}

// offer is a piece a first source revealed to one peer.
type offer struct {
	at     time.Time
	asked  bool // the peer requested a block of it
	second bool // a second copy
}

// secondCopyRoomLocked reports whether a first source may reveal one more
// second copy: what it sent and the second copies still on their way stay
// within firstSourceExtra of the file beyond one copy.
func (sw *swarm) secondCopyRoomLocked() bool {
	pending := int64(0)
	for _, s := range sw.sessions {
		for _, o := range s.offered {
			if o.second {
				pending += sw.meta.PieceSize
			}
		}
	}
	return float64(sw.prog.Uploaded+pending+sw.meta.PieceSize) <= (1+firstSourceExtra)*float64(sw.meta.Size)
}

// midPiece reports whether s is fetching a piece revealed to it.
func (s *session) midPiece() bool {
	for _, o := range s.offered {
		if o.asked {
			return true
		}
	}
	return false
}

// adoptRevealLocked decides a first source's answer to s asking for piece p,
// which is not revealed to s now (its reveal passed to another peer, or s was
// choked before it asked). While s still counts p as ours, nobody holds p and
// nobody else is fetching it, p is revealed to s again and the request
// answered; else a copy to s would be a second copy while the swarm has it
// already, and it is rejected.
func (sw *swarm) adoptRevealLocked(s *session, p int) bool {
	if !s.told.has(p) || sw.avail[p] > 0 || (sw.offeredTo[p] != nil && sw.offeredTo[p] != s) {
		return false
	}
	sw.offeredTo[p] = s
	s.offered[p] = &offer{at: time.Now()}
	return true
}

// returnUnaskedLocked takes back the reveals s has not started on.
func (sw *swarm) returnUnaskedLocked(s *session) {
	for p, o := range s.offered {
		if !o.asked {
			sw.withdrawLocked(s, p)
		}
	}
}

// withdrawLocked ends the reveal of piece p to s.
func (sw *swarm) withdrawLocked(s *session, p int) {
	delete(s.offered, p)
	if sw.offeredTo[p] == s {
		delete(sw.offeredTo, p)
	}
}

// How long a revealed piece stays reserved for its peer: a peer that does not
// ask for it soon, or does not finish it, gives it up to others.
const (
	offerAskTimeout  = 2 * time.Second
	offerTakeTimeout = 30 * time.Second
)

// expireOffersLocked takes back reveals their peers did not act on, and offers
// the pieces to others.
func (sw *swarm) expireOffersLocked(now time.Time) {
	if !sw.superSeed {
		return
	}
	expired := false
	for _, s := range sw.sessions {
		for p, o := range s.offered {
			// A peer that keeps asking for other pieces gets to its reveals in turn.
			since := o.at
			if s.lastAsked.After(since) {
				since = s.lastAsked
			}
			idle := now.Sub(since)
			if (!o.asked && idle > offerAskTimeout) || now.Sub(o.at) > offerTakeTimeout {
				sw.withdrawLocked(s, p)
				expired = true
			}
		}
		if s.draining && !s.midPiece() {
			sw.chokeLocked(s)
		}
	}
	if expired {
		sw.offerAllLocked()
	}
}

// returnOffersLocked takes back what was revealed to s and not sent.
func (sw *swarm) returnOffersLocked(s *session) {
	for p := range s.offered {
		sw.withdrawLocked(s, p)
	}
}

// onSentLocked counts an uploaded block.
func (sw *swarm) onSentLocked(s *session, n int) {
	s.up.add(int64(n), time.Now())
	sw.prog.Uploaded += int64(n)
}

// Status lists the swarms that have peers or are downloading.
func (m *Swarms) Status() []Status {
	m.mu.Lock()
	swarms := make([]*swarm, 0, len(m.swarms))
	for _, sw := range m.swarms {
		swarms = append(swarms, sw)
	}
	m.mu.Unlock()
	var out []Status
	for _, sw := range swarms {
		sw.mu.Lock()
		st := Status{ContentID: sw.id.String(), Name: sw.name, Pieces: len(sw.avail), Have: sw.nhave,
			Peers: len(sw.sessions), Uploaded: sw.prog.Uploaded}
		for _, s := range sw.sessions {
			if !s.amChoking {
				st.Unchoked++
			}
		}
		switch {
		case sw.shared:
			st.Role = "first source"
		case sw.complete:
			st.Role = "seeding"
		default:
			st.Role = "downloading"
		}
		keep := sw.ctx.Err() == nil && (st.Peers > 0 || st.Role == "downloading")
		sw.mu.Unlock()
		if keep {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}
