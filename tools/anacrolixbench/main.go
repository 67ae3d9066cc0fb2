// Command anacrolixbench runs the swarm of `peer bench swarm` with
// github.com/anacrolix/torrent instead of the project's peers: one seeder and N
// downloaders on loopback in this process, with the same file size, piece
// size, rate limits and report, so the two can be compared on one machine.
//
// It is a reference harness in a module of its own, so the project's module
// never depends on anacrolix; it is not part of the project's tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "anacrolixbench:", err)
		os.Exit(1)
	}
}

// intList is a flag of comma-separated counts, as `-n 4,16,48`.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		*l = append(*l, n)
	}
	return nil
}

func run() error {
	n := intList{16}
	fs := flag.NewFlagSet("anacrolixbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: anacrolixbench [flags]\n\n"+
			"Runs a seeder and N downloaders of github.com/anacrolix/torrent on loopback in this\n"+
			"process, with the upload and download limits given, and prints what `peer bench swarm`\n"+
			"prints for the project's swarm. Rates are in MB/s (10^6 bytes).\n\n")
		fs.PrintDefaults()
	}
	fs.Var(&n, "n", "downloaders; several values run one swarm each (e.g. -n 4,16,48)")
	fs.Var(&n, "downloaders", "the same as -n")
	sizeMiB := fs.Int64("size-mib", 64, "file size in MiB")
	pieceKiB := fs.Int64("piece-kib", 0, "piece size in KiB (0: the project's piece size for the file)")
	srcUp := fs.Float64("source-up", 20, "seeder upload limit, MB/s")
	up := fs.Float64("up", 10, "each downloader's upload limit, MB/s")
	down := fs.Float64("down", 0, "each downloader's download limit, MB/s (0: unlimited)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on a swarm after this long")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	logLevel := fs.String("log-level", "error", "log level of the torrent clients (debug, info, warn, error)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal the run winds down and removes its files; a
	// second one ends the process at once.
	go func() { <-ctx.Done(); stop() }()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
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
		cfg := Config{
			Downloaders: count, FileSize: *sizeMiB << 20, PieceSize: *pieceKiB << 10,
			SourceUp: int64(*srcUp * 1e6), PeerUp: int64(*up * 1e6), PeerDown: int64(*down * 1e6),
			Timeout: *timeout, Seed: uint64(count), Log: log,
		}
		res, err := Run(ctx, cfg)
		if err != nil {
			return fmt.Errorf("swarm of %d: %w", count, err)
		}
		res.Print(os.Stdout)
		fmt.Println()
	}
	return nil
}
