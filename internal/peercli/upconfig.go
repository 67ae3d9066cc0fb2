package peercli

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

// upSettings is what `peer up` is asked for, before anything is opened.
type upSettings struct {
	cfg      peer.Config // without Log
	log      cli.LogFlags
	memLimit int64
}

// upFlags are the flags of `peer up` as given.
type upFlags struct {
	share, name, user, listen       string
	log                             cli.LogFlags
	inboxDir, inboxFrom, leadListen string
	networkID                       string
	accept                          []string
	supernodes                      []string
	noLead                          bool
	rescan, upgrade, punch          time.Duration
	upRate, downRate                float64
	unchoke, optimistic             time.Duration
	leadAfter, leadStepDown         time.Duration
	slots, attach                   int
	memLimit                        int64
	limitLoopback                   bool
	config                          string
	web, downloads                  string
}

// DefaultWeb is where the web page listens unless --web says otherwise; a
// free port on the same host when another daemon holds it.
const DefaultWeb = "127.0.0.1:7654"

// ConfigFile is where `peer up` keeps its settings, in the data dir: what
// it was last started with, so a bare `peer up` starts the same way.
const ConfigFile = "peer.toml"

// configPath is the config file to read, and whether the user named it.
func (fl *upFlags) configPath(dataDir string) (string, bool) {
	if fl.config != "" {
		return fl.config, true
	}
	return filepath.Join(dataDir, ConfigFile), false
}

// bind defines the flags on f, their defaults taken from peer.DefaultConfig
// and the environment env reads.
func (fl *upFlags) bind(f *pflag.FlagSet, env func(string) string) {
	def := peer.DefaultConfig()
	f.StringVar(&fl.share, "share", "", "folder to share")
	f.StringVar(&fl.name, "name", env("USER"), "name shown to others in search results")
	f.StringVar(&fl.user, "user", "", "username to register in the overlay's directory, so others find you by it (a-z, 0-9, . _ -)")
	f.StringVar(&fl.inboxDir, "inbox", "", "folder where files sent to you arrive (default: inbox in the data directory)")
	f.StringVar(&fl.inboxFrom, "inbox-from", def.InboxPolicy, "who may send you files: anyone, accepted (those in --accept) or nobody")
	f.StringSliceVar(&fl.accept, "accept", nil, "peer IDs and usernames whose files you take with --inbox-from accepted, comma-separated")
	f.BoolVar(&fl.noLead, "no-lead", false, "never serve as a supernode for others")
	f.DurationVar(&fl.leadAfter, "lead-after", def.LeadAfter, "how long the peer must be up before a supernode may promote it")
	f.StringVar(&fl.leadListen, "lead-listen", "", "UDP address of the supernode this peer runs once promoted (default: the --listen host, any port)")
	// The supernode a peer runs once promoted steps down on its own default.
	f.DurationVar(&fl.leadStepDown, "lead-step-down", supernode.DefaultConfig().StepDownAfter, "how long that supernode may stay underused before it hands its leaves back and stops")
	f.StringVar(&fl.networkID, "network", "", "the overlay's network ID (net-...): attach only to supernodes it admits (default: trust the first supernode's, and keep it)")
	f.IntVar(&fl.attach, "attach", def.Attach, "supernodes to stay attached to at once, so one dying leaves the others")
	f.StringSliceVar(&fl.supernodes, "supernode", nil, "supernodes to attach to (host:port or peerid@host:port), comma-separated, tried in order")
	f.StringVar(&fl.listen, "listen", def.Listen, "UDP address of the peer's socket")
	f.StringVar(&fl.downloads, "download-dir", "", "where downloads from the web page go (default: ~/Downloads when it exists, else downloads in the data dir)")
	f.StringVar(&fl.web, "web", DefaultWeb, "loopback address of the web page, for this user alone (`peer web` prints its link; - for none)")
	fl.log.Bind(f)
	f.DurationVar(&fl.rescan, "rescan", def.RescanInterval, "how often to rescan the share folder")
	f.DurationVar(&fl.upgrade, "upgrade-interval", def.UpgradeInterval, "how often a relayed link tries for a direct path again")
	f.DurationVar(&fl.punch, "punch-timeout", def.PunchTimeout, "how long a hole punch may take before a relay is used")
	f.Float64Var(&fl.upRate, "up-rate", 0, "upload limit over all transfers, MB/s (10^6 bytes); 0: none")
	f.Float64Var(&fl.downRate, "down-rate", 0, "download limit over all transfers, MB/s; 0: none")
	f.DurationVar(&fl.unchoke, "unchoke-interval", def.UnchokeInterval, "how often the peers we upload to are chosen again")
	f.DurationVar(&fl.optimistic, "optimistic-interval", def.OptimisticInterval, "how often the optimistic unchoke moves to another peer")
	f.IntVar(&fl.slots, "unchoke-slots", def.UnchokeSlots, "peers unchoked for their upload rate, beside the optimistic one")
	f.BoolVar(&fl.limitLoopback, "limit-loopback", false, "apply the per-address limits to loopback sources too (exempt by default, so local tests can share 127.0.0.1)")
	f.StringVar(&fl.config, cli.ConfigFlag, "", "TOML file of settings to start with instead of "+ConfigFile+" in the data dir, which `peer up` otherwise reads and keeps up to date; flags win over it")
	f.Int64Var(&fl.memLimit, "memory-limit", cli.DefaultMemoryLimit, "soft limit of the Go heap in bytes, which makes the collector work harder near it (0: none; $GOMEMLIMIT wins)")
}

