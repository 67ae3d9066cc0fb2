package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/supernode"
)

// settings is what the command line asks of a supernode, before any file is
// read or socket opened.
type settings struct {
	// cfg lacks what comes from files and the running process: Log,
	// RelaySecret, Relay and the admission.
	cfg supernode.Config
	// relay is the relay to run in this process (--relay), without its
	// Secret and Log; nil for none.
	relay          *relay.Config
	secretFile     string
	certFile       string
	networkKeyFile string
	log            cli.LogFlags
	memLimit       int64
	admin          string // the admin listener's address; empty for none
}

// flags are the supernode's flags as given.
type flags struct {
	listen, dataDir                string
	log                            cli.LogFlags
	altListen, tcpListen           string
	relayListen, relayIP, relayIP6 string
	secretFile                     string
	certFile, networkKeyFile       string
	join, turnServers              []string
	relayAllow                     []string
	advertise                      []string
	neighbours                     int
	maxLeaves, leafLimit           int
	promoteEvery                   time.Duration
	hops                           uint8
	leafPings                      float64
	memLimit                       int64
	limitLoopback                  bool
	admin                          string
	config                         string
	relayCredTTL                   time.Duration
}

// bind defines the flags on f, their defaults taken from
// supernode.DefaultConfig and the environment env reads.
func (fl *flags) bind(f *pflag.FlagSet, env func(string) string) {
	def := supernode.DefaultConfig()
	f.StringVar(&fl.listen, "listen", def.Listen, "UDP address to listen on")
	f.StringSliceVar(&fl.join, "join", nil, "supernodes to link to: host:port or peerid@host:port, comma-separated")
	f.StringVar(&fl.dataDir, "data-dir", supernode.DataDirFrom(env), "directory for the identity key ($"+supernode.DataDirEnv+")")
	fl.log.Bind(f)
	f.IntVar(&fl.maxLeaves, "max-leaves", def.MaxLeaves, "most peers attached at once")
	f.IntVar(&fl.leafLimit, "leaf-limit", def.LeafLimit, "peers kept before an eligible one is promoted to supernode and takes some over (-1: never promote)")
	f.DurationVar(&fl.promoteEvery, "promote-every", def.PromoteEvery, "least time between two promotions")
	f.Uint8Var(&fl.hops, "hops", def.Router.HopLimit, "hop limit for queries between supernodes")
	f.Float64Var(&fl.leafPings, "leaf-pings", def.Router.LeafPings, "pings a second all the leaves together are asked to stay under; each pings at its own pace (500 ms) until there are too many")
	f.StringVar(&fl.altListen, "alt-listen", "", "second UDP address for NAT tests and dial-backs (default: port+1; - for none)")
	f.StringVar(&fl.tcpListen, "tcp-listen", "", "TCP address where peers without UDP ask for a relay (default: the UDP address; - for none)")
	f.StringVar(&fl.relayListen, "relay", "", "run a TURN relay in this process on this address, e.g. "+relay.DefaultListen)
	f.StringVar(&fl.relayIP, "relay-ip", "", "public IP of the relay, needed when it listens on all interfaces")
	f.StringVar(&fl.relayIP6, "relay-ip6", "", "public IPv6 address of the relay's relayed addresses, for peers on IPv6 alone (default: IPv4 only)")
	f.StringArrayVar(&fl.relayAllow, "relay-allow-peer", nil, "private or reserved range (CIDR or address) the relay may relay to anyway; repeatable")
	f.DurationVar(&fl.relayCredTTL, "relay-cred-ttl", def.RelayCredTTL, "how long the relay credentials this supernode mints last; peers that live on a relay renew theirs before then (relays refuse expiries beyond their --cred-ttl)")
	f.StringSliceVar(&fl.turnServers, "turn-server", nil, "stock TURN servers (host:port) sharing the relay secret, e.g. coturn with use-auth-secret")
	f.StringSliceVar(&fl.advertise, "advertise", nil, "host:port other supernodes reach this one at, for the member list (default: the listen address when it names a host)")
	f.IntVar(&fl.neighbours, "neighbours", def.Neighbours, "supernode links to keep, opened from the member list (ring fingers first) when the joined ones are fewer (-1: only --join)")
	f.StringVar(&fl.secretFile, "relay-secret-file", "", "file with the secret shared with relays (mode 600), or $"+cli.SecretEnv)
	f.StringVar(&fl.certFile, "cert", "", "certificate admitting this supernode to its overlay (default: admission.cert in the data dir)")
	f.StringVar(&fl.networkKeyFile, "network-key", "", "the overlay's network key, to issue our own certificate (default: network.key in the data dir)")
	f.Int64Var(&fl.memLimit, "memory-limit", autoMemory, "soft limit of the Go heap in bytes, which makes the collector work harder near it (-1: what --max-leaves needs, see supernode.MemoryFor; 0: none; $GOMEMLIMIT wins)")
	f.StringVar(&fl.config, cli.ConfigFlag, "", "TOML file of settings, keyed by these flags' names; flags win over it (default: "+ConfigFile+" in the data dir, if there)")
	f.StringVar(&fl.admin, "admin", "", "serve /metrics, /healthz and /debug/pprof/ over HTTP on this address, e.g. 127.0.0.1:9090 (default: off; keep it on loopback)")
	f.BoolVar(&fl.limitLoopback, "limit-loopback", false, "apply the per-address limits to loopback sources too (exempt by default, so a local overlay can share 127.0.0.1)")
}

