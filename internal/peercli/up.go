package peercli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/peerlead"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
)

func upCmd(g *globals) *cobra.Command {
	var (
		share, name, user, listen, logLevel string
		inboxDir, inboxFrom, leadListen     string
		networkID                           string
		accept                              []string
		supernodes                          []string
		jsonLogs, noLead                    bool
		rescan, upgrade, punch              time.Duration
		upRate, downRate                    float64
		unchoke, optimistic                 time.Duration
		leadAfter, leadStepDown             time.Duration
		slots, attach                       int
		memLimit                            int64
		limitLoopback                       bool
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the peer daemon: share a folder and attach to a supernode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.Logger(os.Stderr, logLevel, jsonLogs)
			if err != nil {
				return err
			}
			cli.SetMemoryLimit(memLimit)
			var sns []string
			for _, s := range supernodes {
				for _, t := range strings.Split(s, ",") {
					if t = strings.TrimSpace(t); t != "" {
						sns = append(sns, t)
					}
				}
			}
			if len(sns) == 0 {
				return fmt.Errorf("--supernode is required (host:port of a supernode)")
			}
			if upRate < 0 || downRate < 0 {
				return fmt.Errorf("--up-rate and --down-rate are MB/s, 0 for no limit")
			}
			var network protocol.NetworkID
			if networkID != "" {
				if network, err = protocol.ParseNetworkID(networkID); err != nil {
					return fmt.Errorf("--network: %w", err)
				}
			}
			ctx, stop := signalContext()
			defer stop()
			d, err := peer.New(peer.Config{
				DataDir: g.dataDir, ShareDir: share, Name: name, Username: user, Supernodes: sns, Attach: attach, Network: network,
				InboxDir: inboxDir, InboxPolicy: inboxFrom, AcceptFrom: accept, NoLead: noLead,
				LeadAfter: leadAfter, LeadListen: leadListen, LeadStepDown: leadStepDown, StartLead: peerlead.Start,
				Listen: listen, RescanInterval: rescan, Log: log,
				UpgradeInterval: upgrade, PunchTimeout: punch,
				UploadRate: int64(upRate * 1e6), DownloadRate: int64(downRate * 1e6),
				UnchokeInterval: unchoke, OptimisticInterval: optimistic, UnchokeSlots: slots, LimitLoopback: limitLoopback,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "peer %s up on udp %s (data dir %s)\n", d.ID(), d.Addr(), g.dataDir)
			err = d.Serve(ctx)
			d.Close()
			if err == peer.ErrDaemonClosed {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&share, "share", "", "folder to share")
	f.StringVar(&name, "name", os.Getenv("USER"), "name shown to others in search results")
	f.StringVar(&user, "user", "", "username to register in the overlay's directory, so others find you by it (a-z, 0-9, . _ -)")
	f.StringVar(&inboxDir, "inbox", "", "folder where files sent to you arrive (default: inbox in the data directory)")
	f.StringVar(&inboxFrom, "inbox-from", peer.InboxAnyone, "who may send you files: anyone, accepted (those in --accept) or nobody")
	f.StringSliceVar(&accept, "accept", nil, "peer IDs and usernames whose files you take with --inbox-from accepted, comma-separated")
	f.BoolVar(&noLead, "no-lead", false, "never serve as a supernode for others")
	f.DurationVar(&leadAfter, "lead-after", 30*time.Minute, "how long the peer must be up before a supernode may promote it")
	f.StringVar(&leadListen, "lead-listen", "", "UDP address of the supernode this peer runs once promoted (default: the --listen host, any port)")
	f.DurationVar(&leadStepDown, "lead-step-down", 10*time.Minute, "how long that supernode may stay underused before it hands its leaves back and stops")
	f.StringVar(&networkID, "network", "", "the overlay's network ID (net-...): attach only to supernodes it admits (default: trust the first supernode's, and keep it)")
	f.IntVar(&attach, "attach", 3, "supernodes to stay attached to at once, so one dying leaves the others")
	f.StringSliceVar(&supernodes, "supernode", nil, "supernodes to attach to (host:port or peerid@host:port), comma-separated, tried in order")
	f.StringVar(&listen, "listen", "0.0.0.0:0", "UDP address of the peer's socket")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&jsonLogs, "log-json", false, "log JSON lines even on a terminal")
	f.DurationVar(&rescan, "rescan", time.Minute, "how often to rescan the share folder")
	f.DurationVar(&upgrade, "upgrade-interval", 30*time.Second, "how often a relayed link tries for a direct path again")
	f.DurationVar(&punch, "punch-timeout", 750*time.Millisecond, "how long a hole punch may take before a relay is used")
	f.Float64Var(&upRate, "up-rate", 0, "upload limit over all transfers, MB/s (10^6 bytes); 0: none")
	f.Float64Var(&downRate, "down-rate", 0, "download limit over all transfers, MB/s; 0: none")
	f.DurationVar(&unchoke, "unchoke-interval", 10*time.Second, "how often the peers we upload to are chosen again")
	f.DurationVar(&optimistic, "optimistic-interval", 30*time.Second, "how often the optimistic unchoke moves to another peer")
	f.IntVar(&slots, "unchoke-slots", 4, "peers unchoked for their upload rate, beside the optimistic one")
	f.BoolVar(&limitLoopback, "limit-loopback", false, "apply the per-address limits to loopback sources too (exempt by default, so local tests can share 127.0.0.1)")
	f.Int64Var(&memLimit, "memory-limit", cli.DefaultMemoryLimit, "soft limit of the Go heap in bytes, which makes the collector work harder near it (0: none; $GOMEMLIMIT wins)")
	return cmd
}
