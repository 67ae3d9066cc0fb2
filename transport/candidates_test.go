package transport

import (
	"net/netip"
	"testing"
)

// TestAddressClasses: which addresses count as LAN candidates and which as
// public ones, and the machine's lists keep to their class, port and bound.
func TestAddressClasses(t *testing.T) {
	for _, c := range []struct {
		ip          string
		lan, public bool
	}{
		{"10.0.0.5", true, false},
		{"192.168.1.20", true, false},
		{"fd00::5", true, false},
		{"203.0.113.9", false, true},
		{"2001:db8:1::2", false, true},
		{"::ffff:198.51.100.7", false, true},
		{"127.0.0.1", false, false},
		{"::1", false, false},
		{"fe80::1", false, false},
		{"169.254.1.1", false, false},
		{"224.0.0.1", false, false},
	} {
		ip := netip.MustParseAddr(c.ip)
		if got := IsLANAddr(ip.Unmap()); got != c.lan {
			t.Errorf("IsLANAddr(%s) = %v", ip, got)
		}
		if got := IsPublicAddr(ip); got != c.public {
			t.Errorf("IsPublicAddr(%s) = %v", ip, got)
		}
	}
	for name, list := range map[string][]string{"host": HostCandidates(7), "global": GlobalAddrs(7)} {
		if len(list) > 4 {
			t.Errorf("%s: %d addresses, want at most 4", name, len(list))
		}
		for _, a := range list {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || ap.Port() != 7 || !LocalIP(ap.Addr()) {
				t.Errorf("%s: %q is not one of this machine's addresses with port 7", name, a)
			}
			if (name == "host" && !IsLANAddr(ap.Addr())) || (name == "global" && !IsPublicAddr(ap.Addr())) {
				t.Errorf("%s: %q is of the wrong class", name, a)
			}
		}
	}
	if !LocalIP(netip.MustParseAddr("127.0.0.1")) || LocalIP(netip.MustParseAddr("192.0.2.123")) {
		t.Error("LocalIP does not tell loopback, which every host has, from a documentation address")
	}
}
