package peercli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/protocol"
)

func getCmd(g *globals) *cobra.Command {
	var (
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "get CONTENT_ID",
		Short: "Download a file by content ID, verifying every piece",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := protocol.ParseContentID(args[0]); err != nil {
				return explain(err)
			}
			if out == "" {
				out = "."
			}
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			var bar *progressbar.ProgressBar
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			enc := json.NewEncoder(os.Stdout)
			lastState := ""
			onProgress := func(p peer.Progress) {
				switch {
				case asJSON:
					enc.Encode(p)
				case tty && p.State == "downloading":
					if bar == nil {
						bar = progressbar.NewOptions64(p.Size,
							progressbar.OptionSetDescription(p.Name),
							progressbar.OptionSetWriter(os.Stderr),
							progressbar.OptionShowBytes(true),
							progressbar.OptionShowCount(),
							progressbar.OptionSetWidth(30),
							progressbar.OptionThrottle(100e6),
							progressbar.OptionClearOnFinish())
					}
					bar.Describe(fmt.Sprintf("%s (%d/%d sources)", p.Name, p.Active, p.Sources))
					bar.Set64(p.Verified)
				case !tty && p.State != lastState && p.State != "failed":
					// A failure is explained once, by the error printed below.
					name := p.Name
					if name == "" {
						name = p.ContentID
					}
					fmt.Fprintf(os.Stderr, "%s: %s\n", p.State, name)
				}
				lastState = p.State
			}
			p, err := peer.NewClient(g.dataDir).Get(ctx, peer.GetRequest{ContentID: args[0], Output: abs}, onProgress)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return explain(err)
			}
			if !asJSON {
				extra := ""
				if p.BadPieces > 0 {
					extra = fmt.Sprintf(", %d bad pieces re-fetched from other sources", p.BadPieces)
				}
				if p.Resumed > 0 {
					extra += fmt.Sprintf(", %d pieces resumed", p.Resumed)
				}
				fmt.Fprintf(os.Stderr, "saved %s (%s, %d pieces verified%s)\n", p.Path, humanBytes(p.Size), p.Have, extra)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file or folder to save to (default: the current folder)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print progress as JSON lines")
	return cmd
}
