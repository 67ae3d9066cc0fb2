package transport

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// TestAddrProof: a proof names the address the responder saw and holds for
// the peer that asked, at that address, for two minutes; for anyone or
// anywhere else it is refused.
func TestAddrProof(t *testing.T) {
	srv, cli := newNodeWith(t, Config{Listen: true, AddrProofs: true}), newNode(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := cli.ProveAddr(ctx, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if p.Addr != cli.Addr().String() {
		t.Fatalf("proof for %s, want %s", p.Addr, cli.Addr())
	}
	if got, ok := srv.CheckProof(cli.cfg.Identity.ID, p); !ok || got.String() != p.Addr {
		t.Fatalf("honest proof refused: %v %v", got, ok)
	}
	other, _ := protocol.GenerateIdentity()
	if _, ok := srv.CheckProof(other.ID, p); ok {
		t.Error("proof taken for another peer ID")
	}
	moved := p
	ap := netip.MustParseAddrPort(p.Addr)
	moved.Addr = netip.AddrPortFrom(ap.Addr(), ap.Port()+1).String()
	if _, ok := srv.CheckProof(cli.cfg.Identity.ID, moved); ok {
		t.Error("proof taken for another address")
	}
	mapped := p
	mapped.Addr = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()).String()
	if _, ok := srv.CheckProof(cli.cfg.Identity.ID, mapped); !ok {
		t.Error("proof refused in its IPv4-mapped spelling")
	}
	stale := protocol.AddrProof{Addr: p.Addr, Token: proofToken(srv.proofKey, cli.cfg.Identity.ID.String(), ap, time.Now().Add(-3*time.Minute))}
	if _, ok := srv.CheckProof(cli.cfg.Identity.ID, stale); ok {
		t.Error("a three-minute-old token taken")
	}
	recent := protocol.AddrProof{Addr: p.Addr, Token: proofToken(srv.proofKey, cli.cfg.Identity.ID.String(), ap, time.Now().Add(-proofWindow))}
	if _, ok := srv.CheckProof(cli.cfg.Identity.ID, recent); !ok {
		t.Error("last minute's token refused")
	}
	// Another responder's tokens, or none, prove nothing here.
	plain := newNode(t, true)
	if _, err := cli.ProveAddr(ctx, plain.Addr()); !errors.Is(err, ErrNoProof) {
		t.Errorf("a responder without proofs: %v, want ErrNoProof", err)
	}
	if _, ok := plain.CheckProof(cli.cfg.Identity.ID, p); ok {
		t.Error("a node without proofs took one")
	}
	// A plain Binding request to the proof responder is answered as ever.
	if a, err := cli.Reflexive(ctx, srv.Addr()); err != nil || a.String() != cli.Addr().String() {
		t.Errorf("plain request: %v, %v", a, err)
	}
}
