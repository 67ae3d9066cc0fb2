package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
	"github.com/supernet-p2p/supernet/supernode"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// defaultSettings is what no flags give, with the data directory from the environment.
func defaultSettings(dataDir string) settings {
	def := supernode.DefaultConfig()
	return settings{
		cfg: supernode.Config{
			Listen: def.Listen, DataDir: dataDir, MaxLeaves: def.MaxLeaves, LeafLimit: def.LeafLimit,
			PromoteEvery: def.PromoteEvery, Neighbours: def.Neighbours, RelayCredTTL: def.RelayCredTTL,
			Router: supernode.RouterConfig{HopLimit: def.Router.HopLimit, LeafPings: def.Router.LeafPings},
		},
		log: cli.DefaultLogFlags(), memLimit: supernode.MemoryFor(def.MaxLeaves),
	}
}

func TestConfigFromArgs(t *testing.T) {
	id := protocol.PeerID{1, 2, 3}.String()
	withSecret := map[string]string{supernode.DataDirEnv: "/sn", cli.SecretEnv: "0123456789abcdef"}
	cases := []struct {
		name string
		args []string
		env  map[string]string // default: the data directory only
		edit func(*settings)
	}{
		{"defaults", nil, nil, func(*settings) {}},
		{"listen", []string{"--listen", "127.0.0.1:7000"}, nil, func(s *settings) { s.cfg.Listen = "127.0.0.1:7000" }},
		{"join, repeated and comma-separated", []string{"--join", "a:1, b:2", "--join", id + "@c:3"}, nil,
			func(s *settings) { s.cfg.Join = []string{"a:1", "b:2", id + "@c:3"} }},
		{"data dir flag over the environment", []string{"--data-dir", "/elsewhere"}, nil, func(s *settings) { s.cfg.DataDir = "/elsewhere" }},
		{"log level", []string{"--log-level", "debug"}, nil, func(s *settings) { s.log.Level = "debug" }},
		{"log json", []string{"--log-json"}, nil, func(s *settings) { s.log.JSON = true }},
		{"max leaves", []string{"--max-leaves", "50"}, nil, func(s *settings) { s.cfg.MaxLeaves, s.memLimit = 50, supernode.MemoryFor(50) }},
		{"leaf limit -1: never promote", []string{"--leaf-limit", "-1"}, nil, func(s *settings) { s.cfg.LeafLimit = -1 }},
		{"promote every", []string{"--promote-every", "1h"}, nil, func(s *settings) { s.cfg.PromoteEvery = time.Hour }},
		{"hops", []string{"--hops", "2"}, nil, func(s *settings) { s.cfg.Router.HopLimit = 2 }},
		{"leaf pings", []string{"--leaf-pings", "500"}, nil, func(s *settings) { s.cfg.Router.LeafPings = 500 }},
		{"alt listen", []string{"--alt-listen", "127.0.0.1:7001"}, nil, func(s *settings) { s.cfg.AltListen = "127.0.0.1:7001" }},
		{"alt listen none", []string{"--alt-listen", "-"}, nil, func(s *settings) { s.cfg.AltListen = "-" }},
		{"tcp listen", []string{"--tcp-listen", ":7002"}, nil, func(s *settings) { s.cfg.ListenTCP = ":7002" }},
		{"tcp listen none", []string{"--tcp-listen", "-"}, nil, func(s *settings) { s.cfg.ListenTCP = "-" }},
		{"advertise", []string{"--advertise", "sn.example:6346,192.0.2.1:6346"}, nil,
			func(s *settings) { s.cfg.Advertise = []string{"sn.example:6346", "192.0.2.1:6346"} }},
		{"neighbours -1: only --join", []string{"--neighbours", "-1"}, nil, func(s *settings) { s.cfg.Neighbours = -1 }},
		{"secret file", []string{"--relay-secret-file", "/s"}, nil, func(s *settings) { s.secretFile = "/s" }},
		{"cert", []string{"--cert", "/c"}, nil, func(s *settings) { s.certFile = "/c" }},
		{"network key", []string{"--network-key", "/k"}, nil, func(s *settings) { s.networkKeyFile = "/k" }},
		{"memory limit off", []string{"--memory-limit", "0"}, nil, func(s *settings) { s.memLimit = 0 }},
		{"memory limit set", []string{"--memory-limit", "1000000000"}, nil, func(s *settings) { s.memLimit = 1e9 }},
		{"memory limit follows max leaves", []string{"--max-leaves", "10000"}, nil, func(s *settings) {
			s.cfg.MaxLeaves, s.memLimit = 10000, supernode.MemoryFor(10000)
		}},
		{"limit loopback", []string{"--limit-loopback"}, nil, func(s *settings) { s.cfg.LimitLoopback = true }},
		{"turn servers with the secret in a file", []string{"--turn-server", "t1:3478,t2:3478", "--relay-secret-file", "/s"}, nil,
			func(s *settings) { s.cfg.TURNServers, s.secretFile = []string{"t1:3478", "t2:3478"}, "/s" }},
		{"relay with the secret in the environment", []string{"--relay", ":3478", "--relay-ip", "192.0.2.7",
			"--relay-allow-peer", "10.0.0.0/8", "--relay-allow-peer", "192.168.1.1"}, withSecret,
			func(s *settings) {
				s.relay = &relay.Config{ListenUDP: ":3478", RelayIP: net.ParseIP("192.0.2.7"),
					AllowPeers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")}}
				s.cfg.RelayHost = "192.0.2.7"
			}},
		{"relay flags without --relay are ignored", []string{"--relay-ip", "192.0.2.7"}, nil, func(*settings) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = map[string]string{supernode.DataDirEnv: "/sn"}
			}
			got, err := configFromArgs(tc.args, envOf(env))
			if err != nil {
				t.Fatal(err)
			}
			want := defaultSettings("/sn")
			tc.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestConfigFromArgsDataDirFallback(t *testing.T) {
	got, err := configFromArgs(nil, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.cfg.DataDir != supernode.DataDirFrom(envOf(nil)) || got.cfg.DataDir == "" {
		t.Errorf("data dir %q without $%s", got.cfg.DataDir, supernode.DataDirEnv)
	}
}

func TestConfigFromArgsRefuses(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"unknown flag", []string{"--listne", ":1"}, "unknown flag: --listne"},
		{"an argument", []string{"serve"}, `unexpected argument "serve"`},
		{"negative duration", []string{"--promote-every", "-1s"}, "--promote-every -1s: must not be negative"},
		{"not a duration", []string{"--promote-every", "soon"}, `invalid argument "soon" for "--promote-every"`},
		{"listen without a port", []string{"--listen", "127.0.0.1"}, `--listen "127.0.0.1": want host:port`},
		{"listen on a bad port", []string{"--listen", ":70000"}, `--listen ":70000": want host:port`},
		{"bad alt listen", []string{"--alt-listen", "nowhere"}, `--alt-listen "nowhere"`},
		{"bad tcp listen", []string{"--tcp-listen", "::1"}, `--tcp-listen "::1"`},
		{"bad join", []string{"--join", "a:1,b"}, `--join "b": want host:port or peerid@host:port`},
		{"bad peer ID in join", []string{"--join", "nobody@a:1"}, `--join "nobody@a:1"`},
		{"bad advertise", []string{"--advertise", "sn.example"}, `--advertise "sn.example"`},
		{"negative max leaves", []string{"--max-leaves", "-5"}, "--max-leaves -5: must not be negative"},
		{"negative leaf pings", []string{"--leaf-pings", "-1"}, "--leaf-pings -1: must not be negative"},
		{"negative memory limit", []string{"--memory-limit", "-2"}, "--memory-limit -2: must be at least -1"},
		{"hops beyond a byte", []string{"--hops", "300"}, `invalid argument "300" for "--hops"`},
		{"bad log level", []string{"--log-level", "loud"}, `log level "loud"`},
		{"bad turn server", []string{"--turn-server", "turn.example", "--relay-secret-file", "/s"}, `--turn-server "turn.example": want host:port`},
		{"turn server without a secret", []string{"--turn-server", "t:3478"}, "--turn-server needs the secret"},
		{"relay without a secret", []string{"--relay", ":3478"}, "--relay needs a secret"},
		{"bad relay address", []string{"--relay", "3478", "--relay-secret-file", "/s"}, `--relay "3478": want host:port`},
		{"bad relay IP", []string{"--relay", ":3478", "--relay-ip", "relay.example", "--relay-secret-file", "/s"}, `--relay-ip "relay.example": not an IP address`},
		{"bad relay allow", []string{"--relay", ":3478", "--relay-allow-peer", "lan", "--relay-secret-file", "/s"}, "--relay-allow-peer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := configFromArgs(tc.args, envOf(map[string]string{supernode.DataDirEnv: "/sn", cli.SecretEnv: "  "}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A config file sets what the flags leave unset; it is read from the data
// dir unless --config names one, and a named one must be there.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	body := "listen = \"127.0.0.1:7000\"\njoin = [\"a:1\", \"b:2\"]\nmax-leaves = 10\nadmin = \"127.0.0.1:9090\"\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envOf(map[string]string{supernode.DataDirEnv: dir})
	s, err := configFromArgs([]string{"--max-leaves", "20"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Listen != "127.0.0.1:7000" || !reflect.DeepEqual(s.cfg.Join, []string{"a:1", "b:2"}) || s.cfg.MaxLeaves != 20 || s.admin != "127.0.0.1:9090" {
		t.Errorf("from %s in the data dir: %+v, admin %q", ConfigFile, s.cfg, s.admin)
	}
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte("max-leaves = 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := configFromArgs([]string{"--config", other}, env); err != nil || s.cfg.MaxLeaves != 30 || s.cfg.Listen != supernode.DefaultConfig().Listen {
		t.Errorf("--config %s: %+v, %v", other, s.cfg, err)
	}
	if _, err := configFromArgs([]string{"--config", filepath.Join(dir, "none.toml")}, env); err == nil {
		t.Error("a --config file that is not there was no error")
	}
	if err := os.WriteFile(other, []byte("max-leafs = 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := configFromArgs([]string{"--config", other}, env); err == nil || !strings.Contains(err.Error(), `"max-leafs" is not a setting`) {
		t.Errorf("a misspelt key: %v", err)
	}
}

// deploy/supernode.toml is a config the supernode takes.
func TestDeployConfig(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", ConfigFile)
	s, err := configFromArgs([]string{"--config", path}, envOf(map[string]string{supernode.DataDirEnv: t.TempDir()}))
	if err != nil || s.cfg.Listen != ":6346" || s.admin != "127.0.0.1:9090" {
		t.Errorf("%s: %+v, %v", path, s.cfg, err)
	}
}
