package compare

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// smallWorkload runs in seconds: 1,000 peers, 300 queries over 12 minutes.
func smallWorkload() Workload {
	return Workload{Peers: 1000, Queries: 300, Duration: 12 * time.Minute, Seed: 7}
}

// TestInvariants runs the small workload on all four designs and checks what
// each design must show whatever the tuning: the central directory finds
// everything while a server is up, and fails queries while its standby
// takes over; flooding finds less
// with a smaller TTL; the supernode overlay matches flooding's recall with
// far fewer messages per query; the DHT finds what exists in O(log N) hops.
func TestInvariants(t *testing.T) {
	w := smallWorkload()
	res, err := Run(w, Options{}, Designs...)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Result{}
	for _, r := range res {
		by[r.Design] = r
		t.Logf("%-9s msgs/query %7.1f (p99 %5.0f), recall %.3f, success %.3f, first hit p50 %v, busiest node %.1f%% of messages",
			r.Design, r.MsgsMean, r.MsgsP99, r.Recall, r.Success, r.FirstP50.Round(time.Millisecond), 100*r.BusiestShare)
		if r.Answerable < w.Queries/2 {
			t.Fatalf("%s: only %d of %d queries answerable", r.Design, r.Answerable, w.Queries)
		}
	}

	c := by["central"]
	dies := c.Failures[0].At
	back := dies + centralFailover + centralReconnect
	for _, p := range c.Timeline {
		if (p.At <= dies || p.At-c.Window >= back) && p.Success != 1 {
			t.Errorf("central: success %.3f in the minute to %v, with a server up all the minute", p.Success, p.At)
		}
	}
	if c.Failures[0].During >= 1 {
		t.Errorf("central: success %.3f in the minute the server died and its standby took over", c.Failures[0].During)
	}

	f, sn := by["flooding"], by["supernode"]
	if f.Recall < 0.95 {
		t.Errorf("flooding with TTL 7 over 1,000 peers: recall %.3f", f.Recall)
	}
	short, err := Run(w, Options{FloodTTL: 2}, "flooding")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flooding with TTL 2: msgs/query %.1f, recall %.3f", short[0].MsgsMean, short[0].Recall)
	if short[0].Recall >= f.Recall-0.2 {
		t.Errorf("flooding recall %.3f with TTL 2, %.3f with TTL 7: want far less with the smaller TTL", short[0].Recall, f.Recall)
	}

	if sn.Recall < f.Recall-0.02 {
		t.Errorf("supernode recall %.3f, flooding %.3f: want equal", sn.Recall, f.Recall)
	}
	if sn.MsgsMean > f.MsgsMean/5 {
		t.Errorf("supernode %.1f messages per query, flooding %.1f: want far fewer", sn.MsgsMean, f.MsgsMean)
	}

	d := by["dht"]
	if d.Recall < 0.95 || d.MsgsP99 > 20 {
		t.Errorf("dht: recall %.3f, p99 %.0f messages per query; want nearly all found in about log2(1000) hops", d.Recall, d.MsgsP99)
	}
}

// A run is a function of its seed: two runs of one workload give the same
// figures to the last bit, whatever the order in which maps are walked,
// and another seed gives others. The supernode routers draw their query IDs
// from a source seeded with the run.
func TestSameSeedSameResults(t *testing.T) {
	w := Workload{Peers: 400, Queries: 120, Duration: 8 * time.Minute, Seed: 7}
	runOnce := func(w Workload) []string {
		t.Helper()
		res, err := Run(w, Options{}, Designs...)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(res))
		for i, r := range res {
			out[i] = fmt.Sprintf("%+v", r)
		}
		return out
	}
	first := runOnce(w)
	for i, r := range runOnce(w) {
		if r != first[i] {
			t.Errorf("two runs with seed %d differ:\n%s\n%s", w.Seed, first[i], r)
		}
	}
	w.Seed = 8
	if other := runOnce(w); slices.Equal(other, first) {
		t.Fatal("seeds 7 and 8 gave the same figures: the seed is not used")
	}
}

// A large overlay is built a chunk of peers at a time, its keyword ring's
// batches handed straight to their keepers: it must end with every key
// kept as a build in one piece, over the hops, leaves it.
func TestChunkedBuildKeepsEveryKey(t *testing.T) {
	w := Workload{Peers: 3000, Queries: 1, Duration: 4 * time.Minute, Seed: 5}
	build := func(chunk int) (kept int, dropped uint64) {
		t.Helper()
		wd := newWorld(w)
		d, err := newDesign("supernode", Options{})
		if err != nil {
			t.Fatal(err)
		}
		o := d.(*overlay)
		o.Chunk = chunk
		o.build(&env{wd: wd, net: newNet(w.Seed + 1), online: slices.Clone(wd.startsOnline)})
		for _, s := range o.sns {
			kept += s.r.KeptKeys()
			dropped += s.r.Stats.SummariesDropped.Load()
		}
		return kept, dropped
	}
	whole, _ := build(0)
	kept, dropped := build(700)
	if whole == 0 || kept != whole || dropped != 0 {
		t.Fatalf("built in chunks of 700 peers: %d keys kept, %d batches dropped; in one piece %d kept", kept, dropped, whole)
	}
}
