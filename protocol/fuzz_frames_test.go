package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// FuzzParseBlockHeader parses block headers as downloaders do before they
// copy the data into place: it must never read past the body or accept a
// header msgpack would not.
func FuzzParseBlockHeader(f *testing.F) {
	for _, b := range [][]byte{{0x92, 0x03, 0xcd, 0x40, 0x00}, {0x92, 0xce, 0, 1, 0x11, 0x70, 0x00}, {0x92}, {0x91, 0x00}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		piece, off, n, err := ParseBlockHeader(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if n > len(b) {
			t.Fatalf("header of %d bytes in a %d-byte body", n, len(b))
		}
		m, err := Decode(TypeBlock, b)
		if err != nil {
			t.Fatalf("ParseBlockHeader took a header Decode refuses: %v", err)
		}
		if blk := m.(*Block); blk.Piece != piece || blk.Offset != off || len(blk.Data) != len(b)-n {
			t.Fatalf("ParseBlockHeader %d %d %d, Decode %+v", piece, off, n, blk)
		}
	})
}

// fuzzNetKey is a fixed network key for FuzzChainVerify, so its corpus stays
// meaningful across runs.
var fuzzNetKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// FuzzChainVerify checks chains that arrive in hellos, welcomes and member
// entries: any certificate message body either fails to decode, or its chain
// verifies or is refused with ErrNotAdmitted, without panicking. A chain that
// verifies must be signed by the network key at its root.
func FuzzChainVerify(f *testing.F) {
	network := NetworkIDOf(fuzzNetKey)
	sn := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	id, _ := NewIdentity(sn)
	ch := Admit(fuzzNetKey, id.Key.Public().(ed25519.PublicKey), CertSupernode|CertAdmit, time.Unix(1_900_000_000, 0))
	leaf := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{11}, ed25519.SeedSize))
	c := Cert{Key: leaf.Public().(ed25519.PublicKey), Roles: CertSupernode, Expires: 1_850_000_000}
	c.Sig = ed25519.Sign(sn, c.signedBytes(network))
	for _, chain := range []Chain{ch, append(ch.Clone(), c)} {
		frame, err := AppendFrame(nil, &Certificate{Chain: chain})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame[HeaderSize:], int64(1_800_000_000))
	}
	f.Fuzz(func(t *testing.T, body []byte, now int64) {
		m, err := Decode(TypeCertificate, body)
		if err != nil {
			return
		}
		chain := m.(*Certificate).Chain
		err = chain.Verify(network, chain.Leaf().Peer(), CertSupernode, time.Unix(now, 0))
		if err != nil {
			if !errors.Is(err, ErrNotAdmitted) {
				t.Fatalf("refusal %v is not ErrNotAdmitted", err)
			}
			return
		}
		if !ed25519.Verify(ed25519.PublicKey(network[:]), chain[0].signedBytes(network), chain[0].Sig) {
			t.Fatal("a chain verified whose root the network key did not sign")
		}
	})
}
