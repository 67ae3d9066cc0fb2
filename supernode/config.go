package supernode

import (
	"cmp"
	crand "crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
// time), IdleTimeout (the transport's), and the Router's hooks and clock.
func DefaultConfig() Config {
	return Config{
		Listen:            fmt.Sprintf(":%d", DefaultPort),
		TickInterval:      250 * time.Millisecond,
		MaxLeaves:         1000,
		MaxLeavesPerAddr:  32,
		MaxNeighbours:     32,
		LeafLimit:         200,
		PromoteEvery:      time.Minute,
		StepDownAfter:     10 * time.Minute,
		TURNCheckInterval: 10 * time.Second,
		RelayCredTTL:      time.Hour,
		GossipInterval:    time.Second,
		MemberTimeout:     4 * time.Second,
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
	setDefault(&c.TickInterval, d.TickInterval)
	setDefault(&c.MaxLeaves, d.MaxLeaves)
	setDefault(&c.MaxLeavesPerAddr, d.MaxLeavesPerAddr)
	setDefault(&c.MaxNeighbours, d.MaxNeighbours)
	if c.LeafLimit == 0 {
		c.LeafLimit = d.LeafLimit
	}
	setDefault(&c.PromoteEvery, d.PromoteEvery)
	// Underused is a tenth of what the supernode takes before it promotes.
	setDefault(&c.StepDownBelow, max(1, c.LeafLimit/10))
	setDefault(&c.StepDownAfter, d.StepDownAfter)
	setDefault(&c.TURNCheckInterval, d.TURNCheckInterval)
	setDefault(&c.RelayCredTTL, d.RelayCredTTL)
	setDefault(&c.GossipInterval, d.GossipInterval)
	setDefault(&c.MemberTimeout, d.MemberTimeout)
	setDefault(&c.LeafDirRate, d.LeafDirRate)
	setDefault(&c.LeafDirBurst, d.LeafDirBurst)
	if c.Neighbours == 0 {
		c.Neighbours = d.Neighbours
	}
	setDefault(&c.PromotedCertTTL, d.PromotedCertTTL)
	if c.Incarnation == 0 {
		c.Incarnation = uint64(time.Now().UnixMilli())
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
	setDefault(&c.QueryTimeout, d.QueryTimeout)
	setDefault(&c.MaxResults, d.MaxResults)
	setDefault(&c.SummaryBits, d.SummaryBits)
	setDefault(&c.MaxFilesPerLeaf, d.MaxFilesPerLeaf)
	setDefault(&c.MaxIndexBytesPerLeaf, d.MaxIndexBytesPerLeaf)
	setDefault(&c.MaxIndexBytes, d.MaxIndexBytes)
	setDefault(&c.MaxIndexBytesPerAddr, d.MaxIndexBytesPerAddr)
	setDefault(&c.LeafPublishRate, d.LeafPublishRate)
	setDefault(&c.SeenTTL, d.SeenTTL)
	setDefault(&c.LeafQueryRate, d.LeafQueryRate)
	setDefault(&c.LeafQueryBurst, d.LeafQueryBurst)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = crand.Reader
	}
	setDefault(&c.NeighbourQueryRate, d.NeighbourQueryRate)
	setDefault(&c.NeighbourQueryBurst, d.NeighbourQueryBurst)
	setDefault(&c.NeighbourSummaryRate, d.NeighbourSummaryRate)
	setDefault(&c.NeighbourSummaryBurst, d.NeighbourSummaryBurst)
	setDefault(&c.NeighbourSignalRate, d.NeighbourSignalRate)
	setDefault(&c.NeighbourSignalBurst, d.NeighbourSignalBurst)
	setDefault(&c.LeafSignalRate, d.LeafSignalRate)
	setDefault(&c.LeafSignalBurst, d.LeafSignalBurst)
	setDefault(&c.SlowAfter, d.SlowAfter)
	setDefault(&c.SlowHoldoff, d.SlowHoldoff)
}

// setDefault sets *v to def unless *v is positive.
func setDefault[T cmp.Ordered](v *T, def T) {
	var zero T
	if *v <= zero {
		*v = def
	}
}

// DefaultDataDir is where a supernode keeps its key when --data-dir is not given.
func DefaultDataDir() string { return DataDirFrom(os.Getenv) }

// DataDirFrom is DefaultDataDir with $SUPERNODE_DATA_DIR read through getenv.
func DataDirFrom(getenv func(string) string) string {
	if d := getenv(DataDirEnv); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "supernet", "supernode")
	}
	return ".supernode"
}
