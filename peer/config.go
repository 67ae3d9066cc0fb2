package peer

import (
	"cmp"
	"os"
	"path/filepath"
	"time"
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
		Listen:             "0.0.0.0:0",
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
	setDefault(&c.SearchTimeout, d.SearchTimeout)
	setDefault(&c.RescanInterval, d.RescanInterval)
	setDefault(&c.ProgressInterval, d.ProgressInterval)
	setDefault(&c.Pipeline, d.Pipeline)
	setDefault(&c.UnchokeInterval, d.UnchokeInterval)
	setDefault(&c.OptimisticInterval, d.OptimisticInterval)
	setDefault(&c.UnchokeSlots, d.UnchokeSlots)
	if c.OptimisticSlots == 0 {
		c.OptimisticSlots = d.OptimisticSlots
	}
	setDefault(&c.MaxSwarmPeers, d.MaxSwarmPeers)
	setDefault(&c.TrackerInterval, d.TrackerInterval)
	setDefault(&c.StallTimeout, d.StallTimeout)
	setDefault(&c.PunchTimeout, d.PunchTimeout)
	setDefault(&c.SignalTimeout, d.SignalTimeout)
	setDefault(&c.UpgradeInterval, d.UpgradeInterval)
	setDefault(&c.LinkLinger, d.LinkLinger)
	setDefault(&c.Attach, d.Attach)
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.InboxPolicy == "" {
		c.InboxPolicy = d.InboxPolicy
	}
	setDefault(&c.LeadAfter, d.LeadAfter)
	setDefault(&c.InboxMaxBytes, d.InboxMaxBytes)
	if c.ControlSocket == "" {
		c.ControlSocket = SocketPath(c.DataDir)
	}
	return c
}

// setDefault sets *v to def unless *v is positive.
func setDefault[T cmp.Ordered](v *T, def T) {
	var zero T
	if *v <= zero {
		*v = def
	}
}

// DefaultDataDir is the per-user data directory, or $PEER_DATA_DIR.
func DefaultDataDir() string { return DataDirFrom(os.Getenv) }

// DataDirFrom is DefaultDataDir with $PEER_DATA_DIR read through getenv.
func DataDirFrom(getenv func(string) string) string {
	if d := getenv(DataDirEnv); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "supernet", "peer")
	}
	return ".peer"
}
