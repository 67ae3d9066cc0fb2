package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/stun/v3"
)

// nonQUICLoop answers STUN Binding requests and delivers Binding responses to
// waiting Reflexive calls. quic-go hands over every packet whose first two bits
// are zero, which is how a STUN message starts.
func (n *Node) nonQUICLoop() {
	defer n.wg.Done()
	buf := make([]byte, 1500)
	for {
		sz, from, err := n.tr.ReadNonQUICPacket(n.ctx, buf)
		if err != nil {
			return
		}
		if !stun.IsMessage(buf[:sz]) {
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:sz]...)}
		if err := m.Decode(); err != nil {
			continue
		}
		switch m.Type {
		case stun.BindingRequest:
			n.answerBinding(m, from)
		case stun.BindingSuccess:
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(m); err != nil {
				continue
			}
			n.stunMu.Lock()
			ch := n.stunWait[m.TransactionID]
			n.stunMu.Unlock()
			if ch != nil {
				select {
				case ch <- &net.UDPAddr{IP: xa.IP, Port: xa.Port}:
				default:
				}
			}
		}
	}
}

var stunSoftware = stun.NewSoftware("supernet")

func (n *Node) answerBinding(req *stun.Message, from net.Addr) {
	ua, ok := from.(*net.UDPAddr)
	if !ok || !n.stunLim.Allow() {
		return
	}
	resp, err := stun.Build(
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port},
		stunSoftware,
		stun.Fingerprint,
	)
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
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stunSoftware, stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	ch := make(chan *net.UDPAddr, 1)
	n.stunMu.Lock()
	n.stunWait[req.TransactionID] = ch
	n.stunMu.Unlock()
	defer func() {
		n.stunMu.Lock()
		delete(n.stunWait, req.TransactionID)
		n.stunMu.Unlock()
	}()
	rto := 500 * time.Millisecond
	for try := 0; try < 7; try++ {
		if _, err := n.tr.WriteTo(req.Raw, server); err != nil {
			return nil, fmt.Errorf("stun to %s: %w", server, err)
		}
		t := time.NewTimer(rto)
		select {
		case a := <-ch:
			t.Stop()
			return a, nil
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("stun to %s: %w: %w", server, ErrNoSTUNAnswer, ctx.Err())
		case <-n.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
		rto *= 2
	}
	return nil, fmt.Errorf("stun to %s: %w", server, ErrNoSTUNAnswer)
}
