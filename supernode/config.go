package supernode

import (
	crand "crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"

	"github.com/supernet-p2p/supernet/protocol"
)

// DefaultPort is the UDP port a supernode listens on when none is given.
const DefaultPort = 6346

// DataDirEnv names the environment variable that overrides DefaultDataDir.
const DataDirEnv = "SUPERNODE_DATA_DIR"

// DefaultConfig is the configuration New completes a Config to: each zero
// field takes the value here. Left zero are the fields without a value of
// their own: DataDir (see DefaultDataDir), StepDownBelow (a tenth of
// LeafLimit), AltListen and ListenTCP (next to Listen), Incarnation (the start
// time), IdleTimeout (the transport's), Memory (the runtime's figures), and
// the Router's hooks and clock.
func DefaultConfig() Config {
	return Config{
		Listen:       fmt.Sprintf(":%d", DefaultPort),
		TickInterval: 250 * time.Millisecond,
		// Measured with p2pbench leaves on 2 cores: at 4,000 every restart
		// storm had all leaves back within 14 s (5,000 took up to 18.6 s,
		// near the 20 s goal) and the process stayed under 430 MiB.
		MaxLeaves:         4000,
		MaxLeavesPerAddr:  32,
		MaxNeighbours:     32,
		LeafLimit:         200,
		PromoteEvery:      time.Minute,
		StepDownAfter:     10 * time.Minute,
		TURNCheckInterval: 10 * time.Second,
		RelayCredTTL:      time.Hour,
		GossipInterval:    time.Second,
		MemberTimeout:     4 * time.Second,
		MemberRefresh:     30 * time.Minute,
		LeafDirRate:       10,
		LeafDirBurst:      20,
		Neighbours:        8,
		PromotedCertTTL:   DefaultPromotedCertTTL,
		Router:            DefaultRouterConfig(),
	}
}

// DefaultRouterConfig is the routing configuration NewRouter completes a
// RouterConfig to. ID, Relay, RTT, RelayAddr, Log and Now (time.Now) stay
// zero.
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{
		HopLimit:              4,
		QueryTimeout:          750 * time.Millisecond,
		MaxResults:            200,
		SummaryBits:           1 << 20,
		MaxFilesPerLeaf:       5000,
		MaxIndexBytesPerLeaf:  8 << 20,
		MaxIndexBytes:         64 << 20,
		MaxIndexBytesPerAddr:  16 << 20,
		LeafPublishRate:       256 << 10,
		SeenTTL:               60 * time.Second,
		LeafQueryRate:         20,
		LeafPings:             30,
		MaxPingEvery:          15 * time.Second,
		LeafQueryBurst:        50,
		NeighbourQueryRate:    200,
		NeighbourQueryBurst:   400,
		NeighbourSummaryRate:  8,
		NeighbourSummaryBurst: 32,
		NeighbourSignalRate:   100,
		NeighbourSignalBurst:  200,
		LeafSignalRate:        10,
		LeafSignalBurst:       20,
		SlowAfter:             4,
		SlowHoldoff:           30 * time.Second,
		SummaryEvery:          5 * time.Second,
		SummaryFP:             0.01,
		DirectFirstRound:      1,
		RoundTimeout:          400 * time.Millisecond,
		DirectTimeout:         3 * time.Second,
		EnoughSources:         5,
		EnoughSourcesByID:     50,
	}
}

// withDefaults fills c's unset fields from DefaultConfig. Zero is unset, and
// so is a negative value where it means nothing (LeafLimit and Neighbours
// give negative values a meaning of their own).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	defaults.Set(&c.TickInterval, d.TickInterval)
	defaults.Set(&c.MaxLeaves, d.MaxLeaves)
	defaults.Set(&c.MaxLeavesPerAddr, d.MaxLeavesPerAddr)
	defaults.Set(&c.MaxNeighbours, d.MaxNeighbours)
	if c.LeafLimit == 0 {
		c.LeafLimit = d.LeafLimit
	}
	defaults.Set(&c.PromoteEvery, d.PromoteEvery)
	// Underused is a tenth of what the supernode takes before it promotes.
	defaults.Set(&c.StepDownBelow, max(1, c.LeafLimit/10))
	defaults.Set(&c.StepDownAfter, d.StepDownAfter)
	defaults.Set(&c.TURNCheckInterval, d.TURNCheckInterval)
	defaults.Set(&c.RelayCredTTL, d.RelayCredTTL)
	defaults.Set(&c.GossipInterval, d.GossipInterval)
	defaults.Set(&c.MemberTimeout, d.MemberTimeout)
	defaults.Set(&c.MemberRefresh, d.MemberRefresh)
	defaults.Set(&c.LeafDirRate, d.LeafDirRate)
	defaults.Set(&c.LeafDirBurst, d.LeafDirBurst)
	if c.Neighbours == 0 {
		c.Neighbours = d.Neighbours
	}
	defaults.Set(&c.PromotedCertTTL, d.PromotedCertTTL)
	if c.Incarnation == 0 {
		c.Incarnation = uint64(time.Now().UnixMilli())
	}
	if c.Memory == nil {
		c.Memory = runtimeMemory
	}
	return c
}

