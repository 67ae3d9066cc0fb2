package supernode

import (
	"net"
	"net/netip"

	"golang.org/x/time/rate"
)

// Per-source limits of the server: leaves per address block and member
// lists per supernode link. The router keeps the per-link message rates.

// addrKey is the block one source is counted in: an IPv4 address, or the /64
// of an IPv6 one (a host is given a /64, and can pick any address in it).
func addrKey(a net.Addr) (netip.Prefix, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// takeAddrSlot counts one more leaf from a's block, unless the block has
// MaxLeavesPerAddr already.
func (s *Server) takeAddrSlot(a net.Addr) (netip.Prefix, bool) {
	k, ok := addrKey(a)
	if !ok {
		return netip.Prefix{}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[k] >= s.cfg.MaxLeavesPerAddr {
		return k, false
	}
	s.perAddr[k]++
	return k, true
}

func (s *Server) releaseAddrSlot(k netip.Prefix) {
	if !k.IsValid() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[k]--; s.perAddr[k] <= 0 {
		delete(s.perAddr, k)
	}
}

// membersAllowed keeps a supernode link to a member list every half gossip
// round or so: each entry in one costs a signature check.
func (s *Server) membersAllowed(id LinkID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := s.membersLim[id]
	if lim == nil {
		every := rate.Every(s.cfg.GossipInterval / 2)
		lim = rate.NewLimiter(every, 4)
		s.membersLim[id] = lim
	}
	return lim.Allow()
}

// sameHost reports whether a and b are host:port with the same host.
func sameHost(a, b string) bool {
	ha, _, err1 := net.SplitHostPort(a)
	hb, _, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return false
	}
	x, err1 := netip.ParseAddr(ha)
	y, err2 := netip.ParseAddr(hb)
	if err1 != nil || err2 != nil {
		return false
	}
	return x.Unmap() == y.Unmap()
}

// isRelayAddr reports whether addr is on a relay this supernode hands out:
// the only place a leaf's relayed address may be.
func (s *Server) isRelayAddr(addr string) bool {
	s.relays.mu.Lock()
	defer s.relays.mu.Unlock()
	for _, e := range s.relays.entries {
		if sameHost(addr, e.udp) || (e.tcp != "" && sameHost(addr, e.tcp)) {
			return true
		}
	}
	return s.cfg.Relay != nil && sameHost(addr, s.cfg.Relay.UDPAddr().String())
}
