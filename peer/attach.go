package peer

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// SupernodeStatus describes the attachment.
type SupernodeStatus struct {
	Addr      string    `json:"addr"`
	PeerID    string    `json:"peer_id,omitempty"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitempty"`
	Observed  string    `json:"observed_addr,omitempty"`
	Reflexive string    `json:"reflexive_addr,omitempty"`
	// Mapping is what two STUN answers showed of our NAT; NAT is what the
	// supernode established, with Public set when its dial back reached us.
	Mapping   string `json:"mapping,omitempty"`
	NAT       string `json:"nat,omitempty"`
	Public    bool   `json:"public"`
	Relay     string `json:"relay,omitempty"` // the relay we live on, when UDP is blocked
	LastError string `json:"last_error,omitempty"`
	// Listed is how many supernodes the member list (or its cache) names,
	// ours included: where we attach when the configured ones are gone.
	Listed int `json:"supernodes_listed"`
}

// attachment keeps the peer attached to one supernode of its list, failing over
// to the next when the current one dies, and republishes the share on each attach.
type attachment struct {
	d *Daemon

	mu        sync.Mutex
	link      *transport.Link
	status    SupernodeStatus
	searches  map[protocol.QueryID]*search
	published map[protocol.ContentID]bool
	attached  chan struct{} // closed while attached; replaced on detach
	nat       protocol.NATType
	listed    []string // supernodes from the member list (and its cache), peerid@addr
}

func newAttachment(d *Daemon) *attachment {
	return &attachment{
		d:         d,
		searches:  make(map[protocol.QueryID]*search),
		published: make(map[protocol.ContentID]bool),
		attached:  make(chan struct{}),
	}
}

func (a *attachment) snapshot() SupernodeStatus {
	a.mu.Lock()
	st := a.status
	st.Listed = len(a.listed)
	a.mu.Unlock()
	if a.d.onRelay != nil {
		st.Relay = a.d.relayTCP + " (tcp), relayed address " + a.d.onRelay.RelayedAddr().String()
	}
	return st
}

// self is how other peers reach us through the overlay: our supernode and NAT.
func (a *attachment) self() (*protocol.PeerID, protocol.NATType) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link == nil {
		return nil, protocol.NATUnknown
	}
	sn := a.link.Peer
	return &sn, a.nat
}

func (a *attachment) current() *transport.Link {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.link
}

