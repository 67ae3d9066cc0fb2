package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/pion/stun/v3"

	"github.com/supernet-p2p/supernet/protocol"
)

// maxSTUNWaits bounds the transaction IDs of our STUN requests awaiting
// answers. A punch registers one per candidate, and peers we do not know can
// start punches (their offers), so the table is bounded rather than left to
// grow with them.
const maxSTUNWaits = 4096

// nonQUICLoop answers STUN Binding requests and delivers Binding responses to
// waiting Reflexive calls. quic-go hands over every packet whose first two bits
// are zero, which is how a STUN message starts.
func (n *Node) nonQUICLoop() {
	defer n.wg.Done()
	buf := make([]byte, 1500)
	m := new(stun.Message)
	for {
		sz, from, err := n.tr.ReadNonQUICPacket(n.ctx, buf)
		if err != nil {
			return
		}
		n.handleNonQUIC(buf[:sz], from, m)
	}
}

// handleNonQUIC takes one packet that is not QUIC: a Binding request to
// answer, or the answer to one of ours; anything else is dropped.
func (n *Node) handleNonQUIC(pkt []byte, from net.Addr, m *stun.Message) {
	if !stun.IsMessage(pkt) {
		return
	}
	// The limits come before decoding, so a flood costs a hash and a lookup.
	if binary.BigEndian.Uint16(pkt) == stun.BindingRequest.Value() && !n.allowSTUN(from) {
		return
	}
	m.Raw = pkt
	if err := m.Decode(); err != nil {
		return
	}
	switch m.Type {
	case stun.BindingRequest:
		n.answerBinding(m, from)
	case stun.BindingSuccess:
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(m); err != nil {
			return
		}
		ua, _ := from.(*net.UDPAddr)
		if n.stunWait.Waiting(m.TransactionID) {
			a := stunAnswer{mapped: &net.UDPAddr{IP: slices.Clone(xa.IP), Port: xa.Port}, from: ua, tx: m.TransactionID}
			if tok, err := m.Get(attrProofToken); err == nil && len(tok) == len(a.token) {
				a.hasToken = true
				copy(a.token[:], tok)
			}
			n.stunWait.Deliver(m.TransactionID, a)
		}
	}
}

// allowSTUN takes a token for a Binding request from from: first from its
// source's buckets, then from the node's. One source cannot take more than its
// share, so a flooder does not starve the others.
func (n *Node) allowSTUN(from net.Addr) bool {
	if src, ok := n.adm.key(from); ok && !n.stunSrc.allow(src, time.Now()) {
		n.stunDropped.Add(1)
		return false
	}
	if !n.stunLim.Allow() {
		n.stunDropped.Add(1)
		return false
	}
	return true
}

var stunSoftware = stun.NewSoftware("supernet")

func (n *Node) answerBinding(req *stun.Message, from net.Addr) {
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port},
		stunSoftware,
	}
	if p := n.proofAttr(req, ua); p != nil {
		setters = append(setters, p)
	}
	resp, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		return
	}
	n.tr.WriteTo(resp.Raw, from)
}

// ErrNoSTUNAnswer is returned when a STUN server did not answer in time.
var ErrNoSTUNAnswer = errors.New("no STUN answer")

// Reflexive asks a STUN server, from this node's socket, which address it sees us
// at. It retransmits as RFC 8489 suggests (500 ms, doubling) until ctx ends.
func (n *Node) Reflexive(ctx context.Context, server *net.UDPAddr) (*net.UDPAddr, error) {
	mapped, _, err := n.ReflexiveRTT(ctx, server)
	return mapped, err
}

// stunTries bounds the Binding requests of one Reflexive: 7, at 0.5 s
// doubling, as RFC 8489's Rc.
const stunTries = 7

// ReflexiveRTT is Reflexive with the round trip of the exchange that was
// answered. Each retransmission is a request of its own, with its own
// transaction ID, so the time is that of one exchange: a lost first request
// does not count its retransmission timeout as round trip.
func (n *Node) ReflexiveRTT(ctx context.Context, server *net.UDPAddr) (*net.UDPAddr, time.Duration, error) {
	a, rtt, err := n.exchange(ctx, server)
	return a.mapped, rtt, err
}

