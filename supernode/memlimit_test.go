package supernode

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
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

// The memory a supernode counts against its limit is what the collector
// cannot give back: memory held live counts, garbage the heap gathered
// since the last collection does not.
func TestRuntimeMemoryCountsLiveNotGarbage(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 40))
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but ours
	runtime.GC()
	base, limit := runtimeMemory()
	if limit != 1<<40 {
		t.Fatalf("limit %d, want %d", limit, uint64(1<<40))
	}
	const chunk, total = 1 << 20, 64 << 20
	var sink []byte
	for range total / chunk {
		sink = make([]byte, chunk)
		sink[0] = 1
	}
	_ = sink
	if used, _ := runtimeMemory(); used > base+total/4 {
		t.Errorf("64 MiB of garbage counted: %d MiB in use, %d before", used>>20, base>>20)
	}
	held := make([][]byte, 0, total/chunk)
	for range total / chunk {
		b := make([]byte, chunk)
		b[0] = 1
		held = append(held, b)
	}
	runtime.GC()
	if used, _ := runtimeMemory(); used < base+total*9/10 {
		t.Errorf("64 MiB held live: %d MiB in use, %d before", used>>20, base>>20)
	}
	runtime.KeepAlive(held)
}