// waitAttached blocks until attached or ctx ends.
func (a *attachment) waitAttached(ctx context.Context) (*transport.Link, error) {
	for {
		a.mu.Lock()
		l, ch := a.link, a.attached
		a.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (a *attachment) run() {
	d := a.d
	defer d.wg.Done()
	if d.cfg.DataDir != "" {
		a.mu.Lock()
		a.listed = loadMembers(d.cfg.DataDir)
		a.mu.Unlock()
	}
	if len(a.targets()) == 0 {
		d.log.Warn().Msg("no supernode configured: search and publish are off")
		return
	}
	backoff := 250 * time.Millisecond
	for i := 0; d.ctx.Err() == nil; i++ {
		targets := a.targets()
		target := targets[i%len(targets)]
		if err := a.attachOnce(target); err != nil && d.ctx.Err() == nil {
			a.mu.Lock()
			a.status = SupernodeStatus{Addr: target, LastError: err.Error()}
			a.mu.Unlock()
			d.log.Warn().Err(err).Str("supernode", target).Msg("supernode unavailable")
		} else {
			backoff = 250 * time.Millisecond
		}
		// After a full round of failures, back off before the next round.
		if (i+1)%len(targets) == 0 {
			select {
			case <-time.After(backoff/2 + rand.N(backoff)):
			case <-d.ctx.Done():
				return
			}
			backoff = min(backoff*2, 15*time.Second)
		}
	}
}

func (a *attachment) attachOnce(target string) error {
	d := a.d
	expect, addr, err := transport.ParseTarget(target)
	if err != nil {
		return err
	}
	hello := &protocol.Hello{Role: protocol.RoleLeaf, Name: d.cfg.Name}
	if la := d.Addr(); la != nil && !la.IP.IsUnspecified() {
		hello.Addrs = []string{la.String()}
	}
	l, w, err := d.node.Dial(d.ctx, addr, expect, hello)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.link = l
	a.status = SupernodeStatus{Addr: addr, PeerID: l.Peer.String(), Connected: true, Since: time.Now(), Observed: w.Observed}
	a.published = make(map[protocol.ContentID]bool)
	close(a.attached)
	a.mu.Unlock()
	l.Log().Info().Str("observed_addr", w.Observed).Msg("attached to supernode")
	a.republish()
	d.wg.Add(1)
	go a.discoverNAT(l, w.STUNAlt)
	a.readLoop(l)

	a.mu.Lock()
	a.link = nil
	a.attached = make(chan struct{})
	a.status.Connected = false
	if err := l.Err(); err != nil {
		a.status.LastError = err.Error()
	}
	for id, s := range a.searches {
		s.fail(fmt.Errorf("%w: supernode connection lost: %v", ErrNoSupernode, l.Err()))
		delete(a.searches, id)
	}
	a.mu.Unlock()
	if d.ctx.Err() == nil {
		l.Log().Warn().Err(l.Err()).Msg("supernode connection lost; failing over")
	}
	return nil
}

// discoverNAT asks the supernode's two STUN ports, from the peer's QUIC socket,
// which address the world sees. The same answer from both means the NAT maps
// independently of the destination; different ones mean a symmetric NAT. The
// supernode then checks by dialling back and answers with NATStatus.
func (a *attachment) discoverNAT(l *transport.Link, alt string) {
	defer a.d.wg.Done()
	ua, ok := l.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(a.d.ctx, 5*time.Second)
	defer cancel()
	r1, err := a.d.node.Reflexive(ctx, ua)
	if err != nil {
		l.Log().Debug().Err(err).Msg("stun")
		return
	}
	mapping := protocol.NATUnknown
	reflexive := []string{r1.String()}
	if a.d.onRelay != nil {
		mapping = protocol.NATUDPBlocked
	} else if altAddr := altSTUN(alt, ua); altAddr != nil {
		r2, err := a.d.node.Reflexive(ctx, altAddr)
		switch {
		case err != nil:
			l.Log().Debug().Err(err).Msg("stun on the second port")
		case r1.String() != r2.String():
			mapping = protocol.NATEndpointDependent
			reflexive = append(reflexive, r2.String())
		case r1.String() == a.d.Addr().String():
			mapping = protocol.NATNone
		default:
			mapping = protocol.NATEndpointIndependent
		}
	}
	a.mu.Lock()
	if a.link == l {
		a.status.Reflexive = r1.String()
		a.status.Mapping = mapping.String()
	}
	a.mu.Unlock()
	l.Log().Info().Str("reflexive_addr", r1.String()).Str("mapping", mapping.String()).Msg("NAT measured")
	if l.Version >= protocol.VersionSignal {
		l.Send(&protocol.NATReport{Mapping: mapping, Reflexive: reflexive})
	}
}

// altSTUN is the supernode's second STUN address, with the host we dialled
// when the supernode gave an unspecified one.
func altSTUN(alt string, dialled *net.UDPAddr) *net.UDPAddr {
	if alt == "" {
		return nil
	}
	ua, err := net.ResolveUDPAddr("udp", alt)
	if err != nil {
		return nil
	}
	if ua.IP == nil || ua.IP.IsUnspecified() {
		ua.IP = dialled.IP
	}
	return ua
}

func (a *attachment) readLoop(l *transport.Link) {
	for {
		m, err := l.Recv()
		if err != nil {
			l.Close(err)
			return
		}
		switch m := m.(type) {
		case *protocol.Hits:
			a.mu.Lock()
			s := a.searches[m.ID]
			a.mu.Unlock()
			if s != nil {
				s.add(m.Hits)
			}
		case *protocol.QueryDone:
			if s := a.takeSearch(m.ID); s != nil {
				s.finish(m)
			}
		case *protocol.Error:
			err := m.AsError()
			if s := a.takeSearch(m.Ref); s != nil {
				s.fail(err)
				continue
			}
			l.Log().Warn().Err(err).Msg("supernode reported an error")
		case *protocol.Ping:
			l.Send(&protocol.Pong{Seq: m.Seq})
		case *protocol.Pong:
		case *protocol.Signal:
			a.d.conns.onSignal(m)
		case *protocol.Members:
			a.takeMembers(m)
		case *protocol.NATStatus:
			a.mu.Lock()
			if a.link == l {
				a.status.NAT, a.status.Public = m.NAT.String(), m.Public
				a.nat = m.NAT
			}
			a.mu.Unlock()
			l.Log().Info().Str("nat", m.NAT.String()).Bool("public", m.Public).Msg("supernode established our NAT")
		default:
			l.Log().Debug().Str("msg", m.Type().String()).Msg("ignoring unexpected message")
		}
	}
}

// takeSearch removes and returns the search in flight with id, if any.
func (a *attachment) takeSearch(id protocol.QueryID) *search {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.searches[id]
	delete(a.searches, id)
	return s
}

// republish brings the supernode's view of what we offer up to date: the share
// folder and the files we download or downloaded. New ones are published,
// vanished ones unpublished.
func (a *attachment) republish() {
	d := a.d
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.link
	if l == nil {
		return
	}
	var recs []protocol.FileRecord
	if d.share != nil {
		for _, f := range d.share.Files() {
			recs = append(recs, protocol.FileRecord{ID: f.ID, Name: f.Name, Size: f.Meta.Size, Tags: f.Tags})
		}
	}
	recs = append(recs, d.swarmFiles()...)
	now := make(map[protocol.ContentID]bool, len(recs))
	var add []protocol.FileRecord
	for _, f := range recs {
		if now[f.ID] {
			continue
		}
		now[f.ID] = true
		if !a.published[f.ID] {
			add = append(add, f)
		}
	}
	var del []protocol.ContentID
	for id := range a.published {
		if !now[id] {
			del = append(del, id)
		}
	}
	for len(del) > 0 {
		n := min(len(del), protocol.MaxIDsPerFrame)
		if err := l.Send(&protocol.Unpublish{IDs: del[:n]}); err != nil {
			return
		}
		del = del[n:]
	}
	for len(add) > 0 {
		n := min(len(add), protocol.MaxFilesPerFrame)
		if err := l.Send(&protocol.Publish{Files: add[:n]}); err != nil {
			return
		}
		add = add[n:]
	}
	a.published = now
}

// search is one query in flight.
type search struct {
	mu   sync.Mutex
	hits []protocol.Hit
	done *protocol.QueryDone
	err  error
	note chan struct{}
}

func (s *search) add(h []protocol.Hit) {
	s.mu.Lock()
	s.hits = append(s.hits, h...)
	s.mu.Unlock()
	s.signal()
}

func (s *search) finish(m *protocol.QueryDone) {
	s.mu.Lock()
	s.done = m
	s.mu.Unlock()
	s.signal()
}

func (s *search) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.signal()
}

func (s *search) signal() {
	select {
	case s.note <- struct{}{}:
	default:
	}
}

func (s *search) take() ([]protocol.Hit, *protocol.QueryDone, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hits
	s.hits = nil
	return h, s.done, s.err
}

// SearchResult summarises a finished search.
type SearchResult struct {
	Supernodes int             `json:"supernodes"`
	Status     protocol.Status `json:"-"`
	Partial    bool            `json:"partial"`
}

// Search sends a query to the supernode and calls onHits as hits stream in. A
// query by content ID sets cid and leaves text empty.
func (d *Daemon) Search(ctx context.Context, text string, cid protocol.ContentID, limit int, onHits func([]protocol.Hit)) (SearchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SearchTimeout)
	defer cancel()
	q := &protocol.Query{Text: text, CID: cid, Limit: uint16(min(max(limit, 0), 65535))}
	if q.Text == "" && q.CID.IsZero() {
		return SearchResult{}, fmt.Errorf("%w: empty query", protocol.ErrBadRequest)
	}
	if len(q.Text) > protocol.MaxQueryLen {
		return SearchResult{}, fmt.Errorf("%w: query longer than %d bytes", protocol.ErrBadRequest, protocol.MaxQueryLen)
	}
	crand.Read(q.ID[:])
	// A peer that has just started may still be attaching: give it a moment.
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	l, err := d.attach.waitAttached(wctx)
	wcancel()
	if err != nil {
		st := d.attach.snapshot()
		if st.LastError != "" {
			return SearchResult{}, fmt.Errorf("%w: %s", ErrNoSupernode, st.LastError)
		}
		return SearchResult{}, ErrNoSupernode
	}
	s := &search{note: make(chan struct{}, 1)}
	d.attach.mu.Lock()
	d.attach.searches[q.ID] = s
	d.attach.mu.Unlock()
	defer d.attach.takeSearch(q.ID)
	if err := l.Send(q); err != nil {
		return SearchResult{}, fmt.Errorf("%w: %v", ErrNoSupernode, err)
	}
	for {
		select {
		case <-s.note:
		case <-ctx.Done():
			h, _, _ := s.take()
			d.deliver(h, onHits)
			return SearchResult{Partial: true, Status: protocol.StatusTimeout}, nil
		}
		h, done, err := s.take()
		d.deliver(h, onHits)
		if err != nil {
			return SearchResult{}, err
		}
		if done != nil {
			return SearchResult{Supernodes: int(done.Supernodes), Status: done.Status, Partial: done.Status != protocol.StatusOK}, nil
		}
	}
}

func (d *Daemon) deliver(h []protocol.Hit, onHits func([]protocol.Hit)) {
	if len(h) == 0 {
		return
	}
	d.srcs.add(h)
	if onHits != nil {
		onHits(h)
	}
}
