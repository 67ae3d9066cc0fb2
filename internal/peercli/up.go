package peercli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/peerlead"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

func upCmd(g *globals) *cobra.Command {
	var fl upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the peer daemon: share a folder and attach to a supernode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, named := fl.configPath(g.dataDir)
			if _, err := cli.LoadConfig(cmd.LocalFlags(), path, named); err != nil {
				return cli.Usage(err)
			}
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
			if !named {
				// Kept once the daemon runs, so a bare `peer up` starts the same way.
				if err := cli.SaveConfig(cmd.LocalFlags(), path); err != nil {
					log.Warn().Err(err).Str("path", path).Msg("cannot keep the settings")
				}
			}
			fmt.Fprintf(os.Stderr, "peer %s up on udp %s (data dir %s)\n", d.ID(), d.Addr(), g.dataDir)
			if u := d.WebURL(); u != "" {
				fmt.Fprintf(os.Stderr, "web page: %s\n", u)
			}
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

func webCmd(g *globals) *cobra.Command {
	var open bool
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Print the link that opens the daemon's web page (with --open, open it)",
		Long: "The daemon serves a page on loopback (--web of `peer up`) for this user alone: the link\n" +
			"carries a token the daemon writes in its data dir, readable by this user only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := localapi.NewClient(g.dataDir).Status(ctx)
			if err != nil {
				return explain(err)
			}
			if st.Web == "" {
				return fmt.Errorf("the daemon runs without a web page (started with --web -)")
			}
			token, err := os.ReadFile(filepath.Join(g.dataDir, peer.WebTokenFile))
			if err != nil {
				return fmt.Errorf("web page token: %w", err)
			}
			link := st.Web + "?token=" + strings.TrimSpace(string(token))
			fmt.Println(link)
			if open {
				return exec.Command("xdg-open", link).Start()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open it in the browser (xdg-open)")
	return cmd
}

func configCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the settings `peer up` starts with: those it keeps in the data dir, then the defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fl upFlags
			fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
			fl.bind(fs, os.Getenv)
			path, _ := fl.configPath(g.dataDir)
			read, err := cli.LoadConfig(fs, path, false)
			if err != nil {
				return err
			}
			settings := cli.Settings(fs)
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(struct {
					File     string        `json:"file"`
					Read     bool          `json:"read"`
					Settings []cli.Setting `json:"settings"`
				}{path, read, settings})
			}
			if read {
				fmt.Printf("# %s, then the defaults\n", path)
			} else {
				fmt.Printf("# defaults (no %s yet: `peer up` keeps its flags there)\n", path)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			for _, s := range settings {
				note := ""
				if s.From == "default" {
					note = "# default"
				}
				fmt.Fprintf(tw, "%s\t%s\n", s.TOML(), note)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the settings as JSON")
	return cmd
}
