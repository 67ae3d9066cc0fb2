package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/supernet-p2p/supernet/internal/leafload"
)

func leavesCmd() *cobra.Command {
	var r leavesRun
	cmd := &cobra.Command{
		Use:   "leaves",
		Short: "Attach thousands of light leaves to one supernode process and measure what it holds",
		Long: `Start a supernode as its own process on loopback, attach --leaves light leaves
to it from this process (each with its own key, UDP socket and loopback address, a
real QUIC connection and hello, --files published files), and measure the
supernode's memory per leaf, its CPU while the leaves idle, and search latency
under that load: from the leaves, and from a few more leaves in a process of
their own, which the fleet's own scheduling does not slow. Then kill it (SIGKILL), start it again on the same address
and data directory, and time how long until every leaf is attached again (the
attach storm), with the supernode's peak memory during it.

Each leaf pings its supernode every --ping (a peer's probe interval), or as
seldom as the supernode asks, and, by a peer's own rules, drops a link that
stayed silent too long and dials again with a peer's backoff.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if r.leaves < 1 {
				return fmt.Errorf("--leaves: %d is too few", r.leaves)
			}
			if r.queries < 0 || r.queryRate <= 0 {
				return fmt.Errorf("--queries must not be negative and --query-rate must be above 0")
			}
			return runLeaves(cmd.Context(), r)
		},
	}
	f := cmd.Flags()
	f.IntVar(&r.leaves, "leaves", 10000, "leaves to attach")
	f.IntVar(&r.files, "files", 10, "files each leaf publishes")
	f.Float64Var(&r.rate, "rate", 500, "first attachments started per second (0: all at once)")
	f.IntVar(&r.queries, "queries", 2000, "searches to time while the leaves are attached")
	f.Float64Var(&r.queryRate, "query-rate", 100, "searches per second, each from another leaf")
	f.StringVar(&r.bin, "supernode-bin", "", "supernode binary (default: build ./cmd/supernode with go build)")
	f.StringVar(&r.keep, "keep-logs", "", "copy the supernode's log to this file")
	f.DurationVar(&r.settle, "settle", 10*time.Second, "wait after the last attach before measuring memory")
	f.DurationVar(&r.idle, "idle", 30*time.Second, "how long to measure the supernode's CPU while the leaves idle")
	f.DurationVar(&r.storm, "storm-timeout", 2*time.Minute, "longest wait for every leaf to attach again after the restart")
	f.Uint64Var(&r.seed, "seed", 1, "seed of the file names and the search words")
	f.StringArrayVar(&r.snArgs, "supernode-arg", nil, "one more argument for the supernode, e.g. --supernode-arg=--leaf-pings=1e9 (repeatable)")
	f.DurationVar(&r.ping, "ping", leafload.DefaultPingInterval, "how often each leaf pings its supernode, as a peer does (-1s: never; then only QUIC's keep-alives hold the link, and a dead supernode shows by its idle timeout, 60 s on a leaf's link)")
	return cmd
}

// leavesRun is one run of the leaves command, from its flags.
type leavesRun struct {
	leaves, files, queries int
	rate, queryRate        float64
	bin, keep              string
	settle, idle, storm    time.Duration
	seed                   uint64
	ping                   time.Duration
	snArgs                 []string
}

// snProcess is the supernode under load.
type snProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	id   string
}

var listeningRE = regexp.MustCompile(`supernode (\S+) listening on udp (\S+)`)

// startSupernode starts bin and waits for it to say where it listens.
func startSupernode(bin string, args []string, log io.Writer) (*snProcess, error) {
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stderr, cmd.Stdout = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &snProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case p.id = <-found:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("supernode exited at start: %v", cmd.ProcessState)
	case <-time.After(30 * time.Second):
		p.kill()
		return nil, errors.New("supernode did not say it was listening within 30 s")
	}
}

func (p *snProcess) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *snProcess) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// procMem is VmRSS and VmHWM (peak) of pid, in bytes.
func procMem(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// procCPU is the user and system time pid has used. Linux counts it in
// ticks of 1/100 s on every platform Go runs on.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces: fields count from after it.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// freeLoopbackPort is a UDP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func buildSupernode(dir string) (string, error) {
	out := filepath.Join(dir, "supernode")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/supernode")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/supernode (run from the repository, or pass --supernode-bin): %w", err)
	}
	return out, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func runLeaves(ctx context.Context, r leavesRun) error {
	if ctx == nil {
		ctx = context.Background()
	}
	dir, err := os.MkdirTemp("", "p2pbench-leaves-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := r.bin
	if bin == "" {
		fmt.Println("building the supernode...")
		if bin, err = buildSupernode(dir); err != nil {
			return err
		}
	}
	logPath := filepath.Join(dir, "supernode.log")
	if r.keep != "" {
		logPath = r.keep
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--listen", addr, "--data-dir", filepath.Join(dir, "sn"), "--alt-listen", "127.0.0.1:0",
		"--max-leaves", strconv.Itoa(r.leaves + r.leaves/10 + 10), "--leaf-limit", "-1"}
	args = append(args, r.snArgs...)
	sn, err := startSupernode(bin, args, logFile)
	if err != nil {
		return err
	}
	defer func() { sn.stop() }()
	pid := sn.cmd.Process.Pid
	time.Sleep(2 * time.Second) // its start-up work done
	rss0, _, err := procMem(pid)
	if err != nil {
		return err
	}
	fmt.Printf("supernode %s on %s (pid %d): %s RSS with no leaves\n", sn.id[:10], addr, pid, mib(rss0))

	fleet, err := leafload.Start(leafload.Config{Target: sn.id + "@" + addr, Leaves: r.leaves, Files: r.files,
		Seed: r.seed, PingInterval: r.ping, Log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)}, r.rate)
	if err != nil {
		return err
	}
	defer fleet.Close()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = fleet.WaitAttached(wctx, r.leaves)
	cancel()
	if err != nil {
		return err
	}
	made, failed := fleet.Attaches()
	fmt.Printf("%d leaves attached in %v (%d attachments, %d failed dials)\n", r.leaves, time.Since(start).Round(time.Millisecond), made, failed)

	time.Sleep(r.settle)
	rss, peak, err := procMem(pid)
	if err != nil {
		return err
	}
	perLeaf := float64(rss-rss0) / float64(r.leaves)
	cpu0, err := procCPU(pid)
	if err != nil {
		return err
	}
	own0, _ := procCPU(os.Getpid())
	time.Sleep(r.idle)
	cpu1, err := procCPU(pid)
	if err != nil {
		return err
	}
	own1, _ := procCPU(os.Getpid())
	idleShare := (cpu1 - cpu0).Seconds() / r.idle.Seconds()
	ownIdleShare := (own1 - own0).Seconds() / r.idle.Seconds()

	// Searches, each from another leaf, for one of the words in the names;
	// then as many from a few leaves in a process of their own, which do
	// not share the fleet's scheduler and collector.
	fleetSearch := timeSearches(ctx, fleet, r.queries, r.queryRate, r.seed, func(q int) int { return q * 7919 })
	var probe searchTimes
	if r.queries > 0 {
		probe, err = runProbe(ctx, sn.id+"@"+addr, r)
		if err != nil {
			probe.firstErr, probe.failed = err, r.queries
		}
	}

	// The storm: SIGKILL, start again at once on the same address and data.
	attachedBefore := fleet.Attached()
	madeBefore, _ := fleet.Attaches()
	killed := time.Now()
	sn.kill()
	sn, err = startSupernode(bin, args, logFile)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	restarted := time.Now()
	pid = sn.cmd.Process.Pid
	ownStorm0, _ := procCPU(os.Getpid())
	// Every leaf notices the dead link, then attaches again.
	var stormPeak int64
	var firstBack time.Time
	sctx, cancel := context.WithTimeout(ctx, r.storm)
	stormErr := func() error {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if _, p, err := procMem(pid); err == nil {
				stormPeak = max(stormPeak, p)
			}
			made, _ := fleet.Attaches()
			if made > madeBefore && firstBack.IsZero() {
				firstBack = time.Now()
			}
			if made-madeBefore >= int64(attachedBefore) && fleet.Attached() >= r.leaves {
				return nil
			}
			select {
			case <-t.C:
			case <-sctx.Done():
				return fmt.Errorf("%d of %d leaves attached again: %w", made-madeBefore, attachedBefore, sctx.Err())
			}
		}
	}()
	cancel()
	stormDone := time.Now()
	_, failedAfter := fleet.Attaches()
	// Where the storm's time went: the new supernode's CPU and this
	// process's (the leaves'), which share the machine's cores.
	stormCPU, _ := procCPU(pid)
	ownStorm1, _ := procCPU(os.Getpid())
	stormSecs := stormDone.Sub(restarted).Seconds()
	if _, p, err := procMem(pid); err == nil {
		stormPeak = max(stormPeak, p)
	}

	fmt.Printf("\n%d leaves, %d files each, pinging every %v or as the supernode asks, on one supernode process\n", r.leaves, r.files, r.ping)
	fmt.Printf("supernode %s\n\n", strings.Join(args[4:], " "))
	fmt.Printf("%-44s %12s   %s\n", "figure", "measured", "target")
	fmt.Printf("%-44s %12s   %s\n", "supernode RSS, no leaves", mib(rss0), "")
	fmt.Printf("%-44s %12s   %s\n", "supernode RSS, all attached", mib(rss), fmt.Sprintf("(peak %s)", mib(peak)))
	fmt.Printf("%-44s %9.1f KiB   <= 50 KiB\n", "RSS per idle leaf", perLeaf/1024)
	fmt.Printf("%-44s %11.1f%%   <= 10%% of one core\n", fmt.Sprintf("CPU while idle (over %v)", r.idle), 100*idleShare)
	fmt.Printf("%-44s %11.1f%%   %s\n", "  the leaves' process meanwhile", 100*ownIdleShare, "")
	fleetSearch.print("search", r.queries)
	probe.print("search from its own process", r.queries)
	fmt.Printf("%-44s %12s   %s\n", "restart: kill to listening again", restarted.Sub(killed).Round(time.Millisecond), "")
	if stormErr != nil {
		fmt.Printf("%-44s %12s   %v\n", "restart: all attached again", "not reached", stormErr)
	} else {
		fmt.Printf("%-44s %12s   <= 20 s\n", "restart: all attached again (from the start)", stormDone.Sub(restarted).Round(time.Millisecond))
		fmt.Printf("%-44s %12s   %s\n", "  of which: until the first is back", firstBack.Sub(restarted).Round(time.Millisecond), "")
		fmt.Printf("%-44s %12s   %s\n", "  of which: first to last attach", stormDone.Sub(firstBack).Round(time.Millisecond), "")
	}
	fmt.Printf("%-44s %11.1f%%   %s\n", "restart: supernode CPU until all were back", 100*stormCPU.Seconds()/stormSecs, "of one core")
	fmt.Printf("%-44s %11.1f%%   %s\n", "  the leaves' process meanwhile", 100*(ownStorm1-ownStorm0).Seconds()/stormSecs, "")
	fmt.Printf("%-44s %12s   < 1 GiB\n", "restart: supernode peak RSS", mib(stormPeak))
	fmt.Printf("%-44s %12d   %s\n", "restart: failed dials", failedAfter-failed, "")
	kinds := fleet.Failures()
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		fmt.Printf("  %-42s %12d   %s\n", k, kinds[k], "(all phases)")
	}
	if err := fleet.FirstOther(); err != nil {
		fmt.Printf("  %-42s %12s   %v\n", "first of the others", "", err)
	}
	return stormErr
}

// searchTimes are the latencies of timed searches, sorted, and the failures.
type searchTimes struct {
	lat      []time.Duration
	failed   int
	firstErr error
}

// timeSearches sends queries searches at rate a second, the q-th from leaf
// leaf(q), each for one of the words in the file names.
func timeSearches(ctx context.Context, fleet *leafload.Fleet, queries int, rate float64, seed uint64, leaf func(q int) int) searchTimes {
	rnd := rand.New(rand.NewPCG(seed, 0x5ea4c))
	var st searchTimes
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for q := range queries {
		<-tick.C
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := fleet.Search(sctx, leaf(q), leafload.Words[rnd.IntN(len(leafload.Words))])
		cancel()
		if err != nil {
			if st.failed++; st.firstErr == nil {
				st.firstErr = err
			}
			continue
		}
		st.lat = append(st.lat, d)
	}
	leafload.SortDurations(st.lat)
	return st
}

func (st searchTimes) print(what string, queries int) {
	if len(st.lat) > 0 {
		lat := st.lat
		fmt.Printf("%-44s %12s   %s\n", fmt.Sprintf("%s p50 (%d of %d answered)", what, len(lat), queries),
			lat[len(lat)/2].Round(10*time.Microsecond), "")
		fmt.Printf("%-44s %12s   <= 5 ms\n", what+" p99", leafload.Percentile(lat, 99).Round(10*time.Microsecond))
		fmt.Printf("%-44s %12s   %s\n", what+" max", lat[len(lat)-1].Round(10*time.Microsecond), "")
	}
	if st.failed > 0 {
		fmt.Printf("%-44s %12d   (first: %v)\n", what+": failed", st.failed, st.firstErr)
	}
}

// runProbe runs this program's leaves-probe against target and reads the
// latencies it prints, one a line in nanoseconds.
func runProbe(ctx context.Context, target string, r leavesRun) (searchTimes, error) {
	exe, err := os.Executable()
	if err != nil {
		return searchTimes{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "leaves-probe", "--target", target, "--queries", strconv.Itoa(r.queries),
		"--query-rate", strconv.FormatFloat(r.queryRate, 'g', -1, 64), "--seed", strconv.FormatUint(r.seed, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return searchTimes{}, fmt.Errorf("leaves-probe: %w", err)
	}
	var st searchTimes
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "failed "); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			st.failed = n
			if _, msg, ok := strings.Cut(rest, " "); ok {
				st.firstErr = errors.New(msg)
			}
			continue
		}
		ns, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return searchTimes{}, fmt.Errorf("leaves-probe printed %q", line)
		}
		st.lat = append(st.lat, time.Duration(ns))
	}
	leafload.SortDurations(st.lat)
	return st, nil
}

// probeCmd is a few leaves in a process of their own that time searches, so
// the figure is the supernode's and the network's, not the fleet's own
// scheduling: `leaves` runs it. Each leaf searches 10 times a second at
// most, under the rate a supernode allows one leaf (20 a second).
func probeCmd() *cobra.Command {
	var target string
	var queries int
	var rate float64
	var seed uint64
	cmd := &cobra.Command{
		Use:    "leaves-probe",
		Short:  "A few leaves that time searches (run by leaves)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if queries < 1 || rate <= 0 {
				return fmt.Errorf("--queries must be at least 1 and --query-rate above 0")
			}
			// 127.11.0.0/16: the fleet's leaves are in 127.10.0.0/16.
			leaves := int(math.Ceil(rate / 10))
			fleet, err := leafload.Start(leafload.Config{Target: target, Leaves: leaves, Hosts: 11, Seed: seed,
				PingInterval: leafload.DefaultPingInterval, Log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)}, 0)
			if err != nil {
				return err
			}
			defer fleet.Close()
			wctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			err = fleet.WaitAttached(wctx, leaves)
			cancel()
			if err != nil {
				return fmt.Errorf("%w; failed dials by kind %v, the first other: %v", err, fleet.Failures(), fleet.FirstOther())
			}
			st := timeSearches(cmd.Context(), fleet, queries, rate, seed, func(q int) int { return q })
			for _, d := range st.lat {
				fmt.Println(int64(d))
			}
			if st.failed > 0 {
				fmt.Printf("failed %d %v\n", st.failed, st.firstErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "the supernode, as peerid@host:port")
	f.IntVar(&queries, "queries", 2000, "searches to time")
	f.Float64Var(&rate, "query-rate", 100, "searches a second")
	f.Uint64Var(&seed, "seed", 1, "seed of the search words")
	return cmd
}
