package relay

import (
	"fmt"
	"net/netip"
	"strings"
)

// A relay sends from its own host, so a client that could name any address
// would reach what only that host can: its LAN, its loopback, the cloud's
// metadata service, a carrier's CGNAT network. Peers of the overlay are on
// the public Internet, so every range that IANA marks not globally reachable
// is refused unless the operator allows it (a relay on a LAN, a test lab).
var reservedPeers = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast"},

	{netip.MustParsePrefix("::/96"), "unspecified, loopback and IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments (Teredo, ORCHID, benchmarking)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing"},
	{netip.MustParsePrefix("fc00::/7"), "unique local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// IPv6 addresses that carry an IPv4 address a gateway on the relay's path
// may forward to: the IPv4 address is judged as well.
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFourPfx = netip.MustParsePrefix("2002::/16")
)

// peerPolicy says which addresses clients may relay to.
type peerPolicy struct {
	allow []netip.Prefix
}

// check returns nil when clients may relay to ip, else why not.
func (p *peerPolicy) check(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("invalid address")
	}
	ip = ip.WithZone("").Unmap() // ::ffff:10.0.0.1 reaches 10.0.0.1 from a udp4 socket
	for _, a := range p.allow {
		if a.Contains(ip) {
			return nil
		}
	}
	for _, r := range reservedPeers {
		if r.prefix.Contains(ip) {
			return fmt.Errorf("%s is in %s (%s)", ip, r.prefix, r.what)
		}
	}
	if v4, ok := embeddedIPv4(ip); ok {
		if err := p.check(v4); err != nil {
			return fmt.Errorf("%s embeds %w", ip, err)
		}
	}
	return nil
}

func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64Prefix.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFourPfx.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// ParsePeerPrefix parses a range an operator allows clients to relay to: a
// CIDR prefix ("10.1.0.0/16") or a single address.
func ParsePeerPrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("peer range %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("peer range %q: write IPv4 ranges in IPv4 form", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("peer range %q: want a CIDR prefix or an address: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
