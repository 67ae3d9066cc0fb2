package peercli

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/swarmbench"
	"github.com/supernet-p2p/supernet/peer"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the overlay on this machine",
	}
	cmd.AddCommand(benchSwarmCmd())
	return cmd
}

func benchSwarmCmd() *cobra.Command {
	var (
		n                 []int
		sizeMiB           int64
		srcUp, up, down   float64
		unchoke, optimist time.Duration
		slots             int
		timeout           time.Duration
		logLevel          string
		traceEvery        time.Duration
		cpuProfile        string
	)
	cmd := &cobra.Command{
		Use:   "swarm",
		Short: "Run a first source and N downloaders on loopback and compare with the bound",
		Long: "Starts a supernode, a first source sharing a random file and N downloading peers, all\n" +
			"on loopback in this process, with the upload and download limits given. Prints each\n" +
			"peer's completion time, the bound D = max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}, their\n" +
			"ratio, the copies of the file the first source sent and the client-server time N*F/u_s.\n" +
			"Rates are in MB/s (10^6 bytes); 0 means unlimited.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := cli.Logger(os.Stderr, logLevel, false)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			for _, count := range n {
				cfg := swarmbench.Config{
					Downloaders: count, FileSize: sizeMiB << 20,
					SourceUp: int64(srcUp * 1e6), PeerUp: int64(up * 1e6), PeerDown: int64(down * 1e6),
					UnchokeInterval: unchoke, OptimisticInterval: optimist, UnchokeSlots: slots,
					Timeout: timeout, Seed: uint64(count), Log: log,
				}
				if traceEvery > 0 {
					cfg.Trace, cfg.TraceEvery = os.Stdout, traceEvery
				}
				res, err := swarmbench.Run(ctx, cfg)
				if err != nil {
					return fmt.Errorf("swarm of %d: %w", count, err)
				}
				res.Print(os.Stdout)
				fmt.Println()
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&n, "downloaders", "n", []int{16}, "downloaders; several values run one swarm each (e.g. -n 4,16,48)")
	f.Int64Var(&sizeMiB, "size-mib", 64, "file size in MiB")
	f.Float64Var(&srcUp, "source-up", 20, "first source upload limit, MB/s")
	f.Float64Var(&up, "up", 10, "each downloader's upload limit, MB/s")
	f.Float64Var(&down, "down", 0, "each downloader's download limit, MB/s (0: unlimited)")
	daemon := peer.DefaultConfig()
	f.DurationVar(&unchoke, "unchoke-interval", time.Second, fmt.Sprintf("how often each peer picks whom to upload to (a daemon's default is %v)", daemon.UnchokeInterval))
	f.DurationVar(&optimist, "optimistic-interval", 3*time.Second, fmt.Sprintf("how often the optimistic unchoke moves on (a daemon's default is %v)", daemon.OptimisticInterval))
	f.IntVar(&slots, "slots", daemon.UnchokeSlots, "peers unchoked by rate, beside the optimistic one")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up on a swarm after this long")
	f.DurationVar(&traceEvery, "trace", 0, "print, at this interval while it runs, the swarm's rates, the downloaders uploading under half their limit (slow), the swarm links counted at both ends and the peers unchoked (0: off)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	f.StringVar(&logLevel, "log-level", "error", "log level of the peers and the supernode")
	return cmd
}
