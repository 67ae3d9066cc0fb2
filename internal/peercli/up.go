package peercli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer"
)

func upCmd(g *globals) *cobra.Command {
	var (
		share, name, listen, logLevel string
		supernodes                    []string
		jsonLogs                      bool
		rescan, upgrade, punch        time.Duration
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
			ctx, stop := signalContext()
			defer stop()
			d, err := peer.New(peer.Config{
				DataDir: g.dataDir, ShareDir: share, Name: name, Supernodes: sns,
				Listen: listen, RescanInterval: rescan, Log: log,
				UpgradeInterval: upgrade, PunchTimeout: punch,
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
	f.StringVar(&name, "name", os.Getenv("USER"), "username shown to others")
	f.StringSliceVar(&supernodes, "supernode", nil, "supernodes to attach to (host:port or peerid@host:port), comma-separated, tried in order")
	f.StringVar(&listen, "listen", "0.0.0.0:0", "UDP address of the peer's socket")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&jsonLogs, "log-json", false, "log JSON lines even on a terminal")
	f.DurationVar(&rescan, "rescan", time.Minute, "how often to rescan the share folder")
	f.DurationVar(&upgrade, "upgrade-interval", 30*time.Second, "how often a relayed link tries for a direct path again")
	f.DurationVar(&punch, "punch-timeout", 750*time.Millisecond, "how long a hole punch may take before a relay is used")
	return cmd
}
