package compare

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestQUICMode runs a small workload on all four designs over real QUIC on
// loopback, and the same on the simulated network: the designs work over
// both, and cost about the same per query.
func TestQUICMode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 4 x 20 s in real time")
	}
	// Hits count until QueryTimeout: on a loaded machine (a CI runner, the
	// race detector) a flooded query's 170 messages take seconds.
	w := Workload{Peers: 40, Queries: 40, Duration: 20 * time.Second, Warmup: 2 * time.Second,
		QueryTimeout: 8 * time.Second, Seed: 11}
	o := Options{PerSupernode: 10, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	sim, err := Run(w, o, Designs...)
	if err != nil {
		t.Fatal(err)
	}
	o.QUIC = true
	real, err := Run(w, o, Designs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range real {
		s := sim[i]
		t.Logf("%-9s QUIC: msgs/query %6.1f, recall %.3f, first hit p50 %v; simulated: %6.1f, %.3f, %v",
			r.Design, r.MsgsMean, r.Recall, r.FirstP50.Round(time.Millisecond), s.MsgsMean, s.Recall, s.FirstP50.Round(time.Millisecond))
		if r.Answerable == 0 || r.Answerable != s.Answerable {
			t.Errorf("%s: %d answerable over QUIC, %d simulated", r.Design, r.Answerable, s.Answerable)
		}
		if r.Design != "central" && r.Recall < 0.9 {
			t.Errorf("%s over QUIC: recall %.3f", r.Design, r.Recall)
		}
		if r.MsgsMean > 2*s.MsgsMean+2 || s.MsgsMean > 2*r.MsgsMean+2 {
			t.Errorf("%s: %.1f messages per query over QUIC, %.1f simulated", r.Design, r.MsgsMean, s.MsgsMean)
		}
	}
	// A query sent within a round trip of the central server's kill dies
	// with it, on the simulated network (in this workload, 1 of the 9 before
	// it) as over QUIC, where a loaded machine stretches the round trip: most
	// queries before are answered, none after.
	for _, c := range []Result{sim[2], real[2]} {
		if c.Design != "central" || c.Failures[0].Before < 0.75 || c.Failures[0].After > 0 {
			t.Errorf("central: %+v", c.Failures[0])
		}
	}
}
