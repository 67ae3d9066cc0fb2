package supernode

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
)

// TestRelayAskOverTCP: a peer that cannot use UDP gets credentials for the
// in-process relay over TLS on TCP, pinned to the supernode's key; they are
// minted for that peer and name the relay's TCP address.
func TestRelayAskOverTCP(t *testing.T) {
	secret := []byte("a secret of at least sixteen bytes")
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	r, err := relay.New(relay.Config{Secret: secret, ListenUDP: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NetworkKey: testNetKey, RelaySecret: secret, Relay: r, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Close()

	peer, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := relay.AskTCP(ctx, peer, s.TCPAddr().String(), s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if ok.Relay.TCP != r.TCPAddr().String() || !strings.HasSuffix(ok.Relay.Username, ":"+peer.ID.String()) {
		t.Errorf("grant %+v: want the relay's TCP address %s and a username for %s", ok.Relay, r.TCPAddr(), peer.ID.Short())
	}
	a, err := relay.Allocate(ctx, relay.ClientConfig{Server: ok.Relay.TCP, TCP: true, Log: log,
		Creds: relay.Credentials{Username: ok.Relay.Username, Password: ok.Relay.Password, Expires: time.Unix(ok.Relay.Expires, 0)}})
	if err != nil {
		t.Fatalf("allocating with the granted credentials: %v", err)
	}
	a.Close()

	// Pinning: a dial that expects another supernode's key fails.
	other, _ := protocol.GenerateIdentity()
	if _, err := relay.AskTCP(ctx, peer, s.TCPAddr().String(), other.ID); err == nil {
		t.Error("relay ask succeeded against the wrong supernode key")
	}
}

// TestRelayAskWithoutRelay: with a secret but no relay known, the ask is
// answered with unavailable, not a grant.
func TestRelayAskWithoutRelay(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NetworkKey: testNetKey, RelaySecret: []byte("a secret of at least sixteen bytes"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Close()
	peer, _ := protocol.GenerateIdentity()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := relay.AskTCP(ctx, peer, s.TCPAddr().String(), s.ID()); !errors.Is(err, protocol.ErrUnavailable) {
		t.Errorf("ask with no relay: %v, want unavailable", err)
	}
}
