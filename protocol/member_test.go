package protocol

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMemberRecordSignAndVerify(t *testing.T) {
	id := testIdentity(t)
	m := &MemberRecord{Addrs: []string{"192.0.2.1:4000"}, Beat: 42, Leaves: 17, Cap: 200}
	m.Sign(id)
	b, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back MemberRecord
	if err := msgpack.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(); err != nil || back.Peer() != id.ID {
		t.Fatalf("after a round trip: %v, peer %s", err, back.Peer().Short())
	}
	for name, change := range map[string]func(*MemberRecord){
		"beat":    func(m *MemberRecord) { m.Beat++ },
		"leaves":  func(m *MemberRecord) { m.Leaves = 0 },
		"cap":     func(m *MemberRecord) { m.Cap = 1 },
		"address": func(m *MemberRecord) { m.Addrs = []string{"198.51.100.1:4000"} },
	} {
		c := back.Clone()
		change(c)
		if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed: %v, want a bad signature", name, err)
		}
	}
	for name, change := range map[string]func(*MemberRecord){
		"no address":   func(m *MemberRecord) { m.Addrs = nil },
		"9 addresses":  func(m *MemberRecord) { m.Addrs = make([]string, MaxAddrs+1) },
		"long address": func(m *MemberRecord) { m.Addrs = []string{strings.Repeat("1", MaxAddrLen+1)} },
		"short key":    func(m *MemberRecord) { m.Key = m.Key[:5] },
		"no signature": func(m *MemberRecord) { m.Sig = nil },
	} {
		c := back.Clone()
		change(c)
		if err := c.Verify(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}