// settings checks the flags and turns them into the daemon's settings, for
// the data directory given to `peer`.
func (fl *upFlags) settings(dataDir string) (upSettings, error) {
	if err := fl.log.Check(); err != nil {
		return upSettings{}, err
	}
	sns := cli.SplitList(fl.supernodes)
	if len(sns) == 0 {
		return upSettings{}, fmt.Errorf("--supernode is required (host:port of a supernode)")
	}
	if fl.upRate < 0 || fl.downRate < 0 {
		return upSettings{}, fmt.Errorf("--up-rate and --down-rate are MB/s, 0 for no limit")
	}
	err := errors.Join(
		cli.CheckHostPort("listen", fl.listen),
		cli.NotNegative("attach", fl.attach),
		cli.NotNegative("unchoke-slots", fl.slots),
		cli.NotNegative("lead-after", fl.leadAfter),
		cli.NotNegative("lead-step-down", fl.leadStepDown),
		cli.NotNegative("rescan", fl.rescan),
		cli.NotNegative("upgrade-interval", fl.upgrade),
		cli.NotNegative("punch-timeout", fl.punch),
		cli.NotNegative("unchoke-interval", fl.unchoke),
		cli.NotNegative("optimistic-interval", fl.optimistic),
		cli.NotNegative("memory-limit", fl.memLimit),
	)
	if fl.leadListen != "" {
		err = errors.Join(err, cli.CheckHostPort("lead-listen", fl.leadListen))
	}
	web := fl.web
	if web == "-" {
		web = ""
	} else if err2 := cli.CheckHostPort("web", web); err2 != nil {
		err = errors.Join(err, err2)
	} else if h, _, _ := net.SplitHostPort(web); h != "localhost" && !isLoopback(h) {
		err = errors.Join(err, fmt.Errorf("--web %q: the page is for this machine's user: give a loopback address such as %s", web, DefaultWeb))
	}
	for _, sn := range sns {
		err = errors.Join(err, cli.CheckTarget("supernode", sn))
	}
	if err != nil {
		return upSettings{}, err
	}
	var network protocol.NetworkID
	if fl.networkID != "" {
		if network, err = protocol.ParseNetworkID(fl.networkID); err != nil {
			return upSettings{}, fmt.Errorf("--network: %w", err)
		}
	}
	return upSettings{
		cfg: peer.Config{
			DataDir: dataDir, ShareDir: fl.share, Name: fl.name, Username: protocol.NormalizeUsername(fl.user), Supernodes: sns, Attach: fl.attach, Network: network,
			InboxDir: fl.inboxDir, InboxPolicy: fl.inboxFrom, AcceptFrom: fl.accept, NoLead: fl.noLead,
			LeadAfter: fl.leadAfter, LeadListen: fl.leadListen, LeadStepDown: fl.leadStepDown,
			Listen: fl.listen, RescanInterval: fl.rescan, Web: web, DownloadDir: fl.downloads,
			UpgradeInterval: fl.upgrade, PunchTimeout: fl.punch,
			UploadRate: int64(fl.upRate * 1e6), DownloadRate: int64(fl.downRate * 1e6),
			UnchokeInterval: fl.unchoke, OptimisticInterval: fl.optimistic, UnchokeSlots: fl.slots, LimitLoopback: fl.limitLoopback,
		},
		log: fl.log, memLimit: fl.memLimit,
	}, nil
}

func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// upConfig is what `peer --data-dir dataDir up args...` makes of its
// arguments and environment: a pure function of them.
func upConfig(dataDir string, args []string, env func(string) string) (upSettings, error) {
	var fl upFlags
	if err := cli.ParseFlags("up", func(f *pflag.FlagSet) { fl.bind(f, env) }, args); err != nil {
		return upSettings{}, err
	}
	return fl.settings(dataDir)
}
