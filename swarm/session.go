package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/content"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// session is one swarm stream with one peer. Its state is guarded by the
// swarm's mutex; a reader and a writer goroutine move the bytes.
type session struct {
	sw       *swarm
	peer     protocol.PeerID
	st       transport.LinkStream
	fr       *transport.FrameReader
	outgoing bool
	src      protocol.Source // how to reach the peer, for peer exchange
	seq      uint64          // order of joining the swarm, for peer exchange
	pexSent  uint64          // the last seq this peer was told of

	since          time.Time
	peerPieces     // what it has, what we asked of it, whether the session ended
	gotBitfield    bool
	useful         int // pieces it has that we lack
	nhas           int // pieces it has
	amChoking      bool
	amInterested   bool
	peerChoking    bool
	peerInterested bool
	queue          []protocol.Request // blocks it asked us for
	ctrl           []protocol.Message // frames waiting for the writer
	offered        map[int]*offer     // first source: pieces revealed, not yet held
	draining       bool               // first source: choked once its revealed pieces arrive
	lastAsked      time.Time          // when it last requested a block
	told           bitset             // first source: pieces announced to it
	down, up       rateMeter
	got            int64 // block bytes it sent us
	wasted         int64
	upRun          uint64 // rank of the piece run we upload to it; under the daemon's upTurns
	moving         bool   // its link is being replaced: ask nothing more here
	moved          bool   // ended to move to the better link
	failing        bool   // a protocol error: the writer sends the Error queued and stops
	err            error
	notify         chan struct{}
	done           chan struct{}
}