// settings checks the flags and turns them into settings. Whether a relay
// secret is given is read from the flags and env, not from the file.
func (fl *flags) settings(env func(string) string) (settings, error) {
	err := errors.Join(
		fl.log.Check(),
		cli.CheckHostPort("listen", fl.listen),
		optionalAddr("alt-listen", fl.altListen),
		optionalAddr("tcp-listen", fl.tcpListen),
		cli.NotNegative("max-leaves", fl.maxLeaves),
		cli.NotNegative("promote-every", fl.promoteEvery),
		cli.AtLeast("memory-limit", fl.memLimit, autoMemory),
		cli.NotNegative("leaf-pings", fl.leafPings),
		cli.NotNegative("relay-cred-ttl", fl.relayCredTTL),
		optionalAddr("admin", fl.admin),
	)
	if err != nil {
		return settings{}, err
	}
	join := cli.SplitList(fl.join)
	for _, j := range join {
		if err := cli.CheckTarget("join", j); err != nil {
			return settings{}, err
		}
	}
	for _, a := range fl.advertise {
		if err := cli.CheckHostPort("advertise", a); err != nil {
			return settings{}, err
		}
	}
	s := settings{
		cfg: supernode.Config{
			Listen: fl.listen, Join: join, DataDir: fl.dataDir, MaxLeaves: fl.maxLeaves,
			LeafLimit: fl.leafLimit, PromoteEvery: fl.promoteEvery,
			AltListen: fl.altListen, ListenTCP: fl.tcpListen,
			Advertise: fl.advertise, Neighbours: fl.neighbours, LimitLoopback: fl.limitLoopback, RelayCredTTL: fl.relayCredTTL,
			Router: supernode.RouterConfig{HopLimit: fl.hops, LeafPings: fl.leafPings},
		},
		secretFile: fl.secretFile, certFile: fl.certFile, networkKeyFile: fl.networkKeyFile,
		log: fl.log, memLimit: fl.memLimit, admin: fl.admin,
	}
	if s.memLimit == autoMemory {
		s.memLimit = supernode.MemoryFor(s.cfg.MaxLeaves)
	}
	for _, ts := range fl.turnServers {
		if _, _, err := net.SplitHostPort(ts); err != nil {
			return settings{}, fmt.Errorf("--turn-server %q: want host:port", ts)
		}
		s.cfg.TURNServers = append(s.cfg.TURNServers, ts)
	}
	// As cli.ReadSecret finds it: a file always yields a secret or an error.
	hasSecret := fl.secretFile != "" || strings.TrimSpace(env(cli.SecretEnv)) != ""
	if len(s.cfg.TURNServers) > 0 && !hasSecret {
		return settings{}, errors.New("--turn-server needs the secret it shares: --relay-secret-file or $" + cli.SecretEnv)
	}
	if fl.relayListen == "" {
		return s, nil
	}
	if !hasSecret {
		return settings{}, errors.New("--relay needs a secret: --relay-secret-file or $" + cli.SecretEnv)
	}
	if err := errors.Join(cli.CheckHostPort("relay", fl.relayListen), cli.CheckIP("relay-ip", fl.relayIP), cli.CheckIP("relay-ip6", fl.relayIP6)); err != nil {
		return settings{}, err
	}
	rc := &relay.Config{ListenUDP: fl.relayListen, RelayIP: net.ParseIP(fl.relayIP), RelayIP6: net.ParseIP(fl.relayIP6)}
	for _, a := range fl.relayAllow {
		p, err := relay.ParsePeerPrefix(a)
		if err != nil {
			return settings{}, fmt.Errorf("--relay-allow-peer: %w", err)
		}
		rc.AllowPeers = append(rc.AllowPeers, p)
	}
	s.relay, s.cfg.RelayHost = rc, fl.relayIP
	return s, nil
}

// optionalAddr checks an address flag where empty means the default and "-"
// none.
func optionalAddr(flag, addr string) error {
	if addr == "" || addr == "-" {
		return nil
	}
	return cli.CheckHostPort(flag, addr)
}

// configFromArgs is what the supernode makes of its arguments (without the
// program name) and environment: a pure function of both.
func configFromArgs(args []string, env func(string) string) (settings, error) {
	var fl flags
	var fs *pflag.FlagSet
	if err := cli.ParseFlags("supernode", func(f *pflag.FlagSet) { fs = f; fl.bind(f, env) }, args); err != nil {
		return settings{}, err
	}
	if err := fl.loadConfig(fs); err != nil {
		return settings{}, err
	}
	return fl.settings(env)
}

// ConfigFile is the config file read from the data dir unless --config names one.
const ConfigFile = "supernode.toml"

// loadConfig reads the config file into the flags the command line left unset.
func (fl *flags) loadConfig(f *pflag.FlagSet) error {
	return cli.LoadConfigIn(f, fl.config, fl.dataDir, ConfigFile)
}

// autoMemory asks for the memory limit that fits --max-leaves.
const autoMemory = -1
