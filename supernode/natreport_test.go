package supernode

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// TestNATReportFlood: a leaf that sends 200 NAT reports at once gets one
// check at a time, each a dial back of up to 3 s: the first report's, then
// the newest one's. Without that, each report would start a dial back of
// its own, on a socket of its own.
func TestNATReportFlood(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NetworkKey: testNetKey, Log: log,
		Neighbours: -1, ListenTCP: "-"})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, l, err := dialLeaf(ctx, s, log)
	if n != nil {
		defer n.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	const reports = 200
	for i := range reports {
		m := &protocol.NATReport{Mapping: protocol.NATEndpointIndependent}
		if i == reports-1 {
			m.Mapping = protocol.NATEndpointDependent // the newest: told apart by its answer
		}
		if err := l.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	statuses := 0
	for {
		m, err := l.Recv()
		if err != nil {
			t.Fatalf("after %d answers: %v", statuses, err)
		}
		st, ok := m.(*protocol.NATStatus)
		if !ok {
			continue
		}
		statuses++
		if st.NAT == protocol.NATEndpointDependent {
			break
		}
	}
	checks, superseded := s.nat.checks.Load(), s.nat.superseded.Load()
	if checks > 3 || statuses > 3 {
		t.Errorf("%d reports checked, %d answered by the newest's answer; want the first and the newest", checks, statuses)
	}
	t.Logf("%d reports sent, %d checked, %d superseded", reports, checks, superseded)
}
