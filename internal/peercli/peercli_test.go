package peercli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
)

func TestHumanBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}} {
		if got := humanBytes(c.n); got != c.want {
			t.Errorf("humanBytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestProgressLines(t *testing.T) {
	for _, c := range []struct {
		n, of int64
		want  string
	}{{0, 0, "100%"}, {1, 4, "25.0%"}, {2, 3, "66.7%"}} {
		if got := percent(c.n, c.of); got != c.want {
			t.Errorf("percent(%d, %d) = %q, want %q", c.n, c.of, got, c.want)
		}
	}
	if got := peersLine(apitype.Progress{Active: 2, Sources: 5}); got != "2 of 5 peers" {
		t.Errorf("peersLine: %q", got)
	}
	if got := peersLine(apitype.Progress{Active: 1, Sources: 1, Uploaded: 2048}); got != "1 of 1 peers, 2.0 KiB uploaded" {
		t.Errorf("peersLine with uploads: %q", got)
	}
	if short("0123456789abc") != "0123456789" || short("abc") != "abc" {
		t.Error("short")
	}
}

func TestNATLine(t *testing.T) {
	for _, c := range []struct {
		sn   apitype.SupernodeStatus
		want string
	}{
		{apitype.SupernodeStatus{Public: true, NAT: "none"}, "none: publicly reachable (the supernode dialled back)"},
		{apitype.SupernodeStatus{NAT: "symmetric", Mapping: "endpoint-dependent"}, "symmetric, STUN mapping endpoint-dependent"},
		{apitype.SupernodeStatus{NAT: "cone", Mapping: "cone"}, "cone"},
		{apitype.SupernodeStatus{NAT: "unknown", Mapping: "cone"}, "cone (from STUN; not confirmed by the supernode yet)"},
		{apitype.SupernodeStatus{}, "unknown yet"},
	} {
		if got := natLine(c.sn); got != c.want {
			t.Errorf("natLine(%+v) = %q, want %q", c.sn, got, c.want)
		}
	}
}

func TestGroupHitsBestFirst(t *testing.T) {
	src := func(p string) apitype.SourceJSON { return apitype.SourceJSON{PeerID: p} }
	hits := []apitype.HitJSON{
		{ContentID: "a", Score: 1, Sources: []apitype.SourceJSON{src("p1")}},
		{ContentID: "b", Score: 2, Sources: []apitype.SourceJSON{src("p1")}},
		{ContentID: "a", Score: 3, Sources: []apitype.SourceJSON{src("p1"), src("p2")}},
		{ContentID: "c", Score: 2, Sources: []apitype.SourceJSON{src("p1"), src("p2"), src("p3")}},
	}
	got := groupHits(hits)
	var order []string
	for _, h := range got {
		order = append(order, fmt.Sprintf("%s:%d", h.ContentID, len(h.Sources)))
	}
	// a merges to score 3 with 2 sources; c ties b on score and has more sources.
	if fmt.Sprint(order) != "[a:2 c:3 b:1]" {
		t.Errorf("grouped %v, want [a:2 c:3 b:1]", order)
	}
}

func TestExplainExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", localapi.ErrNoDaemon), 3},
		{fmt.Errorf("x: %w", peer.ErrNoSupernode), 4},
		{fmt.Errorf("x: %w", peer.ErrNothingFound), 5},
		{fmt.Errorf("x: %w", protocol.ErrBadContentID), 2},
	} {
		err := explain(c.err)
		var ee exitError
		var ue *cli.UsageError
		switch {
		case errors.As(err, &ee) && ee.code == c.code:
		case errors.As(err, &ue) && c.code == cli.ExitUsage:
		default:
			t.Errorf("explain(%v) = %v, want exit %d", c.err, err, c.code)
		}
	}
	other := errors.New("other")
	if explain(other) != other {
		t.Error("an error without a code was changed")
	}
}

// Arguments are checked before a daemon is asked; a command that needs the
// daemon says so when none runs.
func TestMainArguments(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--data-dir", dir, "search"}, 2},                  // no words
		{[]string{"--data-dir", dir, "get"}, 2},                     // no content ID
		{[]string{"--data-dir", dir, "get", "not-a-content-id"}, 2}, // a bad one
		{[]string{"--data-dir", dir, "no-such-command"}, 2},         // unknown
		{[]string{"--data-dir", dir, "status"}, 3},                  // no daemon
		{[]string{"--data-dir", dir, "search", "hey", "jude"}, 3},   // no daemon
		{[]string{"--data-dir", dir, "rescan", "extra"}, 2},         // takes no arguments
		{[]string{"--data-dir", dir, "--help"}, 0},
	} {
		if got := Main(c.args); got != c.code {
			t.Errorf("peer %v: exit %d, want %d", c.args[2:], got, c.code)
		}
	}
}

// A resumed download's bar shows one rate, the daemon's: the bar's own
// would count the resumed half as fetched at once.
func TestProgressBarOneRate(t *testing.T) {
	var out strings.Builder
	bar := newBar(&out, 100<<20)
	p := apitype.Progress{Name: "song.mp3", Size: 100 << 20, Verified: 50 << 20, Rate: 2 << 20, Sources: 2, Active: 1}
	bar.Describe(barLine(p.Name, p))
	bar.Set64(p.Verified)
	line := out.String()
	if i := strings.LastIndex(line, "\r"); i >= 0 {
		line = line[i+1:]
	}
	if n := strings.Count(line, "/s"); n != 1 || !strings.Contains(line, "2.0 MiB/s") || !strings.Contains(line, "50 MiB of 100 MiB") ||
		!strings.Contains(line, "25s left") || strings.Contains(line, "MB") {
		t.Errorf("bar line %q: want one rate, 2.0 MiB/s, 50 MiB of 100 MiB and 25s left", line)
	}
}

func TestCounted(t *testing.T) {
	for n, want := range map[int]string{0: "0 results", 1: "1 result", 2: "2 results"} {
		if got := counted(n, "result"); got != want {
			t.Errorf("counted(%d) = %q, want %q", n, got, want)
		}
	}
}