// defaults fills c's unset (zero or negative) fields from DefaultRouterConfig.
func (c *RouterConfig) defaults() {
	d := DefaultRouterConfig()
	if c.HopLimit == 0 {
		c.HopLimit = d.HopLimit
	}
	c.HopLimit = min(c.HopLimit, protocol.MaxHops)
	defaults.Set(&c.QueryTimeout, d.QueryTimeout)
	defaults.Set(&c.MaxResults, d.MaxResults)
	defaults.Set(&c.SummaryBits, d.SummaryBits)
	defaults.Set(&c.MaxFilesPerLeaf, d.MaxFilesPerLeaf)
	defaults.Set(&c.MaxIndexBytesPerLeaf, d.MaxIndexBytesPerLeaf)
	defaults.Set(&c.MaxIndexBytes, d.MaxIndexBytes)
	defaults.Set(&c.MaxIndexBytesPerAddr, d.MaxIndexBytesPerAddr)
	defaults.Set(&c.LeafPublishRate, d.LeafPublishRate)
	defaults.Set(&c.SeenTTL, d.SeenTTL)
	defaults.Set(&c.LeafQueryRate, d.LeafQueryRate)
	defaults.Set(&c.LeafPings, d.LeafPings)
	defaults.Set(&c.MaxPingEvery, d.MaxPingEvery)
	defaults.Set(&c.LeafQueryBurst, d.LeafQueryBurst)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = crand.Reader
	}
	defaults.Set(&c.NeighbourQueryRate, d.NeighbourQueryRate)
	defaults.Set(&c.NeighbourQueryBurst, d.NeighbourQueryBurst)
	defaults.Set(&c.NeighbourSummaryRate, d.NeighbourSummaryRate)
	defaults.Set(&c.NeighbourSummaryBurst, d.NeighbourSummaryBurst)
	defaults.Set(&c.NeighbourSignalRate, d.NeighbourSignalRate)
	defaults.Set(&c.NeighbourSignalBurst, d.NeighbourSignalBurst)
	defaults.Set(&c.LeafSignalRate, d.LeafSignalRate)
	defaults.Set(&c.LeafSignalBurst, d.LeafSignalBurst)
	defaults.Set(&c.SlowAfter, d.SlowAfter)
	defaults.Set(&c.SlowHoldoff, d.SlowHoldoff)
	defaults.Set(&c.SummaryEvery, d.SummaryEvery)
	defaults.Set(&c.SummaryFP, d.SummaryFP)
	defaults.Set(&c.DirectFirstRound, d.DirectFirstRound)
	defaults.Set(&c.RoundTimeout, d.RoundTimeout)
	defaults.Set(&c.DirectTimeout, d.DirectTimeout)
	defaults.Set(&c.EnoughSources, d.EnoughSources)
	defaults.Set(&c.EnoughSourcesByID, d.EnoughSourcesByID)
	if c.Incarnation == 0 {
		c.Incarnation = uint64(c.Now().UnixMilli())
	}
}

// DefaultDataDir is where a supernode keeps its key when --data-dir is not given.
func DefaultDataDir() string { return DataDirFrom(os.Getenv) }

// DataDirFrom is DefaultDataDir with $SUPERNODE_DATA_DIR read through getenv.
func DataDirFrom(getenv func(string) string) string {
	return defaults.DataDir(getenv, DataDirEnv, "supernode")
}

// LeafMemory is what one attached leaf costs a supernode, the QUIC
// connection and its goroutines included (p2pbench leaves measures it), and
// BaseMemory what a supernode holds with none.
const (
	LeafMemory = 128 << 10
	BaseMemory = 128 << 20
)

// MemoryFor is the soft memory limit a supernode taking maxLeaves leaves
// needs: below it, the collector would run without pause once they are all
// attached.
func MemoryFor(maxLeaves int) int64 {
	return BaseMemory + int64(max(maxLeaves, 0))*LeafMemory
}
