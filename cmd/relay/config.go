package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/supernet-p2p/supernet/internal/defaults"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/relay"
)

// settings is what the command line asks of a relay, before any file is read
// or socket opened.
type settings struct {
	cfg relay.Config // without Secret and Log
	// supernodes are the supernodes to report the load to.
	supernodes []string
	// advertise is the host the supernodes give peers (--advertise, or else --relay-ip).
	advertise                     string
	secretFile, dataDir, certFile string
	log                           cli.LogFlags
	admin                         string // the admin listener's address; empty for none
}

// flags are the relay's flags as given.
type flags struct {
	listen, tcp, relayIP, relayIP6, secretFile, dataDir, advertise string
	log                                                            cli.LogFlags
	certFile, admin, config                                        string
	supernodes, allowPeers                                         []string
	maxBytes                                                       int64
	maxDuration, credTTL                                           time.Duration
	maxAllocs, maxPerPeer                                          int
	minPort, maxPort                                               uint16
}

// bind defines the flags on f, their defaults taken from relay.DefaultConfig.
func (fl *flags) bind(f *pflag.FlagSet) {
	def := relay.DefaultConfig()
	f.StringVar(&fl.listen, "listen", def.ListenUDP, "TURN address over UDP")
	f.StringVar(&fl.tcp, "tcp", "", "TURN address over TCP (default: the --listen address; - for none)")
	f.StringVar(&fl.relayIP, "relay-ip", "", "public IP of relayed addresses (needed when listening on all interfaces)")
	f.StringVar(&fl.relayIP6, "relay-ip6", "", "public IPv6 address for relayed addresses, offered to peers that relay for a peer on IPv6 alone (default: IPv4 only)")
	f.StringVar(&fl.advertise, "advertise", "", "host supernodes give to peers (default: --relay-ip)")
	f.StringVar(&fl.secretFile, "secret-file", "", "file with the secret shared with the supernodes (mode 600), or $"+cli.SecretEnv)
	f.StringSliceVar(&fl.supernodes, "supernode", nil, "supernodes to report load to: host:port or peerid@host:port")
	f.StringVar(&fl.dataDir, "data-dir", defaultDataDir(), "directory for the relay's identity key")
	f.StringVar(&fl.certFile, "cert", "", "certificate admitting this relay's key to the overlay (default: prove the secret instead)")
	f.Int64Var(&fl.maxBytes, "max-bytes", def.MaxBytes, "most bytes one peer may relay in a session, over all its allocations")
	f.DurationVar(&fl.maxDuration, "max-duration", def.MaxDuration, "length of a peer's session, from its first allocation; its allocations end with it")
	f.IntVar(&fl.maxAllocs, "max-allocations", def.MaxAllocations, "most allocations at once")
	f.IntVar(&fl.maxPerPeer, "max-per-peer", def.MaxPerPeer, "most allocations one peer may hold at once")
	f.DurationVar(&fl.credTTL, "cred-ttl", def.CredTTL, "longest credential lifetime the supernodes mint; later expiries are refused")
	f.StringArrayVar(&fl.allowPeers, "allow-peer", nil, "private or reserved range (CIDR or address) clients may relay to anyway; repeatable")
	f.Uint16Var(&fl.minPort, "min-port", 0, "lowest relay port (with --max-port; default: any port the system gives)")
	f.Uint16Var(&fl.maxPort, "max-port", 0, "highest relay port (with --min-port)")
	f.StringVar(&fl.config, cli.ConfigFlag, "", "TOML file of settings, keyed by these flags' names; flags win over it (default: "+ConfigFile+" in the data dir, if there)")
	f.StringVar(&fl.admin, "admin", "", "serve /metrics, /healthz and /debug/pprof/ over HTTP on this address, e.g. 127.0.0.1:9091 (default: off; keep it on loopback)")
	fl.log.Bind(f)
}

// errNoSecret: a relay serves only the supernodes it shares a secret with.
var errNoSecret = errors.New("a secret is required: --secret-file or $" + cli.SecretEnv)

// settings checks the flags and turns them into settings. Whether a secret
// is given is read from the flags and env, not from the file.
func (fl *flags) settings(env func(string) string) (settings, error) {
	err := errors.Join(
		fl.log.Check(),
		cli.CheckHostPort("listen", fl.listen),
		cli.CheckIP("relay-ip", fl.relayIP),
		cli.CheckIP("relay-ip6", fl.relayIP6),
		cli.NotNegative("max-bytes", fl.maxBytes),
		cli.NotNegative("max-duration", fl.maxDuration),
		cli.NotNegative("max-allocations", fl.maxAllocs),
		cli.NotNegative("max-per-peer", fl.maxPerPeer),
		cli.NotNegative("cred-ttl", fl.credTTL),
	)
	if fl.tcp != "" && fl.tcp != "-" {
		err = errors.Join(err, cli.CheckHostPort("tcp", fl.tcp))
	}
	if fl.admin != "" {
		err = errors.Join(err, cli.CheckHostPort("admin", fl.admin))
	}
	if err != nil {
		return settings{}, err
	}
	// As cli.ReadSecret finds it: a file always yields a secret or an error.
	if fl.secretFile == "" && strings.TrimSpace(env(cli.SecretEnv)) == "" {
		return settings{}, errNoSecret
	}
	s := settings{
		cfg: relay.Config{ListenUDP: fl.listen, ListenTCP: fl.tcp, MaxBytes: fl.maxBytes, MaxDuration: fl.maxDuration,
			MaxAllocations: fl.maxAllocs, MaxPerPeer: fl.maxPerPeer, CredTTL: fl.credTTL, RelayIP: net.ParseIP(fl.relayIP), RelayIP6: net.ParseIP(fl.relayIP6), MinPort: fl.minPort, MaxPort: fl.maxPort},
		supernodes: cli.SplitList(fl.supernodes),
		advertise:  fl.advertise,
		secretFile: fl.secretFile, dataDir: fl.dataDir, certFile: fl.certFile,
		log: fl.log, admin: fl.admin,
	}
	if s.advertise == "" {
		s.advertise = fl.relayIP
	}
	for _, t := range s.supernodes {
		if err := cli.CheckTarget("supernode", t); err != nil {
			return settings{}, err
		}
	}
	for _, a := range fl.allowPeers {
		p, err := relay.ParsePeerPrefix(a)
		if err != nil {
			return settings{}, fmt.Errorf("--allow-peer: %w", err)
		}
		s.cfg.AllowPeers = append(s.cfg.AllowPeers, p)
	}
	return s, nil
}

// ConfigFile is the config file read from the data dir unless --config names one.
const ConfigFile = "relay.toml"

// loadConfig reads the config file into the flags the command line left unset.
func (fl *flags) loadConfig(f *pflag.FlagSet) error {
	return cli.LoadConfigIn(f, fl.config, fl.dataDir, ConfigFile)
}

// configFromArgs is what the relay makes of its arguments (without the
// program name) and environment: a pure function of both, but for the data
// directory's default, which is in the user's configuration folder.
func configFromArgs(args []string, env func(string) string) (settings, error) {
	var fl flags
	var fs *pflag.FlagSet
	if err := cli.ParseFlags("relay", func(f *pflag.FlagSet) { fs = f; fl.bind(f) }, args); err != nil {
		return settings{}, err
	}
	if err := fl.loadConfig(fs); err != nil {
		return settings{}, err
	}
	return fl.settings(env)
}

func defaultDataDir() string { return defaults.DataDir(os.Getenv, "", "relay") }
