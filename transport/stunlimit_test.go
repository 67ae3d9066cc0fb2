package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A source gets its two buckets' burst, then their rate; another source is
// untouched, and so is one that shares one bucket with the first.
func TestSourceLimiter(t *testing.T) {
	l := newSourceLimiter(10, 5)
	flooder := netip.MustParsePrefix("192.0.2.1/32")
	fi, fj := l.buckets(flooder)
	for fi == fj { // a source whose two choices coincide has one bucket; pick another
		l = newSourceLimiter(10, 5)
		fi, fj = l.buckets(flooder)
	}
	now := l.started.Add(time.Hour)
	take := func(src netip.Prefix, at time.Time, tries int) int {
		n := 0
		for range tries {
			if l.allow(src, at) {
				n++
			}
		}
		return n
	}
	if n := take(flooder, now, 1000); n != 10 {
		t.Fatalf("flooder got %d at once, want two bursts of 5", n)
	}
	if n := take(flooder, now.Add(time.Second), 1000); n != 10 {
		t.Fatalf("flooder got %d a second later, want two buckets' burst again (10/s each, capped at 5)", n)
	}
	if n := take(flooder, now.Add(time.Second+100*time.Millisecond), 1000); n != 2 {
		t.Fatalf("flooder got %d 100 ms later, want 1 from each bucket", n)
	}
	// Sources that share one bucket with the flooder, and one that shares none.
	var sharing, apart netip.Prefix
	for b := 0; b < 1<<16 && (!sharing.IsValid() || !apart.IsValid()); b++ {
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(b >> 8), byte(b)}), 32)
		i, j := l.buckets(src)
		shared := 0
		for _, k := range []uint64{i, j} {
			if k == fi || k == fj {
				shared++
			}
		}
		switch {
		case shared == 1 && i != j && !sharing.IsValid():
			sharing = src
		case shared == 0 && !apart.IsValid():
			apart = src
		}
	}
	if !sharing.IsValid() || !apart.IsValid() {
		t.Fatal("no sources found to compare")
	}
	at := now.Add(time.Second + 100*time.Millisecond)
	if n := take(apart, at, 3); n != 3 {
		t.Errorf("a source apart from the flooder got %d of 3", n)
	}
	if n := take(sharing, at, 3); n != 3 {
		t.Errorf("a source sharing one bucket with the flooder got %d of 3", n)
	}
}

func TestSource(t *testing.T) {
	cases := map[string]string{
		"192.0.2.7:4000":              "192.0.2.7/32",
		"[::ffff:192.0.2.7]:4000":     "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:4000": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:4000":         "fe80::/64",
	}
	for in, want := range cases {
		ap := netip.MustParseAddrPort(in)
		got, ok := Source(udpAddr(ap))
		if !ok || got.String() != want {
			t.Errorf("Source(%s) = %s, %v; want %s", in, got, ok, want)
		}
	}
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }
