package dial

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// The relayed address can overtake the plan on its way through the
// supernodes: it is kept until the initiator waits for it.
func TestSetupSignalsKeepEarlyArrivals(t *testing.T) {
	ch := make(chan *protocol.Signal, 8)
	ss := &setupSignals{ch: ch}
	ch <- &protocol.Signal{Kind: protocol.SignalRelayed, Addrs: []string{"203.0.113.3:40000"}}
	ch <- &protocol.Signal{Kind: protocol.SignalAnswer, Plan: protocol.PlanRelay}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ans, err := ss.wait(ctx, protocol.SignalAnswer)
	if err != nil || ans.Plan != protocol.PlanRelay {
		t.Fatalf("answer: %+v, %v", ans, err)
	}
	rel, err := ss.wait(ctx, protocol.SignalRelayed)
	if err != nil || len(rel.Addrs) != 1 {
		t.Fatalf("the relayed address that came first: %+v, %v", rel, err)
	}
	// Taken once: a second wait has nothing until the deadline.
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := ss.wait(short, protocol.SignalRelayed); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second wait: %v, want the deadline", err)
	}
}

func TestSetupSignalsFailAndBound(t *testing.T) {
	ch := make(chan *protocol.Signal, 8)
	ss := &setupSignals{ch: ch}
	// A peer's supernode that floods us with signals of other kinds fills
	// at most the channel's worth of early ones.
	for range 3 {
		for range 8 {
			ch <- &protocol.Signal{Kind: protocol.SignalOffer}
		}
		short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		ss.wait(short, protocol.SignalAnswer)
		cancel()
	}
	if len(ss.early) > cap(ch) {
		t.Fatalf("%d early signals kept, bound %d", len(ss.early), cap(ch))
	}
	ch <- &protocol.Signal{Kind: protocol.SignalFail, Code: protocol.StatusNotFound, Message: "peer is not attached"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := ss.wait(ctx, protocol.SignalAnswer); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("a fail: %v, want ErrNotFound", err)
	}
}
