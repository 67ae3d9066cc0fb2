package dial

import (
	"context"
	"sync"
	"testing"

	"github.com/supernet-p2p/supernet/protocol"
)

// TestSignalsForNobodyKeepNothing: signals under setup IDs we never used,
// however many, leave the connector's setup table as empty as it was.
func TestSignalsForNobodyKeepNothing(t *testing.T) {
	var wg sync.WaitGroup
	c := New(context.Background(), &wg, Config{})
	for id := range uint64(10000) {
		c.OnSignal(&protocol.Signal{ID: id, Kind: protocol.SignalAnswer})
		c.OnSignal(&protocol.Signal{ID: id, Kind: protocol.SignalRelayed})
	}
	if n := c.setups.Len(); n != 0 {
		t.Fatalf("%d setups kept, want 0", n)
	}
	wg.Wait()
}
