package transport

import "testing"

func TestDialable(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6346":       true,
		"[::1]:6346":           true,
		"sn.example.org:6346":  true,
		":6346":                false,
		"0.0.0.0:6346":         false,
		"[::]:6346":            false,
		"127.0.0.1":            false,
		"":                     false,
		"peerid@127.0.0.1:1:2": false,
	} {
		if got := Dialable(addr); got != want {
			t.Errorf("Dialable(%q) = %v, want %v", addr, got, want)
		}
	}
}
