package main

import (
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/relay"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// defaultSettings is what no flags give but the secret, which is in the environment.
func defaultSettings() settings {
	def := relay.DefaultConfig()
	return settings{
		cfg: relay.Config{ListenUDP: def.ListenUDP, MaxBytes: def.MaxBytes, MaxDuration: def.MaxDuration,
			MaxAllocations: def.MaxAllocations, MaxPerPeer: def.MaxPerPeer, CredTTL: def.CredTTL},
		dataDir: defaultDataDir(),
		log:     cli.DefaultLogFlags(),
	}
}

func TestConfigFromArgs(t *testing.T) {
	id := protocol.PeerID{9}.String()
	cases := []struct {
		name string
		args []string
		edit func(*settings)
	}{
		{"defaults", nil, func(*settings) {}},
		{"listen", []string{"--listen", "192.0.2.1:3479"}, func(s *settings) { s.cfg.ListenUDP = "192.0.2.1:3479" }},
		{"tcp", []string{"--tcp", ":443"}, func(s *settings) { s.cfg.ListenTCP = ":443" }},
		{"no tcp", []string{"--tcp", "-"}, func(s *settings) { s.cfg.ListenTCP = "-" }},
		{"relay IP, advertised too", []string{"--relay-ip", "192.0.2.9"},
			func(s *settings) { s.cfg.RelayIP, s.advertise = net.ParseIP("192.0.2.9"), "192.0.2.9" }},
		{"advertise over the relay IP", []string{"--relay-ip", "192.0.2.9", "--advertise", "relay.example"},
			func(s *settings) { s.cfg.RelayIP, s.advertise = net.ParseIP("192.0.2.9"), "relay.example" }},
		{"secret file", []string{"--secret-file", "/s"}, func(s *settings) { s.secretFile = "/s" }},
		{"supernodes", []string{"--supernode", "a:1, " + id + "@b:2", "--supernode", "c:3"},
			func(s *settings) { s.supernodes = []string{"a:1", id + "@b:2", "c:3"} }},
		{"data dir", []string{"--data-dir", "/r"}, func(s *settings) { s.dataDir = "/r" }},
		{"cert", []string{"--cert", "/c"}, func(s *settings) { s.certFile = "/c" }},
		{"max bytes", []string{"--max-bytes", "1000"}, func(s *settings) { s.cfg.MaxBytes = 1000 }},
		{"max duration", []string{"--max-duration", "10m"}, func(s *settings) { s.cfg.MaxDuration = 10 * time.Minute }},
		{"max allocations", []string{"--max-allocations", "7"}, func(s *settings) { s.cfg.MaxAllocations = 7 }},
		{"max per peer", []string{"--max-per-peer", "2"}, func(s *settings) { s.cfg.MaxPerPeer = 2 }},
		{"cred ttl", []string{"--cred-ttl", "5m"}, func(s *settings) { s.cfg.CredTTL = 5 * time.Minute }},
		{"allow peers", []string{"--allow-peer", "10.0.0.0/8", "--allow-peer", "fd00::1"}, func(s *settings) {
			s.cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::1/128")}
		}},
		{"port range", []string{"--min-port", "50000", "--max-port", "50100"}, func(s *settings) { s.cfg.MinPort, s.cfg.MaxPort = 50000, 50100 }},
		{"log level", []string{"--log-level", "warn"}, func(s *settings) { s.log.Level = "warn" }},
		{"log json", []string{"--log-json"}, func(s *settings) { s.log.JSON = true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configFromArgs(tc.args, envOf(map[string]string{cli.SecretEnv: "0123456789abcdef"}))
			if err != nil {
				t.Fatal(err)
			}
			want := defaultSettings()
			tc.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestConfigFromArgsRefuses(t *testing.T) {
	secret := map[string]string{cli.SecretEnv: "0123456789abcdef"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // in the error
	}{
		{"no secret", nil, map[string]string{cli.SecretEnv: " "}, "a secret is required"},
		{"unknown flag", []string{"--secret", "x"}, secret, "unknown flag: --secret"},
		{"an argument", []string{"serve"}, secret, `unexpected argument "serve"`},
		{"negative duration", []string{"--max-duration", "-1m"}, secret, "--max-duration -1m0s: must not be negative"},
		{"negative cred ttl", []string{"--cred-ttl", "-1s"}, secret, "--cred-ttl -1s: must not be negative"},
		{"negative bytes", []string{"--max-bytes", "-1"}, secret, "--max-bytes -1: must not be negative"},
		{"negative allocations", []string{"--max-allocations", "-1"}, secret, "--max-allocations -1: must not be negative"},
		{"port out of range", []string{"--min-port", "70000"}, secret, `invalid argument "70000" for "--min-port"`},
		{"listen without a port", []string{"--listen", "192.0.2.1"}, secret, `--listen "192.0.2.1": want host:port`},
		{"bad tcp", []string{"--tcp", "443"}, secret, `--tcp "443": want host:port`},
		{"relay IP not an IP", []string{"--relay-ip", "relay.example"}, secret, `--relay-ip "relay.example": not an IP address`},
		{"bad supernode", []string{"--supernode", "a:1,b"}, secret, `--supernode "b": want host:port or peerid@host:port`},
		{"bad allow peer", []string{"--allow-peer", "lan"}, secret, "--allow-peer"},
		{"bad log level", []string{"--log-level", "verbose"}, secret, `log level "verbose"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := configFromArgs(tc.args, envOf(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// deploy/relay.toml is a config the relay takes.
func TestDeployConfig(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", ConfigFile)
	s, err := configFromArgs([]string{"--config", path, "--data-dir", t.TempDir()}, envOf(map[string]string{cli.SecretEnv: "0123456789abcdef"}))
	if err != nil || s.cfg.ListenUDP != ":3478" || s.cfg.MinPort != 49152 || s.admin != "127.0.0.1:9091" || len(s.supernodes) != 1 {
		t.Errorf("%s: %+v, %v", path, s, err)
	}
}
