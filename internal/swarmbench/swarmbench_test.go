package swarmbench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestBound(t *testing.T) {
	const f = 64 << 20
	cases := []struct {
		name                 string
		n                    int
		srcUp, peerUp, pDown int64
		want                 float64 // seconds
	}{
		{"reference N=4: the peers' uploads", 4, 20e6, 10e6, 0, 4 * f / 60e6},
		{"reference N=16", 16, 20e6, 10e6, 0, 16 * f / 180e6},
		{"one downloader: the source's upload", 1, 20e6, 10e6, 0, f / 20e6},
		{"slow download lines", 4, 20e6, 10e6, 5e6, f / 5e6},
	}
	for _, c := range cases {
		got := Bound(c.n, f, c.srcUp, c.peerUp, c.pDown).Seconds()
		if math.Abs(got-c.want) > 1e-6 {
			t.Errorf("%s: %.4f s, want %.4f s", c.name, got, c.want)
		}
	}
}

// A small swarm runs to the end with every copy intact, and no faster than the
// bound allows: were it faster, the rate limits would not hold.
func TestRunSmall(t *testing.T) {
	var out strings.Builder
	res, err := Run(context.Background(), Config{
		Downloaders: 3, FileSize: 4 << 20, SourceUp: 4e6, PeerUp: 2e6,
		UnchokeInterval: 200 * time.Millisecond, OptimisticInterval: 600 * time.Millisecond, UnchokeSlots: 4,
		Timeout: 2 * time.Minute, Dir: t.TempDir(), Seed: 1, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	res.Print(&out)
	t.Log("\n" + out.String())
	if res.Identical != 3 || len(res.Done) != 3 {
		t.Fatalf("%d of 3 downloads identical, %d finished", res.Identical, len(res.Done))
	}
	if r := res.Ratio(); r < 0.95 {
		t.Fatalf("finished in %.2f of the bound: the rate limits did not hold", r)
	}
	if res.Copies < 0.99 {
		t.Fatalf("the first source sent %.2f copies; someone must have sent the rest first", res.Copies)
	}
	if res.CPU <= 0 {
		t.Fatal("no CPU time measured")
	}
	if got, want := res.CPUPerGB(), res.CPU.Seconds()/(3*float64(4<<20)/1e9); math.Abs(got-want) > 1e-9 {
		t.Errorf("CPU per GB %.3f, want %.3f", got, want)
	}
	for _, want := range []string{"ratio to the bound", "copies sent by the first source", "client-server time", "CPU per GB delivered"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// Every peer of the swarm dials the supernode from 127.0.0.1: a swarm of
// more than the supernode's default 32 leaves from one address still runs.
func TestRunMorePeersThanOneAddressHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("40 peers")
	}
	const n = 40
	res, err := Run(context.Background(), Config{
		Downloaders: n, FileSize: 1 << 20, SourceUp: 50e6, PeerUp: 20e6,
		UnchokeInterval: 200 * time.Millisecond, OptimisticInterval: 600 * time.Millisecond, UnchokeSlots: 4,
		Timeout: 2 * time.Minute, Dir: t.TempDir(), Seed: 1, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Identical != n || len(res.Done) != n {
		t.Fatalf("%d of %d downloads identical, %d finished", res.Identical, n, len(res.Done))
	}
}
