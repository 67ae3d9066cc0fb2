package transport

import (
	"net"
	"net/netip"
	"slices"
)

// maxHostCandidates bounds the LAN addresses a peer announces.
const maxHostCandidates = 4

// HostCandidates are this machine's addresses on its local networks, with
// port: the addresses a peer behind the same NAT reaches it at directly,
// which the NAT's public address does not lead back to (routers rarely
// hairpin). Only private ranges (RFC 1918, RFC 4193) count: loopback,
// link-local and public addresses do not.
func HostCandidates(port int) []string { return localWith(IsLANAddr, port, maxHostCandidates) }

// maxGlobalAddrs bounds the public addresses a supernode lists.
const maxGlobalAddrs = 4

// GlobalAddrs are this machine's public addresses, IPv6 and IPv4, with
// port: where a host on all interfaces is reached from anywhere.
func GlobalAddrs(port int) []string { return localWith(IsPublicAddr, port, maxGlobalAddrs) }

// localWith is up to limit of this machine's addresses that keep holds
// for, with port.
func localWith(keep func(netip.Addr) bool, port, limit int) []string {
	var out []string
	for _, ip := range localAddrs() {
		if keep(ip) {
			out = append(out, netip.AddrPortFrom(ip, uint16(port)).String())
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// localAddrs are the addresses of this machine's interfaces, IPv4-mapped
// ones as IPv4.
func localAddrs() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifaddrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// IsPublicAddr reports whether ip is reachable beyond its own network: a
// global unicast address outside the private ranges.
func IsPublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// LocalIP reports whether ip is one of this machine's own addresses: an
// address no NAT translated.
func LocalIP(ip netip.Addr) bool { return slices.Contains(localAddrs(), ip.Unmap()) }

// IsLANAddr reports whether ip is on a private network: an address worth
// trying only from behind the same NAT.
func IsLANAddr(ip netip.Addr) bool {
	return ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast()
}

// SameHost reports whether two "ip:port" addresses are on one IP address
// (an IPv4-mapped IPv6 address is its IPv4 one); anything that does not
// parse is no match.
func SameHost(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && x.Addr().Unmap() == y.Addr().Unmap()
}

// LANCandidate reports whether "ip:port" is a host candidate: a private
// address with a port.
func LANCandidate(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Port() != 0 && IsLANAddr(ap.Addr().Unmap())
}
