package transport

import (
	"net"
	"testing"

	"github.com/pion/stun/v3"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// FuzzSTUNPacket feeds arbitrary packets to the node's STUN handling, as
// anyone on the Internet can send them to its one UDP socket before any
// handshake: nothing panics, and a Binding request is answered only after the
// limits took it.
func FuzzSTUNPacket(f *testing.F) {
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	f.Add(req.Raw)
	resp := stun.MustBuild(stun.TransactionID, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 4000}, stun.Fingerprint)
	f.Add(resp.Raw)
	f.Add(append([]byte(nil), req.Raw[:20]...))
	f.Add([]byte{0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42})
	// Address proofs: a request naming a user, and an answer with a token.
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("x"), stun.Fingerprint).Raw)
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv6loopback, Port: 4000},
		stun.RawAttribute{Type: attrProofToken, Value: make([]byte, 16)}, stun.Fingerprint).Raw)
	id, err := protocol.GenerateIdentity()
	if err != nil {
		f.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	n, err := New(Config{Identity: id, Conn: pc, Log: zerolog.Nop(), AddrProofs: true})
	if err != nil {
		f.Fatal(err)
	}
	defer n.Close()
	// Answers go to the discard port on loopback.
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	m := new(stun.Message)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > 1500 {
			return
		}
		n.handleNonQUIC(pkt, from, m)
	})
}
