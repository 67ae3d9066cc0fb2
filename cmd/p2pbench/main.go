// Command p2pbench measures overlay designs against each other.
package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/compare"
	"github.com/supernet-p2p/supernet/internal/cli"
)

func main() {
	root := &cobra.Command{Use: "p2pbench", Short: "Measure overlay designs"}
	root.AddCommand(compareCmd(), leavesCmd(), probeCmd())
	os.Exit(cli.Main(root, os.Args[1:], os.Stderr))
}

func compareCmd() *cobra.Command {
	var (
		peers      []int
		designs    []string
		queries    int
		duration   time.Duration
		seed       uint64
		seeds      int
		csvPath    string
		plotDir    string
		plotFormat string
		opts       compare.Options
		absent     float64
		perSN, nbr int
		progress   bool
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run one workload on the supernode overlay, query flooding, a central directory and a DHT",
		Long: `Run the same workload (Zipf-popular files, keyword queries, some for files
that exist nowhere, peer churn, the central server dying and 30% of the
supernodes dying) on each design, for each number of peers, over an in-memory
network with modelled latency and bandwidth, and print what each cost and found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, d := range designs {
				if !contains(compare.Designs, d) {
					return fmt.Errorf("--designs: no design %q (have %s)", d, strings.Join(compare.Designs, ", "))
				}
			}
			if plotFormat != "svg" && plotFormat != "png" {
				return fmt.Errorf("--plot-format: %q is neither svg nor png", plotFormat)
			}
			if seeds < 1 {
				return fmt.Errorf("--seeds: %d; at least 1", seeds)
			}
			opts.PerSupernode, opts.Neighbours = perSN, nbr
			if progress {
				opts.Progress = os.Stderr
			}
			setMemoryLimit()
			var all []compare.Result
			for _, n := range peers {
				if n < 10 {
					return fmt.Errorf("--peers: %d is too few (at least 10)", n)
				}
				if opts.QUIC && n > 1000 {
					return fmt.Errorf("--peers: %d over QUIC is a socket per node; at most 1000", n)
				}
				mode := "simulated"
				if opts.QUIC {
					mode = "real time over QUIC on loopback"
				}
				var runs [][]compare.Result
				for k := range uint64(seeds) {
					w := compare.Workload{Peers: n, Queries: queries, Duration: duration, Seed: seed + k, AbsentShare: absent}
					start := time.Now()
					res, err := compare.Run(w, opts, designs...)
					if err != nil {
						return err
					}
					fmt.Printf("\n%d peers, %d queries over %v (%s), seed %d, took %v\n\n", n, queries, duration, mode, w.Seed, time.Since(start).Round(time.Second))
					printTable(os.Stdout, res)
					all = append(all, res...)
					runs = append(runs, res)
				}
				if seeds > 1 {
					fmt.Printf("\n%d peers, ", n)
					printIntervals(os.Stdout, runs)
				}
			}
			if csvPath != "" {
				f, err := os.Create(csvPath)
				if err != nil {
					return err
				}
				if err := writeCSV(f, all); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Printf("\nwrote %s\n", csvPath)
			}
			if plotDir != "" {
				if err := os.MkdirAll(plotDir, 0o755); err != nil {
					return err
				}
				files, err := writePlots(plotDir, plotFormat, all)
				if err != nil {
					return fmt.Errorf("plots: %w", err)
				}
				fmt.Printf("wrote %s\n", strings.Join(files, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&peers, "peers", []int{100, 1000, 10000, 100000}, "numbers of peers to run, comma-separated")
	f.StringSliceVar(&designs, "designs", compare.Designs, "designs to run")
	f.IntVar(&queries, "queries", 500, "queries per run")
	f.DurationVar(&duration, "duration", 20*time.Minute, "simulated length of each run")
	f.Uint64Var(&seed, "seed", 1, "seed of the workload and the network")
	f.IntVar(&seeds, "seeds", 1, "runs per number of peers, with seeds from --seed up; over more than one, means with 95% intervals follow")
	f.Float64Var(&absent, "absent", 0.2, "share of queries for files that exist nowhere")
	f.IntVar(&opts.FloodDegree, "flood-degree", 4, "neighbours of a flooding peer")
	f.IntVar(&opts.FloodTTL, "flood-ttl", 7, "TTL of a flooded query")
	f.IntVar(&perSN, "per-supernode", 100, "peers per supernode")
	f.IntVar(&nbr, "neighbours", 8, "links per supernode")
	f.DurationVar(&opts.Probe, "probe", 0, "how often a leaf pings each of its supernodes (default the peer's, 500ms)")
	f.Float64Var(&opts.LeafPings, "leaf-pings", 0, "pings a second a supernode asks all its leaves together to stay under (default the supernode's, 30)")
	f.Float64Var(&opts.SummaryFP, "summary-fp", 0, "false positive rate one-hop summaries are sized for (default the supernode's, 0.01)")
	f.DurationVar(&opts.Gossip, "gossip", 0, "the supernodes' gossip interval, with the member timeout in its default ratio (default theirs, 1s)")
	f.DurationVar(&opts.Stabilize, "dht-stabilize", 0, "how often a DHT peer runs Chord's stabilisation (default 30s)")
	f.BoolVar(&opts.MultiHop, "multi-hop", false, "route the overlay's queries hop by hop through attenuated summaries, the oldest way, instead of by the keyword ring")
	f.BoolVar(&opts.OneHop, "one-hop", false, "route the overlay's queries by one-hop summaries (every supernode holds a filter of every other's index) instead of the keyword ring")
	f.BoolVar(&opts.QUIC, "quic", false, "run over real QUIC links on loopback, in real time, instead of the simulated network (a few hundred peers at most; set --duration)")
	f.BoolVar(&progress, "progress", false, "report each design's build and each simulated minute on stderr")
	f.StringVar(&csvPath, "csv", "", "also write every figure to this CSV file")
	f.StringVar(&plotDir, "plots", "", "also draw messages, recall and success plots into this folder")
	f.StringVar(&plotFormat, "plot-format", "svg", "svg or png")
	return cmd
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func printTable(w io.Writer, res []compare.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "design\tmsgs/query\tp99\tbytes/query\tp99\trecall\tsuccess\tfirst hit p50\tp99\tlast hit p50\tbusiest msgs/s\tB/s\tshare\tstate mean\tmax\tupkeep/node msgs/s\tB/s\t")
	for _, r := range res {
		um, ub := r.UpkeepPerNode()
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%.0f\t%.3f\t%.3f\t%v\t%v\t%v\t%.1f\t%.0f\t%.2f%%\t%.1f\t%d\t%.2f\t%.0f\t\n",
			r.Design, r.MsgsMean, r.MsgsP99, r.BytesMean, r.BytesP99, r.Recall, r.Success,
			ms(r.FirstP50), ms(r.FirstP99), ms(r.LastP50), r.BusiestMsgsPerSec, r.BusiestBytesPerSec, 100*r.BusiestShare, r.StateMean, r.StateMax, um, ub)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "upkeep B/s per serving node\tnodes\t")
	for _, k := range compare.UpkeepKinds {
		fmt.Fprintf(tw, "%s\t", k)
	}
	fmt.Fprintln(tw)
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%d\t", r.Design, r.ServingNodes)
		for _, k := range compare.UpkeepKinds {
			fmt.Fprintf(tw, "%.0f\t", r.PerNodePerSec(r.UpkeepKindBytes[k]))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	win := time.Minute
	if len(res) > 0 {
		win = res[0].Window
	}
	fmt.Fprintf(tw, "design\tfailure\tat\tsuccess before (%v)\tduring (%v)\tafter (%v)\n", 3*win, win, 3*win)
	for _, r := range res {
		for _, f := range r.Failures {
			what := f.What
			if !f.Applies {
				what += " (not part of this design)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", r.Design, what, f.At.Round(time.Second), pct(f.Before), pct(f.During), pct(f.After))
		}
	}
	tw.Flush()
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func pct(x float64) string {
	if x < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

func writeCSV(w io.Writer, res []compare.Result) error {
	c := csv.NewWriter(w)
	c.Write([]string{"design", "peers", "queries", "answerable", "msgs_mean", "msgs_p99", "bytes_mean", "bytes_p99",
		"recall", "success", "first_hit_p50_ms", "first_hit_p99_ms", "last_hit_p50_ms", "busiest_msgs", "busiest_share",
		"state_mean", "state_max", "upkeep_msgs", "upkeep_bytes", "busiest_msgs_per_s", "busiest_bytes_per_s",
		"serving_nodes", "upkeep_msgs_per_node_s", "upkeep_bytes_per_node_s",
		"upkeep_bytes_other", "upkeep_bytes_liveness", "upkeep_bytes_members", "upkeep_bytes_summaries", "upkeep_bytes_links",
		// Success rates around the failures, empty when no query fell in the window.
		"central_dies_before", "central_dies_during", "central_dies_after",
		"supernodes_die_before", "supernodes_die_during", "supernodes_die_after"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	d := func(x time.Duration) string { return f(float64(x) / float64(time.Millisecond)) }
	rate := func(x float64) string {
		if x < 0 {
			return ""
		}
		return f(x)
	}
	kinds := func(r compare.Result) []string {
		var out []string
		for _, k := range compare.UpkeepKinds {
			out = append(out, strconv.FormatUint(r.UpkeepKindBytes[k], 10))
		}
		return out
	}
	for _, r := range res {
		um, ub := r.UpkeepPerNode()
		var fails []string
		for _, fr := range r.Failures {
			fails = append(fails, rate(fr.Before), rate(fr.During), rate(fr.After))
		}
		c.Write(append(append([]string{r.Design, strconv.Itoa(r.Peers), strconv.Itoa(r.Queries), strconv.Itoa(r.Answerable),
			f(r.MsgsMean), f(r.MsgsP99), f(r.BytesMean), f(r.BytesP99), f(r.Recall), f(r.Success),
			d(r.FirstP50), d(r.FirstP99), d(r.LastP50), strconv.FormatUint(r.BusiestMsgs, 10), f(r.BusiestShare),
			f(r.StateMean), strconv.Itoa(r.StateMax), strconv.FormatUint(r.UpkeepMsgs, 10), strconv.FormatUint(r.UpkeepBytes, 10),
			f(r.BusiestMsgsPerSec), f(r.BusiestBytesPerSec), strconv.Itoa(r.ServingNodes), f(um), f(ub)}, kinds(r)...), fails...))
	}
	c.Flush()
	return c.Error()
}