// exchange sends Binding requests with the extra attributes to server until
// one is answered, and returns the answer and that exchange's round trip.
func (n *Node) exchange(ctx context.Context, server *net.UDPAddr, extra ...stun.Setter) (stunAnswer, time.Duration, error) {
	reqs := make([]*stun.Message, stunTries)
	txs := make([][12]byte, stunTries)
	for i := range reqs {
		setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest, stunSoftware}, extra...)
		req, err := stun.Build(append(setters, stun.Fingerprint)...)
		if err != nil {
			return stunAnswer{}, 0, err
		}
		reqs[i], txs[i] = req, req.TransactionID
	}
	ch, forget, ok := n.stunWait.AddAll(txs, stunTries)
	if !ok {
		return stunAnswer{}, 0, fmt.Errorf("stun to %s: %w: %d STUN requests in flight", server, protocol.ErrOverloaded, maxSTUNWaits)
	}
	defer forget()
	sent := make(map[[12]byte]time.Time, stunTries)
	rto := 500 * time.Millisecond
	for try := range stunTries {
		sent[txs[try]] = time.Now()
		if _, err := n.tr.WriteTo(reqs[try].Raw, server); err != nil {
			return stunAnswer{}, 0, fmt.Errorf("stun to %s: %w", server, err)
		}
		t := time.NewTimer(rto)
		select {
		case a := <-ch:
			t.Stop()
			return a, time.Since(sent[a.tx]), nil
		case <-ctx.Done():
			t.Stop()
			return stunAnswer{}, 0, fmt.Errorf("stun to %s: %w: %w", server, ErrNoSTUNAnswer, ctx.Err())
		case <-n.ctx.Done():
			t.Stop()
			return stunAnswer{}, 0, ErrClosed
		case <-t.C:
		}
		rto *= 2
	}
	return stunAnswer{}, 0, fmt.Errorf("stun to %s: %w", server, ErrNoSTUNAnswer)
}

type stunAnswer struct {
	mapped   *net.UDPAddr // what the responder saw
	from     *net.UDPAddr // who responded
	tx       [12]byte
	token    [16]byte // an address proof (see ProveAddr)
	hasToken bool
}

// ErrPunchFailed is returned when no candidate answered a punch in time.
var ErrPunchFailed = errors.New("hole punch failed: no candidate answered")

// Punch sends STUN Binding requests from the node's socket to every candidate
// every interval until one answers, and returns the candidate that did. The
// requests open this side's NAT towards the candidates; the other side does the
// same at the same moment, and the first answer proves a path both ways.
func (n *Node) Punch(ctx context.Context, cands []*net.UDPAddr, interval time.Duration) (*net.UDPAddr, error) {
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: no candidates", ErrPunchFailed)
	}
	reqs := make([]*stun.Message, len(cands))
	txs := make([][12]byte, len(cands))
	byTx := make(map[[12]byte]*net.UDPAddr, len(cands))
	for i, c := range cands {
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stunSoftware, stun.Fingerprint)
		if err != nil {
			return nil, err
		}
		reqs[i], txs[i] = m, m.TransactionID
		byTx[m.TransactionID] = c
	}
	ch, forget, ok := n.stunWait.AddAll(txs, len(cands))
	if !ok {
		return nil, fmt.Errorf("%w: %w: %d STUN requests in flight", ErrPunchFailed, protocol.ErrOverloaded, maxSTUNWaits)
	}
	defer forget()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for i, c := range cands {
			// A send error (no route, say) only rules out that candidate.
			n.tr.WriteTo(reqs[i].Raw, c)
		}
		select {
		case a := <-ch:
			return byTx[a.tx], nil
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrPunchFailed, ctx.Err())
		case <-n.ctx.Done():
			return nil, ErrClosed
		case <-t.C:
		}
	}
}
