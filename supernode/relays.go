package supernode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/transport"
)

// relayEntry is a relay this supernode may hand to its peers.
type relayEntry struct {
	udp, tcp string
	load     protocol.RelayLoad
	rtt      time.Duration
	link     *transport.Link // nil for the relay inside this process
	seen     time.Time
}

// score orders relays: near ones first, and a busy one looks further away.
func (e *relayEntry) score() float64 {
	util := 0.0
	if e.load.Capacity > 0 {
		util = float64(e.load.Allocations) / float64(e.load.Capacity)
	}
	return float64(e.rtt+time.Millisecond) * (1 + 4*util)
}

type relayTable struct {
	mu      sync.Mutex
	entries map[string]*relayEntry // by UDP (else TCP) address
}

func (t *relayTable) put(e *relayEntry) {
	key := e.udp
	if key == "" {
		key = e.tcp
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		t.entries = make(map[string]*relayEntry)
	}
	t.entries[key] = e
}

func (t *relayTable) drop(link *transport.Link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.entries {
		if e.link == link {
			delete(t.entries, k)
		}
	}
}

// pick returns the best relay; tcp requires one that takes TURN over TCP.
func (t *relayTable) pick(tcp, ipv6 bool) *relayEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best *relayEntry
	for _, e := range t.entries {
		if (tcp && e.tcp == "") || (ipv6 && e.load.IPv6 == "") {
			continue
		}
		if e.load.Capacity > 0 && e.load.Allocations >= e.load.Capacity {
			continue
		}
		if best == nil || e.score() < best.score() {
			best = e
		}
	}
	if best == nil {
		return nil
	}
	c := *best
	return &c
}

// Relays lists the relays the supernode knows, for status and tests.
func (s *Server) Relays() []protocol.RelayLoad {
	s.relays.mu.Lock()
	defer s.relays.mu.Unlock()
	var out []protocol.RelayLoad
	for _, e := range s.relays.entries {
		out = append(out, e.load)
	}
	return out
}

// mintRelay picks a relay and mints credentials on it for peer: on one
// that offers IPv6 relayed addresses, which peer is to ask for, with ipv6.
func (s *Server) mintRelay(peer protocol.PeerID, tcp, ipv6 bool) *protocol.RelayCreds {
	if len(s.cfg.RelaySecret) == 0 {
		return nil
	}
	s.refreshLocalRelay()
	e := s.relays.pick(tcp, ipv6)
	if e == nil {
		return nil
	}
	c := relay.Mint(s.cfg.RelaySecret, peer.String(), s.cfg.RelayCredTTL, time.Now())
	return &protocol.RelayCreds{UDP: e.udp, TCP: e.tcp, Username: c.Username, Password: c.Password, Expires: c.Expires.Unix(), IPv6: ipv6}
}

// refreshLocalRelay updates the entry of the relay inside this process.
func (s *Server) refreshLocalRelay() {
	r := s.cfg.Relay
	if r == nil {
		return
	}
	ld := r.Load()
	e := &relayEntry{load: protocol.RelayLoad{Allocations: uint32(ld.Allocations), Capacity: uint32(ld.Capacity), Rate: ld.Rate}, seen: time.Now()}
	e.udp = transport.AdvertisedAddr(r.UDPAddr(), s.cfg.RelayHost)
	if a := r.TCPAddr(); a != nil {
		e.tcp = transport.AdvertisedAddr(a, s.cfg.RelayHost)
	}
	e.load.UDP, e.load.TCP = e.udp, e.tcp
	if ip6 := r.RelayIP6(); ip6 != nil {
		e.load.IPv6 = ip6.String()
	}
	s.relays.put(e)
}

// relayLink reads a standalone relay's load reports for as long as it stays.
func (s *Server) relayLink(l *transport.Link) {
	defer s.wg.Done()
	defer s.relays.drop(l)
	defer l.Close(nil)
	l.Log().Info().Msg("relay connected")
	for {
		m, err := l.Recv()
		if err != nil {
			l.Log().Info().Err(err).Msg("relay gone")
			return
		}
		switch m := m.(type) {
		case *protocol.RelayLoad:
			rtt, _ := l.RTT()
			e := &relayEntry{udp: m.UDP, tcp: m.TCP, load: *m, link: l, seen: time.Now(), rtt: rtt}
			if e.udp == "" && e.tcp == "" {
				l.Close(fmt.Errorf("%w: relay load without an address", protocol.ErrBadRequest))
				return
			}
			s.relays.put(e)
		case *protocol.Ping:
			l.Send(&protocol.Pong{Seq: m.Seq})
		}
	}
}

// serveTCP answers relay_ask over TLS on TCP, for peers whose network drops
// UDP: they learn a relay and credentials here, then reach everything else
// through the relay.
func (s *Server) serveTCP(ln net.Listener) {
	defer s.wg.Done()
	lim := rate.NewLimiter(50, 100)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !lim.Allow() {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.answerTCP(c); err != nil {
				s.log.Debug().Err(err).Str("remote_addr", c.RemoteAddr().String()).Msg("tcp relay ask")
			}
		}()
	}
}

func (s *Server) answerTCP(c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Server(c, s.node.Identity().ServerTLS())
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	peer, err := protocol.RemotePeerID(tc.ConnectionState())
	if err != nil {
		return err
	}
	m, err := protocol.ReadMessage(tc, nil)
	if err != nil {
		return err
	}
	if _, ok := m.(*protocol.RelayAsk); !ok {
		protocol.WriteMessage(tc, &protocol.Error{Code: protocol.StatusBadRequest, Message: "only relay_ask is served over TCP"})
		return fmt.Errorf("%w: %s over tcp", protocol.ErrBadRequest, m.Type())
	}
	creds := s.mintRelay(peer, true, false)
	if creds == nil {
		protocol.WriteMessage(tc, &protocol.Error{Code: protocol.StatusUnavailable, Message: "no relay that takes TCP is known"})
		return errors.New("no relay for a tcp ask")
	}
	s.log.Info().Str("peer_id", peer.Short()).Str("relay", creds.TCP).Msg("relay credentials over tcp")
	return protocol.WriteMessage(tc, &protocol.RelayOK{Relay: *creds, Observed: c.RemoteAddr().String()})
}

// checkTURNServers keeps the stock TURN servers in the relay table while they
// answer STUN, with the round trip measured.
func (s *Server) checkTURNServers() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TURNCheckInterval)
	defer t.Stop()
	up := make(map[string]bool)
	for {
		for _, addr := range s.cfg.TURNServers {
			ua, err := net.ResolveUDPAddr("udp", addr)
			var rtt time.Duration
			if err == nil {
				ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
				_, rtt, err = s.node.ReflexiveRTT(ctx, ua)
				cancel()
			}
			if s.ctx.Err() != nil {
				return
			}
			if err != nil {
				if wasUp, known := up[addr]; wasUp || !known {
					s.log.Warn().Err(err).Str("turn_server", addr).Msg("TURN server does not answer; not handing it out")
				}
				up[addr] = false
				s.relays.dropKey(addr)
				continue
			}
			if !up[addr] {
				s.log.Info().Str("turn_server", addr).Dur("rtt", rtt).Msg("TURN server answers")
			}
			up[addr] = true
			s.relays.put(&relayEntry{udp: addr, tcp: addr, rtt: rtt, seen: time.Now(),
				load: protocol.RelayLoad{UDP: addr, TCP: addr}})
		}
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

func (t *relayTable) dropKey(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}