func newSession(sw *swarm, peer protocol.PeerID, st transport.LinkStream, fr *transport.FrameReader, outgoing bool) *session {
	return &session{sw: sw, peer: peer, st: st, fr: fr, outgoing: outgoing,
		notify: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *session) queueLocked(m protocol.Message) {
	if s.closed {
		return
	}
	s.ctrl = append(s.ctrl, m)
	s.wake()
}

func (s *session) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// closeLocked ends the session; the goroutines notice and the swarm forgets it.
func (s *session) closeLocked(err error) {
	if s.closed {
		return
	}
	s.closed, s.err = true, err
	close(s.done)
	if s.sw.m != nil {
		s.sw.m.upTurns.done(s)
	}
	code := uint64(0)
	if err != nil {
		code = 1
	}
	if s.st != nil { // nil only in tests of the swarm's logic
		s.st.CancelRead(code)
		if s.failing {
			s.st.Close() // the Error frame written last still reaches the peer
		} else {
			s.st.CancelWrite(code)
		}
	}
	s.sw.removeLocked(s)
}

// run drives the session until it ends and returns why.
func (s *session) run() error {
	sw := s.sw
	stop := context.AfterFunc(sw.ctx, func() {
		sw.mu.Lock()
		s.closeLocked(nil)
		sw.mu.Unlock()
	})
	defer stop()
	werr := make(chan error, 1)
	go func() {
		err := s.writeLoop()
		if err != nil {
			sw.mu.Lock()
			s.closeLocked(err)
			sw.mu.Unlock()
		}
		werr <- err
	}()
	err := s.readLoop()
	if protocolError(err) {
		// Say why before closing: the writer sends this and stops.
		sw.mu.Lock()
		if !s.closed {
			s.failing = true
			s.ctrl = append(s.ctrl[:0], protocol.ErrorMessage(err))
			s.wake()
		}
		sw.mu.Unlock()
		t := time.NewTimer(time.Second)
		select {
		case <-werr:
			werr <- nil
		case <-t.C:
		}
		t.Stop()
	}
	sw.mu.Lock()
	if s.err == nil && err != nil && !errors.Is(err, io.EOF) {
		s.closeLocked(err)
	} else {
		s.closeLocked(nil)
	}
	err = s.err
	sw.mu.Unlock()
	<-werr
	return err
}

// protocolError reports whether err is the remote peer's fault: something it
// sent that the protocol does not allow.
func protocolError(err error) bool {
	return errors.Is(err, protocol.ErrBadRequest) || errors.Is(err, protocol.ErrMalformed) ||
		errors.Is(err, protocol.ErrFrameTooLarge) || errors.Is(err, protocol.ErrUnknownType)
}

// maxBatch bounds the blocks an upload reads from disk and writes to the
// stream at once: consecutive requests of one piece are served with one read.
const maxBatch = 16 * swarmBlock

func (s *session) writeLoop() error {
	sw := s.sw
	var frame, span []byte
	var batch []protocol.Request
	for {
		sw.mu.Lock()
		if s.closed {
			sw.mu.Unlock()
			return nil
		}
		frame = frame[:0]
		var err error
		for _, m := range s.ctrl {
			if frame, err = protocol.AppendFrame(frame, m); err != nil {
				break
			}
		}
		s.ctrl = s.ctrl[:0]
		if s.failing {
			sw.mu.Unlock()
			s.st.Write(frame)
			return nil
		}
		if err != nil {
			sw.mu.Unlock()
			return err
		}
		var total int
		var runEnds bool
		if !s.amChoking && len(s.queue) > 0 {
			if sw.m.upTurns.take(s) {
				batch, total, runEnds = s.takeBatchLocked(batch[:0], sw.m.upLimit.burst(maxBatch))
			}
		} else {
			sw.m.upTurns.done(s)
		}
		sw.mu.Unlock()
		if total > 0 {
			err := sw.m.upLimit.wait(sw.ctx, total)
			sw.m.upTurns.waited(s, runEnds)
			if err != nil {
				return err
			}
			first := batch[0]
			span = slices.Grow(span[:0], total)[:total]
			if err := sw.readBlock(int(first.Piece), int64(first.Offset), span); err != nil {
				sw.log.Warn().Err(err).Int("piece", int(first.Piece)).Msg("cannot read a block to upload")
				frame, _ = protocol.AppendFrame(frame, protocol.ErrorMessage(fmt.Errorf("%w: %v", protocol.ErrUnavailable, err)))
				sw.mu.Lock()
				s.failing = true // closing lets the Error through
				sw.mu.Unlock()
				s.st.Write(frame)
				return err
			}
			rest := span
			for _, r := range batch {
				frame = protocol.AppendBlockHeader(frame, r.Piece, r.Offset, int(r.Length))
				frame = append(frame, rest[:r.Length]...)
				rest = rest[r.Length:]
			}
		}
		if len(frame) == 0 {
			select {
			case <-s.notify:
			case <-s.done:
				return nil
			}
			continue
		}
		if _, err := s.st.Write(frame); err != nil {
			return err
		}
		if total > 0 {
			sw.mu.Lock()
			sw.onSentLocked(s, total)
			sw.mu.Unlock()
			sw.m.uploaded.Add(int64(total))
		}
	}
}

// takeBatchLocked takes the requests to answer next: while unchoked, the first
// queued one and those after it that continue it in the same piece, up to max
// bytes. runEnds reports that the next queued request does not continue the
// batch: the piece run we upload to s ends with it.
func (s *session) takeBatchLocked(batch []protocol.Request, max int) (_ []protocol.Request, total int, runEnds bool) {
	if s.amChoking {
		return batch, 0, true
	}
	for _, r := range s.queue {
		if len(batch) > 0 {
			last := batch[len(batch)-1]
			if r.Piece != last.Piece || r.Offset != last.Offset+last.Length {
				runEnds = true
				break
			}
			if total+int(r.Length) > max {
				break
			}
		}
		batch = append(batch, r)
		total += int(r.Length)
	}
	s.queue = s.queue[len(batch):]
	return batch, total, runEnds || len(s.queue) == 0
}

func (s *session) readLoop() error {
	sw := s.sw
	rbuf := make([]byte, 4096)
	data := make([]byte, swarmBlock)
	for {
		// The frame's deadline (see transport.FrameTimeouts) runs until the
		// next ReadHeader, over the block read in place too.
		t, n, err := s.fr.ReadHeader()
		if err != nil {
			return err
		}
		br := s.fr.Reader()
		if t == protocol.TypeBlock {
			hdr, _ := br.Peek(min(n, 11))
			piece, off, hn, err := protocol.ParseBlockHeader(hdr)
			if err != nil {
				return err
			}
			size := n - hn
			if size > swarmBlock || size <= 0 {
				return fmt.Errorf("%w: block of %d bytes", protocol.ErrBadRequest, size)
			}
			br.Discard(hn)
			if _, err := io.ReadFull(br, data[:size]); err != nil {
				return err
			}
			if err := sw.m.downLimit.wait(sw.ctx, size); err != nil {
				return err
			}
			sw.mu.Lock()
			s.down.add(int64(size), time.Now())
			s.got += int64(size)
			pd, err := sw.onBlockLocked(s, int(piece), int(off), data[:size])
			if err == nil && pd == nil {
				sw.fillLocked(s)
			}
			sw.checkMoveLocked(s)
			sw.mu.Unlock()
			if err != nil {
				return err
			}
			if pd != nil {
				// Hash and write on another goroutine, so the stream keeps moving.
				sw.m.wg.Add(1)
				go func() {
					defer sw.m.wg.Done()
					sw.verify(pd)
				}()
			}
			continue
		}
		body, err := s.fr.ReadBody(t, n, rbuf)
		if err != nil {
			return err
		}
		m, err := protocol.Decode(t, body)
		if err != nil {
			return err
		}
		sw.mu.Lock()
		err = sw.onMessageLocked(s, m)
		sw.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// onMessageLocked applies one control message from s.
func (sw *swarm) onMessageLocked(s *session, m protocol.Message) error {
	n := len(sw.avail)
	if _, ok := m.(*protocol.Bitfield); !ok && !s.gotBitfield {
		if e, ok := m.(*protocol.Error); ok {
			return e.AsError()
		}
		return fmt.Errorf("%w: %s before the have-map", protocol.ErrBadRequest, m.Type())
	}
	switch m := m.(type) {
	case *protocol.Bitfield:
		if s.gotBitfield {
			return fmt.Errorf("%w: a second have-map", protocol.ErrBadRequest)
		}
		if len(m.Bits) != (n+7)/8 || (n%8 != 0 && m.Bits[len(m.Bits)-1]&(0xff>>(n%8)) != 0) {
			return fmt.Errorf("%w: have-map of %d bytes for %d pieces (want %d, spare bits clear)", protocol.ErrBadRequest, len(m.Bits), n, (n+7)/8)
		}
		s.gotBitfield = true
		bits := bitset(m.Bits)
		s.has = newBitset(n)
		for i := range n {
			if bits.has(i) {
				sw.peerHasLocked(s, i)
			}
		}
		sw.fillLocked(s)
		if sw.superSeed {
			sw.kick() // it cannot be interested in the empty have-map it got
		}
	case *protocol.Have:
		i := int(m.Piece)
		if i >= n {
			return fmt.Errorf("%w: have piece %d of %d", protocol.ErrBadRequest, i, n)
		}
		if s.has.has(i) {
			return nil
		}
		if sw.peerHasLocked(s, i) {
			sw.fillLocked(s)
		}
		if sw.superSeed {
			sw.takenLocked(s, i)
		}
	case *protocol.Interest:
		if !s.peerInterested {
			s.peerInterested = true
			sw.kick()
		}
	case *protocol.NoInterest:
		if s.peerInterested {
			s.peerInterested = false
			s.queue = s.queue[:0]
			if !s.amChoking {
				sw.kick()
			}
		}
	case *protocol.Choke:
		s.peerChoking = true
		sw.dropRequestsLocked(s)
		sw.fillAllLocked()
		sw.checkMoveLocked(s)
	case *protocol.Unchoke:
		s.peerChoking = false
		sw.fillLocked(s)
	case *protocol.Request:
		i := int(m.Piece)
		switch {
		case m.Length > swarmBlock || m.Offset%swarmBlock != 0:
			return fmt.Errorf("%w: request of %d bytes at offset %d; blocks are %d bytes at multiples of that", protocol.ErrBadRequest, m.Length, m.Offset, swarmBlock)
		case i >= n || !sw.have.has(i):
			return fmt.Errorf("%w: request for piece %d, which is not on offer", protocol.ErrBadRequest, i)
		case int64(m.Offset)+int64(m.Length) > sw.meta.PieceLen(i):
			return fmt.Errorf("%w: request past the end of piece %d", protocol.ErrBadRequest, i)
		}
		if s.amChoking {
			return nil // it was sent before our choke arrived
		}
		if sw.superSeed && s.offered[i] == nil && !sw.adoptRevealLocked(s, i) {
			// Until a have reveals it again, s no longer counts the piece
			// as ours, and every later request for it is refused too, so
			// that s never holds a reveal it will not finish.
			s.told.unset(i)
			s.queueLocked(&protocol.Reject{Piece: m.Piece, Offset: m.Offset, Length: m.Length})
			return nil
		}
		if o := s.offered[i]; o != nil {
			o.asked = true
		}
		s.lastAsked = time.Now()
		if len(s.queue) >= maxQueuedRequests {
			return fmt.Errorf("%w: more than %d requests waiting", protocol.ErrBadRequest, maxQueuedRequests)
		}
		s.queue = append(s.queue, *m)
		s.wake()
	case *protocol.Reject:
		i := int(m.Piece)
		if i >= n {
			return fmt.Errorf("%w: reject for piece %d of %d", protocol.ErrBadRequest, i, n)
		}
		sw.unaskLocked(s, blockKey(i, int(m.Offset)))
		if s.has.has(i) {
			sw.peerLacksLocked(s, i)
		}
		sw.fillAllLocked()
	case *protocol.Cancel:
		for i, r := range s.queue {
			if r.Piece == m.Piece && r.Offset == m.Offset {
				s.queue = slices.Delete(s.queue, i, i+1)
				break
			}
		}
	case *protocol.Peers:
		sw.learnLocked(s, m.Peers)
	case *protocol.Error:
		return m.AsError()
	default:
		return fmt.Errorf("%w: %s on a swarm stream", protocol.ErrBadRequest, m.Type())
	}
	return nil
}

// peerHasLocked records that s has piece i, and reports whether we lack it.
func (sw *swarm) peerHasLocked(s *session, i int) bool {
	s.has.set(i)
	s.nhas++
	sw.avail[i]++
	if sw.have.has(i) {
		return false
	}
	s.useful++
	return true
}

// peerLacksLocked undoes peerHasLocked: s no longer offers us piece i.
func (sw *swarm) peerLacksLocked(s *session, i int) {
	s.has.unset(i)
	s.nhas--
	sw.avail[i]--
	if !sw.have.has(i) {
		s.useful--
	}
}

// joinPeer opens a swarm stream to src over a link from the connector and runs
// it until it ends. It returns whether the session got under way.
func (sw *swarm) joinPeer(src protocol.Source) (joined, delivered bool, err error) {
	pl, err := sw.m.cfg.Dial(sw.ctx, src)
	if err != nil {
		return false, false, err
	}
	defer pl.Release()
	if !protocol.Supports(pl.Link().Version, protocol.TypeJoin) {
		return false, false, fmt.Errorf("%w: peer speaks protocol v%d, swarms need v%d", protocol.ErrUnsupportedVersion, pl.Link().Version, protocol.VersionSwarm)
	}
	st, err := pl.Link().OpenStream(sw.ctx)
	if err != nil {
		return false, false, err
	}
	fr := pl.Link().NewStreamReader(st, 32<<10)
	sn, nat := sw.m.cfg.Reach()
	if err := protocol.WriteMessage(st, &protocol.Join{ID: sw.id, SN: sn, NAT: nat}); err != nil {
		st.CancelRead(0)
		return false, false, err
	}
	stop := context.AfterFunc(sw.ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	// The meta of the largest file is near the frame cap; what follows is small.
	fr.ExpectFirst()
	m, err := fr.ReadMessage(nil)
	stop()
	if err == nil {
		err = sw.takeMeta(src.Peer, m)
	}
	if err != nil {
		st.CancelRead(1)
		st.CancelWrite(1)
		return false, false, err
	}
	fr.SetMax(MaxFrame)
	s := newSession(sw, src.Peer, st, fr, true)
	s.src = src
	if err := sw.addSession(s); err != nil {
		st.CancelRead(1)
		st.CancelWrite(1)
		return false, false, err
	}
	sw.mu.Lock()
	if k := sw.known[src.Peer]; k != nil {
		k.joined = true
	}
	sw.mu.Unlock()
	sw.m.wg.Add(1)
	go func() {
		defer sw.m.wg.Done()
		select {
		case <-pl.Better():
			// Ask nothing more here; what is in flight still arrives.
			sw.mu.Lock()
			s.moving = true
			sw.checkMoveLocked(s)
			sw.mu.Unlock()
		case <-s.done:
		}
	}()
	err = s.run()
	sw.mu.Lock()
	moved, delivered := s.moved, s.got > 0
	sw.mu.Unlock()
	if moved {
		pl.Link().Log().Info().Str("content_id", sw.id.Short()).Msg("swarm stream moving to a direct link")
		return true, delivered, errPathChanged
	}
	return true, delivered, err
}

// checkMoveLocked ends a moving session once nothing is in flight on it.
func (sw *swarm) checkMoveLocked(s *session) {
	if s.moving && len(s.reqs) == 0 && !s.closed {
		s.moved = true
		s.closeLocked(nil)
	}
}

// takeMeta checks the answer to a Join and adopts the metadata.
func (sw *swarm) takeMeta(from protocol.PeerID, m protocol.Message) error {
	var pm *protocol.Meta
	switch m := m.(type) {
	case *protocol.Meta:
		pm = m
	case *protocol.Error:
		return m.AsError()
	default:
		return fmt.Errorf("%w: got %s instead of meta", protocol.ErrBadRequest, m.Type())
	}
	meta := content.Meta{Size: pm.Size, PieceSize: pm.PieceSize, Hashes: pm.Hashes}
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("peer sent invalid metadata: %w", err)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if meta.ID() != sw.id {
		sw.banLocked(from, "metadata of other content")
		return errors.New("peer sent metadata of other content: banned")
	}
	if err := sw.setMetaLocked(meta, pm.Name); err != nil {
		sw.failLocked(err)
		return err
	}
	return nil
}

// ServeJoin answers a peer's Join: the metadata, then a session like ours.
// fr reads st, as made by l.NewStreamReader.
func (m *Swarms) ServeJoin(l *transport.Link, st transport.LinkStream, fr *transport.FrameReader, j *protocol.Join) error {
	sw := m.swarmFor(j.ID)
	if sw == nil {
		protocol.WriteMessage(st, &protocol.Error{Code: protocol.StatusNotFound, Message: "not shared here: " + j.ID.Short()})
		st.Close()
		return nil
	}
	select {
	case <-sw.metaSet:
	default:
		protocol.WriteMessage(st, &protocol.Error{Code: protocol.StatusNotFound, Message: "no piece of it here yet: " + j.ID.Short()})
		st.Close()
		return nil
	}
	sw.mu.Lock()
	meta := &protocol.Meta{ID: j.ID, Name: sw.name, Size: sw.meta.Size, PieceSize: sw.meta.PieceSize, Hashes: sw.meta.Hashes}
	sw.mu.Unlock()
	if err := protocol.WriteMessage(st, meta); err != nil {
		return err
	}
	s := newSession(sw, l.Peer, st, fr, false)
	// Others are told of it by its supernode, not its address (see learnLocked).
	s.src = protocol.Source{Peer: l.Peer, SN: j.SN, NAT: j.NAT}
	if err := sw.addSession(s); err != nil {
		protocol.WriteMessage(st, protocol.ErrorMessage(err))
		st.Close()
		return nil
	}
	return s.run()
}
