package peer

import (
	"os"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"
)

// DataDirEnv names the environment variable that overrides DefaultDataDir.
const DataDirEnv = "PEER_DATA_DIR"

// DefaultConfig is the configuration New completes a Config to: each zero
// field takes the value here. Left zero are the fields without a value of
// their own: DataDir (see DefaultDataDir), InboxDir and ControlSocket (in
// DataDir), LeadListen (next to Listen), LeadStepDown (the promoted
// supernode's default), IdleTimeout (the transport's) and InboxLimits (see
// there).
func DefaultConfig() Config {
	return Config{
		Attach:             3,
		InboxPolicy:        InboxAnyone,
		InboxMaxBytes:      4 << 30,
		LeadAfter:          30 * time.Minute,
		Listen:             "[::]:0", // dual-stack
		ProbeInterval:      500 * time.Millisecond,
		SearchTimeout:      10 * time.Second,
		RescanInterval:     60 * time.Second,
		Pipeline:           16,
		UnchokeInterval:    10 * time.Second,
		OptimisticInterval: 30 * time.Second,
		UnchokeSlots:       4,
		OptimisticSlots:    1,
		MaxSwarmPeers:      50,
		TrackerInterval:    30 * time.Second,
		StallTimeout:       2 * time.Minute,
		ProgressInterval:   200 * time.Millisecond,
		PunchTimeout:       750 * time.Millisecond,
		SignalTimeout:      5 * time.Second,
		UpgradeInterval:    30 * time.Second,
		LinkLinger:         20 * time.Second,
	}
}

// withDefaults fills c's unset fields from DefaultConfig, and DataDir from
// the environment. Zero is unset, and so is a negative value where it means
// nothing (ProbeInterval and OptimisticSlots give negative values a meaning
// of their own). InboxPolicy is checked by New, after this.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	defaults.Set(&c.SearchTimeout, d.SearchTimeout)
	defaults.Set(&c.RescanInterval, d.RescanInterval)
	defaults.Set(&c.ProgressInterval, d.ProgressInterval)
	defaults.Set(&c.Pipeline, d.Pipeline)
	defaults.Set(&c.UnchokeInterval, d.UnchokeInterval)
	defaults.Set(&c.OptimisticInterval, d.OptimisticInterval)
	defaults.Set(&c.UnchokeSlots, d.UnchokeSlots)
	if c.OptimisticSlots == 0 {
		c.OptimisticSlots = d.OptimisticSlots
	}
	defaults.Set(&c.MaxSwarmPeers, d.MaxSwarmPeers)
	defaults.Set(&c.TrackerInterval, d.TrackerInterval)
	defaults.Set(&c.StallTimeout, d.StallTimeout)
	defaults.Set(&c.PunchTimeout, d.PunchTimeout)
	defaults.Set(&c.SignalTimeout, d.SignalTimeout)
	defaults.Set(&c.UpgradeInterval, d.UpgradeInterval)
	defaults.Set(&c.LinkLinger, d.LinkLinger)
	defaults.Set(&c.Attach, d.Attach)
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.InboxPolicy == "" {
		c.InboxPolicy = d.InboxPolicy
	}
	defaults.Set(&c.LeadAfter, d.LeadAfter)
	defaults.Set(&c.InboxMaxBytes, d.InboxMaxBytes)
	if c.ControlSocket == "" {
		c.ControlSocket = SocketPath(c.DataDir)
	}
	return c
}

// DefaultDataDir is the per-user data directory, or $PEER_DATA_DIR.
func DefaultDataDir() string { return DataDirFrom(os.Getenv) }

// DataDirFrom is DefaultDataDir with $PEER_DATA_DIR read through getenv.
func DataDirFrom(getenv func(string) string) string {
	return defaults.DataDir(getenv, DataDirEnv, "peer")
}
