package peercli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/peerlead"
	"github.com/supernet-p2p/supernet/peer"
)

func upCmd(g *globals) *cobra.Command {
	var fl upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the peer daemon: share a folder and attach to a supernode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fl.settings(g.dataDir)
			if err != nil {
				return cli.Usage(err)
			}
			log, err := st.log.Logger(os.Stderr)
			if err != nil {
				return cli.Usage(err)
			}
			cli.SetMemoryLimit(st.memLimit)
			ctx, stop := signalContext()
			defer stop()
			cfg := st.cfg
			cfg.Log, cfg.StartLead = log, peerlead.Start
			d, err := peer.New(cfg)
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
	fl.bind(cmd.Flags(), os.Getenv)
	return cmd
}
