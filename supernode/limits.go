package supernode

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// Per-source limits of the server: leaves per address block. The router
// and the cores keep the per-link message rates.

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

// sameHost reports whether a and b are host:port with the same host.
// leafAddrs are the addresses a leaf seen at observed is listed with. Others
// get only addresses seen here: the observed one, and those the leaf names
// on the host it was seen at. Anything else could point downloaders at a
// host of the leaf's choosing, but for its LAN addresses (private ranges),
// which peers try only when they share its public address, behind the same
// NAT (dial.Candidates).
func leafAddrs(observed string, named []string) []string {
	addrs := []string{observed}
	for _, a := range named {
		if a != observed && len(addrs) < protocol.MaxAddrs && (transport.SameHost(a, observed) || transport.LANCandidate(a)) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// isRelayAddr reports whether addr is on a relay this supernode hands out:
// the only place a leaf's relayed address may be.
func (s *Server) isRelayAddr(addr string) bool {
	s.relays.mu.Lock()
	defer s.relays.mu.Unlock()
	for _, e := range s.relays.entries {
		if transport.SameHost(addr, e.udp) || (e.tcp != "" && transport.SameHost(addr, e.tcp)) || (e.load.IPv6 != "" && transport.SameHost(addr, net.JoinHostPort(e.load.IPv6, "0"))) {
			return true
		}
	}
	return s.cfg.Relay != nil && transport.SameHost(addr, s.cfg.Relay.UDPAddr().String())
}

// SilentLeaf is how long a leaf that pings may go without a frame before it
// is taken as dead: ten of its pings (every 500 ms by default) lost in a row.
// Leaves asked to ping less often get SilentPings of the longest interval
// asked of them lately, if that is longer.
const (
	SilentLeaf  = 5 * time.Second
	SilentPings = 3
)

// askPeriod is how often the longest ping interval asked is forgotten: a
// period after the supernode asks for less, every leaf has pinged and heard
// the new interval (MaxPingEvery is far shorter).
const askPeriod = time.Minute

// dropSilentLeaves closes the links of pinging leaves that went quiet: a leaf
// that died without a goodbye, whose files would otherwise be offered as
// sources until QUIC's idle timeout.
func (s *Server) dropSilentLeaves(now time.Time) {
	if now.Sub(s.askPeriodAt) >= askPeriod {
		s.askPeriodAt = now
		s.router.NextAskPeriod()
	}
	after := max(SilentLeaf, SilentPings*s.router.AskedEvery())
	s.mu.Lock()
	var quiet []*transport.Link
	for id := range s.pinging {
		if l := s.links[id]; l != nil && l.Quiet() > after {
			quiet = append(quiet, l)
		}
	}
	s.mu.Unlock()
	for _, l := range quiet {
		l.Log().Info().Dur("quiet", l.Quiet().Round(time.Millisecond)).Msg("leaf stopped pinging; dropping it")
		l.Close(fmt.Errorf("%w: no word from the leaf for %v", protocol.ErrTimeout, after))
	}
}

// MemoryFull is the share of the soft memory limit past which a supernode
// takes no new leaves: the collector runs without pause near the limit, and
// every leaf already attached would pay for one more.
const MemoryFull = 0.85

// memCheckEvery is how long one reading of the memory in use serves.
const memCheckEvery = 100 * time.Millisecond

// memCheck caches whether memory is short, read at most every memCheckEvery.
type memCheck struct {
	mu   sync.Mutex
	at   time.Time
	full bool
}

// memoryFull reports whether the memory in use is past MemoryFull of the
// soft limit.
func (s *Server) memoryFull() bool {
	c := &s.memCheck
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.at) >= memCheckEvery {
		c.at = now
		used, limit := s.cfg.Memory()
		c.full = limit > 0 && float64(used) > MemoryFull*float64(limit)
	}
	return c.full
}

// MemoryRefused counts the leaves refused for want of memory.
func (s *Server) MemoryRefused() uint64 { return s.refused[refMemory].Load() }

// runtimeMemory is the memory the collector cannot give back, and the soft
// limit (0: none). That is the heap live at the last collection and all
// the runtime holds outside heap objects: goroutine stacks, metadata,
// buffers. It leaves out the garbage and free space the limit lets the
// heap gather between collections, which the next one reclaims: counted,
// that made a supernode at 10,000 leaves refuse new ones as short of
// memory while its live memory was half the limit.
func runtimeMemory() (used, limit uint64) {
	l := debug.SetMemoryLimit(-1)
	if l == math.MaxInt64 {
		return 0, 0
	}
	sample := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(sample)
	v := func(i int) uint64 { return sample[i].Value.Uint64() }
	outside := v(0) - v(1) - v(2) - v(3) - v(4)
	return v(5) + outside, uint64(l)
}
