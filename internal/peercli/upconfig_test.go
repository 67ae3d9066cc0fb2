package peercli

import (
	"crypto/ed25519"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// defaultUp is what `peer up --supernode sn:1` gives for user ann.
func defaultUp() upSettings {
	def := peer.DefaultConfig()
	return upSettings{
		cfg: peer.Config{
			DataDir: "/d", Name: "ann", Supernodes: []string{"sn:1"}, Attach: def.Attach, InboxPolicy: def.InboxPolicy,
			LeadAfter: def.LeadAfter, LeadStepDown: supernode.DefaultConfig().StepDownAfter, Listen: def.Listen,
			RescanInterval: def.RescanInterval, UpgradeInterval: def.UpgradeInterval, PunchTimeout: def.PunchTimeout,
			UnchokeInterval: def.UnchokeInterval, OptimisticInterval: def.OptimisticInterval, UnchokeSlots: def.UnchokeSlots,
			Web: DefaultWeb,
		},
		log: cli.DefaultLogFlags(), memLimit: cli.DefaultMemoryLimit,
	}
}

func TestUpConfig(t *testing.T) {
	id := protocol.PeerID{4}.String()
	network := protocol.NetworkIDOf(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	cases := []struct {
		name string
		args []string
		edit func(*upSettings)
	}{
		{"defaults", nil, func(*upSettings) {}},
		{"share", []string{"--share", "/music"}, func(s *upSettings) { s.cfg.ShareDir = "/music" }},
		{"name over $USER", []string{"--name", "bob"}, func(s *upSettings) { s.cfg.Name = "bob" }},
		{"user", []string{"--user", "ann.b"}, func(s *upSettings) { s.cfg.Username = "ann.b" }},
		{"inbox", []string{"--inbox", "/in"}, func(s *upSettings) { s.cfg.InboxDir = "/in" }},
		{"inbox from and accept", []string{"--inbox-from", peer.InboxAccepted, "--accept", "bob," + id},
			func(s *upSettings) { s.cfg.InboxPolicy, s.cfg.AcceptFrom = peer.InboxAccepted, []string{"bob", id} }},
		{"no lead", []string{"--no-lead"}, func(s *upSettings) { s.cfg.NoLead = true }},
		{"lead after", []string{"--lead-after", "1ms"}, func(s *upSettings) { s.cfg.LeadAfter = time.Millisecond }},
		{"lead listen", []string{"--lead-listen", "127.0.0.1:0"}, func(s *upSettings) { s.cfg.LeadListen = "127.0.0.1:0" }},
		{"lead step down", []string{"--lead-step-down", "3s"}, func(s *upSettings) { s.cfg.LeadStepDown = 3 * time.Second }},
		{"network", []string{"--network", network.String()}, func(s *upSettings) { s.cfg.Network = network }},
		{"attach", []string{"--attach", "1"}, func(s *upSettings) { s.cfg.Attach = 1 }},
		{"supernodes, repeated and comma-separated", []string{"--supernode", "a:1, " + id + "@b:2"},
			func(s *upSettings) { s.cfg.Supernodes = []string{"sn:1", "a:1", id + "@b:2"} }},
		{"listen", []string{"--listen", "127.0.0.1:0"}, func(s *upSettings) { s.cfg.Listen = "127.0.0.1:0" }},
		{"log level", []string{"--log-level", "error"}, func(s *upSettings) { s.log.Level = "error" }},
		{"log json", []string{"--log-json"}, func(s *upSettings) { s.log.JSON = true }},
		{"rescan", []string{"--rescan", "5m"}, func(s *upSettings) { s.cfg.RescanInterval = 5 * time.Minute }},
		{"upgrade interval", []string{"--upgrade-interval", "1m"}, func(s *upSettings) { s.cfg.UpgradeInterval = time.Minute }},
		{"punch timeout", []string{"--punch-timeout", "2s"}, func(s *upSettings) { s.cfg.PunchTimeout = 2 * time.Second }},
		{"rates in MB/s", []string{"--up-rate", "1.5", "--down-rate", "0.25"},
			func(s *upSettings) { s.cfg.UploadRate, s.cfg.DownloadRate = 1_500_000, 250_000 }},
		{"unchoke interval", []string{"--unchoke-interval", "2s"}, func(s *upSettings) { s.cfg.UnchokeInterval = 2 * time.Second }},
		{"optimistic interval", []string{"--optimistic-interval", "6s"}, func(s *upSettings) { s.cfg.OptimisticInterval = 6 * time.Second }},
		{"unchoke slots", []string{"--unchoke-slots", "8"}, func(s *upSettings) { s.cfg.UnchokeSlots = 8 }},
		{"limit loopback", []string{"--limit-loopback"}, func(s *upSettings) { s.cfg.LimitLoopback = true }},
		{"memory limit", []string{"--memory-limit", "0"}, func(s *upSettings) { s.memLimit = 0 }},
		{"web", []string{"--web", "[::1]:8000"}, func(s *upSettings) { s.cfg.Web = "[::1]:8000" }},
		{"no web", []string{"--web", "-"}, func(s *upSettings) { s.cfg.Web = "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := upConfig("/d", append([]string{"--supernode", "sn:1"}, tc.args...), envOf(map[string]string{"USER": "ann"}))
			if err != nil {
				t.Fatal(err)
			}
			want := defaultUp()
			tc.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestUpConfigRefuses(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no supernode", nil, "--supernode is required"},
		{"blank supernodes", []string{"--supernode", " , "}, "--supernode is required"},
		{"unknown flag", []string{"--supernode", "a:1", "--sahre", "x"}, "unknown flag: --sahre"},
		{"an argument", []string{"--supernode", "a:1", "now"}, `unexpected argument "now"`},
		{"bad supernode", []string{"--supernode", "a:1,b"}, `--supernode "b": want host:port or peerid@host:port`},
		{"bad listen", []string{"--supernode", "a:1", "--listen", "0.0.0.0"}, `--listen "0.0.0.0": want host:port`},
		{"bad lead listen", []string{"--supernode", "a:1", "--lead-listen", "x"}, `--lead-listen "x": want host:port`},
		{"negative rate", []string{"--supernode", "a:1", "--up-rate", "-1"}, "--up-rate and --down-rate are MB/s"},
		{"negative rescan", []string{"--supernode", "a:1", "--rescan", "-1m"}, "--rescan -1m0s: must not be negative"},
		{"negative punch timeout", []string{"--supernode", "a:1", "--punch-timeout", "-1ms"}, "--punch-timeout -1ms: must not be negative"},
		{"negative lead step down", []string{"--supernode", "a:1", "--lead-step-down", "-1s"}, "--lead-step-down -1s: must not be negative"},
		{"negative attach", []string{"--supernode", "a:1", "--attach", "-2"}, "--attach -2: must not be negative"},
		{"not a duration", []string{"--supernode", "a:1", "--unchoke-interval", "10"}, `invalid argument "10" for "--unchoke-interval"`},
		{"bad network", []string{"--supernode", "a:1", "--network", "net-nope"}, "--network:"},
		{"bad log level", []string{"--supernode", "a:1", "--log-level", "chatty"}, `log level "chatty"`},
		{"web off this host", []string{"--supernode", "a:1", "--web", "0.0.0.0:7654"}, `--web "0.0.0.0:7654": the page is for this machine's user`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := upConfig("/d", tc.args, envOf(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// deploy/peer.toml is a config `peer up` takes.
func TestDeployConfig(t *testing.T) {
	var fl upFlags
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	fl.bind(fs, func(string) string { return "" })
	path := filepath.Join("..", "..", "deploy", ConfigFile)
	if ok, err := cli.LoadConfig(fs, path, true); !ok || err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	st, err := fl.settings(t.TempDir())
	if err != nil || st.cfg.Username != "alice" || len(st.cfg.Supernodes) != 2 {
		t.Errorf("%s: %+v, %v", path, st.cfg, err)
	}
}
