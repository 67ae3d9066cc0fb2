package cli

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/protocol"
)

func TestSplitList(t *testing.T) {
	got := SplitList([]string{"a:1, b:2", "", " , ", "c:3"})
	if want := []string{"a:1", "b:2", "c:3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := SplitList(nil); got != nil {
		t.Errorf("nothing gave %q", got)
	}
}

func TestChecks(t *testing.T) {
	id := protocol.PeerID{1}.String()
	cases := []struct {
		name string
		err  error
		want string // in the error; empty for none
	}{
		{"host and port", CheckHostPort("listen", "127.0.0.1:6346"), ""},
		{"all interfaces", CheckHostPort("listen", ":0"), ""},
		{"IPv6", CheckHostPort("listen", "[::1]:6346"), ""},
		{"name", CheckHostPort("listen", "sn.example:6346"), ""},
		{"no port", CheckHostPort("listen", "sn.example"), `--listen "sn.example": want host:port`},
		{"port beyond 16 bits", CheckHostPort("listen", ":65536"), `port "65536" is not a number from 0 to 65535`},
		{"named port", CheckHostPort("listen", ":http"), `port "http"`},
		{"target", CheckTarget("join", "a:1"), ""},
		{"target with ID", CheckTarget("join", id+"@a:1"), ""},
		{"target with a bad ID", CheckTarget("join", "x@a:1"), `--join "x@a:1": want host:port or peerid@host:port`},
		{"target without a port", CheckTarget("join", id+"@a"), `--join "` + id + `@a": want host:port or peerid@host:port`},
		{"IP", CheckIP("relay-ip", "192.0.2.1"), ""},
		{"no IP", CheckIP("relay-ip", ""), ""},
		{"not an IP", CheckIP("relay-ip", "host"), `--relay-ip "host": not an IP address`},
		{"zero", NotNegative("rescan", time.Duration(0)), ""},
		{"negative duration", NotNegative("rescan", -time.Second), "--rescan -1s: must not be negative"},
		{"negative rate", NotNegative("rate", -0.5), "--rate -0.5: must not be negative"},
		{"log level", CheckLogLevel("warn"), ""},
		{"no log level", CheckLogLevel(""), `log level "": want debug, info, warn or error`},
		{"bad log level", CheckLogLevel("loud"), `log level "loud"`},
	}
	for _, tc := range cases {
		switch {
		case tc.want == "" && tc.err != nil:
			t.Errorf("%s: %v", tc.name, tc.err)
		case tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	var n int
	bind := func(f *pflag.FlagSet) { f.IntVar(&n, "n", 3, "") }
	if err := ParseFlags("x", bind, nil); err != nil || n != 3 {
		t.Errorf("no args: n=%d, %v", n, err)
	}
	if err := ParseFlags("x", bind, []string{"--n", "5"}); err != nil || n != 5 {
		t.Errorf("--n 5: n=%d, %v", n, err)
	}
	for want, args := range map[string][]string{
		"unknown flag: --m":        {"--m", "1"},
		`invalid argument "a"`:     {"--n", "a"},
		`unexpected argument "go"`: {"go"},
	} {
		if err := ParseFlags("x", bind, args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", args, err, want)
		}
	}
}
