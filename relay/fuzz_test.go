package relay

import (
	"strings"
	"testing"
	"time"
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
