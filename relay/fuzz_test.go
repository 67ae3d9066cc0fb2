package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// FuzzParseUsername parses TURN usernames as they arrive in every request,
// before any key is derived: it must not panic, and what it accepts must
// print back to the same username.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1800000000:5uz53y2udrzq", "99999999999:peer", ":peer", "12:", "-5:p", "1:2:3", "", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, peer, ok := parseUsername(s)
		if !ok {
			return
		}
		if peer == "" || !strings.HasSuffix(s, ":"+peer) {
			t.Fatalf("%q parsed to peer %q", s, peer)
		}
		if exp.Before(time.Unix(-1<<62, 0)) {
			t.Fatalf("%q parsed to %v", s, exp)
		}
		_ = peerOf(s)
	})
}

// FuzzAsksIPv6 reads every packet on a relay's UDP socket for an Allocate
// request's address family, before pion sees it: it must not panic, and it
// must agree with a full decode. The seeds are the three families a
// client can ask for, and none.
func FuzzAsksIPv6(f *testing.F) {
	alloc := allocateRequest
	f.Add(stun.MustBuild(stun.TransactionID, alloc, stun.Fingerprint).Raw)
	for _, fam := range []byte{0x01, familyIPv6, 0x07} {
		f.Add(stun.MustBuild(stun.TransactionID, alloc, stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{fam, 0, 0, 0}}, stun.Fingerprint).Raw)
	}
	f.Add([]byte{0x00, 0x03, 0x00, 0x08})
	f.Fuzz(func(t *testing.T, p []byte) {
		got := asksIPv6(p)
		m := stun.Message{Raw: append([]byte(nil), p...)}
		if m.Decode() != nil || m.Type != alloc {
			if got {
				t.Fatalf("%x: not an Allocate request, yet it asks for IPv6", p)
			}
			return
		}
		v, err := m.Get(stun.AttrRequestedAddressFamily)
		if want := err == nil && len(v) == 4 && v[0] == familyIPv6; got != want {
			t.Fatalf("%x: asks for IPv6 %v, decoded %v", p, got, want)
		}
	})
}
