package peercli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
)

func sendCmd(g *globals) *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send USERNAME FILE",
		Short: "Send a file to a user's inbox, found by name wherever the user is",
		Long: "Look the user up in the overlay's directory, connect to the user's peer (directly or\n" +
			"through a relay) and hand it the file, which it checks against its SHA-256 and keeps in\n" +
			"its inbox. The user's daemon may take files only from senders it accepted.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := protocol.NormalizeUsername(args[0])
			if err := protocol.CheckUsername(user); err != nil {
				return cli.Usage(err)
			}
			path, err := filepath.Abs(args[1])
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res, err := localapi.NewClient(g.dataDir).Send(ctx, user, path)
			if err != nil {
				return explain(err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(res)
			}
			fmt.Printf("sent %s (%s) to %s (%s), %s: stored as %q in %.2f s\n", filepath.Base(path), humanBytes(res.Size),
				res.User, short(res.PeerID), res.Path, res.StoredAs, res.Seconds)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func inboxCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "List the files other peers sent you",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			list, err := localapi.NewClient(g.dataDir).Inbox(ctx)
			if err != nil {
				return explain(err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(list)
			}
			if len(list.Files) == 0 {
				fmt.Printf("nothing has arrived in %s\n", list.Dir)
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "NAME\tSIZE\tFROM\tARRIVED\n")
			for _, e := range list.Files {
				from := short(e.FromPeer)
				if e.FromUser != "" {
					from = e.FromUser + " (" + from + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, humanBytes(e.Size), from, e.At.Local().Format(time.DateTime))
			}
			plural := "s"
			if len(list.Files) == 1 {
				plural = ""
			}
			fmt.Fprintf(tw, "\n%d file%s in %s\n", len(list.Files), plural, list.Dir)
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	cmd.AddCommand(inboxGetCmd(g), inboxRmCmd(g))
	return cmd
}

func inboxGetCmd(g *globals) *cobra.Command {
	var (
		out       string
		overwrite bool
	)
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Save a file of the inbox elsewhere, checked against the SHA-256 it arrived with",
		Long: "Copy a file that arrived (as `peer inbox` names it) to the current folder, or -o a file\n" +
			"or a folder, by the rules of `peer get`: no file is replaced without --overwrite. The\n" +
			"file stays in the inbox until `peer inbox rm`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := outputArg(out)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			path, err := localapi.NewClient(g.dataDir).InboxSave(ctx, apitype.InboxSaveRequest{Name: args[0], Output: target, Overwrite: overwrite})
			if err != nil {
				return explain(err)
			}
			fmt.Printf("saved %s\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file or folder to save to; a path ending in / is a folder, made if missing (default: the current folder)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace a file already there")
	return cmd
}

func inboxRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Delete files from the inbox",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := localapi.NewClient(g.dataDir).InboxRemove(ctx, args); err != nil {
				return explain(err)
			}
			fmt.Printf("removed %d file%s from the inbox\n", len(args), map[bool]string{true: "", false: "s"}[len(args) == 1])
			return nil
		},
	}
}
