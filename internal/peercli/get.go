package peercli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

func getCmd(g *globals) *cobra.Command {
	var (
		out       string
		asJSON    bool
		overwrite bool
	)
	cmd := &cobra.Command{
		Use:   "get CONTENT_ID",
		Short: "Download a file by content ID, verifying every piece",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := localapi.NewClient(g.dataDir)
			cid, err := resolveContentID(cmd.Context(), c, args[0])
			if err != nil {
				return usageUnlessDaemon(err)
			}
			abs, err := outputArg(out)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			var bar *progressbar.ProgressBar
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			enc := json.NewEncoder(os.Stdout)
			lastState := ""
			var lastLine time.Time
			onProgress := func(p apitype.Progress) {
				name := p.Name
				if name == "" {
					name = p.ContentID
				}
				switch {
				case asJSON:
					enc.Encode(p)
				case tty && p.State == "downloading":
					if bar == nil {
						bar = newBar(os.Stderr, p.Size)
					}
					bar.Describe(barLine(name, p))
					bar.Set64(p.Verified)
				case !tty && p.State == "downloading" && time.Since(lastLine) >= time.Second:
					// Logs and pipes get a line a second instead of a bar.
					lastLine = time.Now()
					fmt.Fprintf(os.Stderr, "%s: %s  %s of %s (%d/%d pieces)  %s/s  %s\n", name, percent(p.Verified, p.Size),
						humanBytes(p.Verified), humanBytes(p.Size), p.Have, p.Pieces, humanBytes(int64(p.Rate)), peersLine(p))
				case !tty && p.State != lastState && p.State != "failed":
					// A failure is explained once, by the error printed below.
					fmt.Fprintf(os.Stderr, "%s: %s\n", p.State, name)
				}
				lastState = p.State
			}
			p, err := c.Get(ctx, apitype.GetRequest{ContentID: cid, Output: abs, Overwrite: overwrite}, onProgress)
			if bar != nil {
				bar.Finish()
			}
			if err != nil && ctx.Err() != nil {
				// Ctrl-C: the daemon keeps what was verified.
				fmt.Fprintln(os.Stderr, "peer: interrupted; run the same command again to resume")
				return exitError{exitInterrupted}
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
	cmd.Flags().StringVarP(&out, "output", "o", "", "file or folder to save to; a path ending in / is a folder, made if missing (default: the current folder)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace a file already there (default: refuse a named file, and take a free name like song (1).mp3 in a folder)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print progress as JSON lines")
	return cmd
}

// outputArg is -o as the daemon takes it: absolute, the current folder when
// empty, and a folder still when it ends in a separator (Abs drops it).
func outputArg(out string) (string, error) {
	if out == "" {
		out = "."
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator)) {
		abs += string(filepath.Separator)
	}
	return abs, nil
}

// newBar draws a download's progress on w. The bar shows no figures of its
// own: its own rate would count the bytes resumed from an earlier run as
// fetched at once, and would sit beside the daemon's in other units.
// barLine carries the figures.
func newBar(w io.Writer, size int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish())
}

// barLine is the text beside the bar: the daemon's figures, with one rate,
// that of the bytes fetched lately.
func barLine(name string, p apitype.Progress) string {
	eta := ""
	if p.Rate > 0 && p.Size > p.Verified {
		eta = "  " + (time.Duration(float64(p.Size-p.Verified)/p.Rate) * time.Second).Round(time.Second).String() + " left"
	}
	return fmt.Sprintf("%s  %s of %s  %s/s%s  %s", name, humanBytes(p.Verified), humanBytes(p.Size),
		humanBytes(int64(p.Rate)), eta, peersLine(p))
}

// peersLine says whom a download exchanges with.
func peersLine(p apitype.Progress) string {
	s := fmt.Sprintf("%d of %d peers", p.Active, p.Sources)
	if p.Uploaded > 0 {
		s += fmt.Sprintf(", %s uploaded", humanBytes(p.Uploaded))
	}
	return s
}

func percent(n, of int64) string {
	if of <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}
