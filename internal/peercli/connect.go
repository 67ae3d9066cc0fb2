package peercli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

func connectCmd(g *globals) *cobra.Command {
	var (
		sn      string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use: "connect PEER_ID",
		Example: "  peer connect t4zzxs2kn6nevtj5ckb3xcgvftqj3lwov7acm7mjfc45vqa7fjha\n" +
			"  peer connect t4zzxs2kn6      # a prefix of an ID that status shows",
		Short: "Open a link to another peer through the supernodes and show how it runs",
		Long: "Open a link to another peer: dialled, dialled in reverse, hole-punched or relayed, as\n" +
			"the peer's supernode plans it. Prints the plan, the path (direct or relayed) and how\n" +
			"long the setup took. The link stays open a short while for transfers.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext()
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			c := localapi.NewClient(g.dataDir)
			id, err := resolvePeerID(ctx, c, args[0])
			if err != nil {
				return usageUnlessDaemon(err)
			}
			a, err := c.Connect(ctx, apitype.ConnectRequest{PeerID: id, Supernode: sn})
			if err != nil {
				return explain(err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(a)
			}
			if a.Plan == "reuse" {
				fmt.Printf("already linked to %s: %s\n", short(a.Peer), a.Path)
				return nil
			}
			fmt.Printf("linked to %s: %s (plan %s) in %s\n", short(a.Peer), a.Path, a.Plan, a.Took.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&sn, "supernode", "", "the peer's supernode ID, if known (otherwise the request is flooded)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the attempt as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}
