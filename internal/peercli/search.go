package peercli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
)

func searchCmd(g *globals) *cobra.Command {
	var (
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "search WORDS...",
		Short: "Search the overlay by keywords (file names and audio tags)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext()
			defer stop()
			q := strings.Join(args, " ")
			hits, res, err := runSearch(ctx, g, apitype.SearchRequest{Query: q, Limit: limit})
			if err != nil {
				return explain(err)
			}
			if asJSON {
				if hits == nil {
					hits = []apitype.HitJSON{} // "results": [], not null
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				err := enc.Encode(struct {
					Query      string            `json:"query"`
					Supernodes int               `json:"supernodes_searched"`
					Partial    bool              `json:"partial"`
					Results    []apitype.HitJSON `json:"results"`
				}{q, res.Supernodes, res.Partial, hits})
				if err == nil && len(hits) == 0 {
					return exitError{5} // as in table mode: a script tells "nothing" by the code
				}
				return err
			}
			if len(hits) == 0 {
				fmt.Fprintf(os.Stderr, "No results for %q (%s searched).\n", q, counted(res.Supernodes, "supernode"))
				return exitError{5}
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tSOURCES\tCONTENT ID")
			for _, h := range hits {
				name := h.Name
				if h.Tags != nil && h.Tags.Title != "" && !strings.Contains(strings.ToLower(name), strings.ToLower(h.Tags.Title)) {
					name += "  [" + strings.TrimSpace(h.Tags.Artist+" - "+h.Tags.Title) + "]"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", name, humanBytes(h.Size), len(h.Sources), h.ContentID)
			}
			tw.Flush()
			note := ""
			if res.Partial {
				note = ", some did not answer in time"
			}
			fmt.Fprintf(os.Stderr, "%s from %s%s. Download with: peer get CONTENT_ID\n", counted(len(hits), "result"), counted(res.Supernodes, "supernode"), note)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print results as JSON")
	cmd.Flags().IntVar(&limit, "limit", 100, "most results per supernode")
	return cmd
}

// runSearch collects a search's hits grouped by content ID, best first.
func runSearch(ctx context.Context, g *globals, req apitype.SearchRequest) ([]apitype.HitJSON, apitype.SearchResult, error) {
	c := localapi.NewClient(g.dataDir)
	var all []apitype.HitJSON
	res, err := c.Search(ctx, req, func(h []apitype.HitJSON) { all = append(all, h...) })
	if err != nil {
		return nil, res, err
	}
	return groupHits(all), res, nil
}

func groupHits(hits []apitype.HitJSON) []apitype.HitJSON {
	at := map[string]int{}
	var out []apitype.HitJSON
	for _, h := range hits {
		i, ok := at[h.ContentID]
		if !ok {
			at[h.ContentID] = len(out)
			out = append(out, h)
			continue
		}
		o := &out[i]
		o.Score = max(o.Score, h.Score)
		for _, s := range h.Sources {
			if !slices.ContainsFunc(o.Sources, func(x apitype.SourceJSON) bool { return x.PeerID == s.PeerID }) {
				o.Sources = append(o.Sources, s)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b apitype.HitJSON) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(len(b.Sources), len(a.Sources))
	})
	return out
}

// humanBytes is n in binary units, "1.5 MiB".
func humanBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// counted is n and the noun, in the plural unless n is 1.
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
