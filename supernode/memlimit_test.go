package supernode

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// TestLeavesRefusedWhenMemoryShort: past MemoryFull of the soft limit a
// supernode refuses new leaves as overloaded, keeps those it has, and takes
// leaves again once memory is back under it.
func TestLeavesRefusedWhenMemoryShort(t *testing.T) {
	var used atomic.Uint64
	const limit = 1000
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NetworkKey: testNetKey, Log: log,
		Neighbours: -1, AltListen: "-", Memory: func() (uint64, uint64) { return used.Load(), limit },
		// Every leaf here is on 127.0.0.1, and a closed one is counted until
		// the supernode notices: the address limit must not refuse first.
		MaxLeavesPerAddr: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	defer func() { s.Close(); <-done }()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() (*transport.Node, error) {
		n, _, err := dialLeaf(ctx, s, log)
		if n == nil {
			t.Fatal(err)
		}
		return n, err
	}
	first, err := dial()
	if err != nil {
		t.Fatalf("a leaf with memory to spare: %v", err)
	}
	defer first.Close()

	used.Store(limit * 9 / 10)
	// The reading is cached for memCheckEvery: the refusal comes within it.
	for {
		n, err := dial()
		n.Close()
		if errors.Is(err, protocol.ErrOverloaded) {
			break
		}
		if err != nil {
			t.Fatalf("dial with memory short: %v, want overloaded", err)
		}
		if ctx.Err() != nil {
			t.Fatal("leaves still taken with memory short")
		}
	}
	if s.MemoryRefused() == 0 {
		t.Fatal("a refusal not counted")
	}
	if got := s.router.Leaves(); got < 1 {
		t.Fatalf("%d leaves kept, want the first", got)
	}

	used.Store(limit / 2)
	for {
		n, err := dial()
		n.Close()
		if err == nil {
			break
		}
		if !errors.Is(err, protocol.ErrOverloaded) || ctx.Err() != nil {
			t.Fatalf("dial with memory back: %v", err)
		}
	}
}
