package peercli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
)

func lookupCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lookup USERNAME",
		Short: "Find a user by name in the overlay's username directory",
		Long: "Resolve a username through the supernodes: prints the user's peer ID, addresses,\n" +
			"NAT type and supernodes, from the record the user signed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := protocol.NormalizeUsername(args[0])
			if err := protocol.CheckUsername(user); err != nil {
				return cli.Usage(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			res, err := localapi.NewClient(g.dataDir).Lookup(ctx, user)
			if err != nil {
				return explain(err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(res)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "User:\t%s\n", res.Name)
			fmt.Fprintf(tw, "Peer ID:\t%s\n", res.PeerID)
			fmt.Fprintf(tw, "Addresses:\t%s\n", strings.Join(res.Addrs, ", "))
			fmt.Fprintf(tw, "NAT:\t%s\n", res.NAT)
			for i, sn := range res.Supernodes {
				label := "Supernode:"
				if i > 0 {
					label = ""
				}
				fmt.Fprintf(tw, "%s\t%s\n", label, sn)
			}
			fmt.Fprintf(tw, "Record expires:\t%s\n", res.Expires.Local().Format(time.DateTime))
			fmt.Fprintf(tw, "Found in:\t%d supernode hops, %.1f ms\n", res.Hops, res.Elapsed*1000)
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
