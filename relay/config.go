package relay

// DefaultConfig is the configuration New completes a Config to: each zero
// field takes the value here, as its Default constant names it. Secret has
// no default; ListenTCP (next to the UDP socket), RelayIP and RelayBind (from
// the socket) and the port range (any) are left zero.
func DefaultConfig() Config {
	return Config{
		Realm:          DefaultRealm,
		ListenUDP:      DefaultListen,
		MaxBytes:       DefaultMaxBytes,
		MaxDuration:    DefaultMaxDuration,
		MaxAllocations: DefaultMaxAllocations,
		MaxPerPeer:     DefaultMaxPerPeer,
		CredTTL:        DefaultCredTTL,
		ClockSkew:      DefaultClockSkew,
		MaxPermissions: DefaultMaxPermissions,
		MaxChannels:    DefaultMaxChannels,
		MaxPendingTCP:  DefaultMaxPendingTCP,
		MaxTCPPerIP:    DefaultMaxTCPPerIP,
	}
}
