package relay

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestAllocateIPv6: a client that reaches the relay over IPv4 and asks for
// IPv6 gets a relayed address on the relay's IPv6 address, and packets
// pass both ways between it and a peer on IPv6 alone. Without asking, the
// relayed address is IPv4; a relay without IPv6 refuses the request.
func TestAllocateIPv6(t *testing.T) {
	six, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer six.Close()
	s := startRelay(t, Config{RelayIP6: net.IPv6loopback})
	allocate := func(s *Server, ipv6 bool) (*Allocation, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a, err := Allocate(ctx, ClientConfig{Server: s.UDPAddr().String(), IPv6: ipv6, Creds: mint("peer-six"), Log: testLog(t)})
		if err == nil {
			t.Cleanup(func() { a.Close() })
		}
		return a, err
	}
	a, err := allocate(s, true)
	if err != nil {
		t.Fatal(err)
	}
	if !a.RelayedAddr().IP.Equal(net.IPv6loopback) {
		t.Fatalf("relayed address %s, want one on ::1", a.RelayedAddr())
	}
	if err := a.Permit(six.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := six.WriteTo([]byte("to the relayed address"), a.RelayedAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := a.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to the relayed address" || from.String() != six.LocalAddr().String() {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}
	if _, err := a.WriteTo([]byte("back"), six.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	six.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err = six.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "back" || from.String() != a.RelayedAddr().String() {
		t.Fatalf("the IPv6 peer read %q from %v: %v", buf[:n], from, err)
	}
	// An IPv4 peer cannot be let in to an IPv6 allocation.
	if err := a.Permit(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Error("an IPv4 address permitted on an IPv6 allocation")
	}

	if b, err := allocate(s, false); err != nil || b.RelayedAddr().IP.To4() == nil {
		t.Errorf("allocation without asking: %v, %v; want IPv4", b, err)
	}
	plain := startRelay(t, Config{})
	if _, err := allocate(plain, true); err == nil {
		t.Error("a relay without IPv6 gave an IPv6 allocation")
	}
	if _, err := Allocate(context.Background(), ClientConfig{Server: s.TCPAddr().String(), TCP: true, IPv6: true, Creds: mint("x")}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("IPv6 over TCP: %v, want refused at once", err)
	}
}
