package integration

// These tests run the real `supernode` and `peer` binaries the way a user types
// them: daemons as child processes on 127.0.0.1, the CLI as one process per
// command, and checks on exit codes, stdout and stderr. The binaries are built
// once per test binary run, on first use, so tests that do not need them do not
// pay for the build.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/content/contenttest"
	"github.com/supernet-p2p/supernet/internal/freeport"
	"github.com/supernet-p2p/supernet/protocol"
)

const module = "github.com/supernet-p2p/supernet"

// built holds the binaries, built once by binaries.
var built struct {
	once      sync.Once
	dir       string
	supernode string
	peer      string
	demo      string
	relay     string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaries builds the commands (supernode, peer, demo, relay) on first use and
// returns the paths of the first two; built has the others.
// A failed build fails the test: these tests exist to run the real binaries.
func binaries(t *testing.T) (supernodeBin, peerBin string) {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "snbin")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator),
			module+"/cmd/supernode", module+"/cmd/peer", module+"/cmd/demo", module+"/cmd/relay")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.supernode = filepath.Join(dir, "supernode")
		built.peer = filepath.Join(dir, "peer")
		built.demo = filepath.Join(dir, "demo")
		built.relay = filepath.Join(dir, "relay")
	})
	if built.err != nil {
		t.Fatalf("building the binaries: %v", built.err)
	}
	return built.supernode, built.peer
}

// lockedBuffer is a bytes.Buffer that a child's output goroutine and the test
// can use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// childEnv is the test's environment without the variables that pick data
// directories, so only what a test sets on purpose reaches a child.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEER_DATA_DIR=") && !strings.HasPrefix(kv, "SUPERNODE_DATA_DIR=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// lifetime bounds a child's life: two minutes, or less if the test's own
// deadline comes sooner, so children are stopped (and the test fails with their
// logs) before `go test -timeout` kills the test binary without cleanups.
func lifetime(t *testing.T) time.Duration {
	d := 2 * time.Minute
	if dl, ok := t.Deadline(); ok {
		d = min(d, max(time.Until(dl)-2*stopGrace, time.Second))
	}
	return d
}

// command makes an exec.Cmd that is sent SIGTERM when ctx ends and SIGKILL
// stopGrace later.
func command(ctx context.Context, env []string, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	return cmd
}

// process is a long-running child: a supernode or a peer daemon.
type process struct {
	name   string
	cmd    *exec.Cmd
	stderr lockedBuffer
	done   chan struct{} // closed once the child has exited
	// mayExit marks a child whose exit before cleanup is expected.
	mayExit bool
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the child now with SIGTERM (SIGKILL after 10 s) and waits.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.mayExit = true
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	if !p.cmd.ProcessState.Success() {
		t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.name, p.cmd.ProcessState)
	}
}

// startProcess starts a child whose stderr is kept and logged if the test fails.
// When the test ends the child gets SIGTERM, then SIGKILL after stopGrace; it
// must exit with status 0 on SIGTERM, as a daemon stopped with Ctrl-C should.
func startProcess(t *testing.T, name string, bin string, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lifetime(t))
	p := &process{name: name, done: make(chan struct{})}
	p.cmd = command(ctx, childEnv(), bin, args...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		early := p.exited()
		cancel()
		<-p.done // bounded: the child is killed stopGrace after SIGTERM
		st := p.cmd.ProcessState
		switch {
		case t.Failed():
		case early && !p.mayExit:
			t.Errorf("%s exited during the test: %v", name, st)
		case !early && !st.Success():
			t.Errorf("%s did not exit cleanly on SIGTERM: %v", name, st)
		}
		if t.Failed() {
			t.Logf("%s (%v) stderr:\n%s", name, st, p.stderr.String())
		}
	})
	return p
}

// result is what one CLI invocation did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runBinary runs a command to completion within timeout and returns its exit
// code and output. extraEnv is added to the child's environment.
func runBinary(t *testing.T, timeout time.Duration, extraEnv []string, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, lifetime(t)))
	defer cancel()
	var stdout, stderr lockedBuffer
	cmd := command(ctx, childEnv(extraEnv...), bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v\n%s", filepath.Base(bin), strings.Join(args, " "), timeout, r)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	return r
}

// shortTempDir is a temporary directory with a short path: a control socket
// inside it must fit the 108 bytes of a unix socket address.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before any child starts, so it runs after they are stopped.
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freeUDPAddr is a loopback address free for a supernode to bind, also
// between its kill and its restart (see freeport.Loopback).
func freeUDPAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.Loopback(t)))
}

// pollUntil calls cond every 50 ms, at most 2400 times, until it returns true
// or within has passed; state describes the last attempt for the failure
// message. The CLI tests stretch their waits by raceSlowdown too: the
// binaries are built without the race detector, but they share the machine
// with the tests that run under it.
func pollUntil(t *testing.T, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	state := ""
	for i := 0; i < 2400; i++ {
		var ok bool
		if ok, state = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last attempt:\n%s", within, what, state)
}

// lab runs binaries in one short temporary directory.
type lab struct {
	t                     *testing.T
	root                  string
	supernodeBin, peerBin string
	op                    *operator // admits each supernode before its first start
}

func newLab(t *testing.T) *lab {
	sn, pe := binaries(t)
	root := shortTempDir(t)
	return &lab{t: t, root: root, supernodeBin: sn, peerBin: pe, op: newOperator(t, sn, root)}
}

// peer runs `peer --data-dir DIR ARGS...` to completion.
func (l *lab) peer(dataDir string, args ...string) result {
	l.t.Helper()
	return runBinary(l.t, 20*time.Second, nil, l.peerBin, append([]string{"--data-dir", dataDir}, args...)...)
}

var listeningRE = regexp.MustCompile(`supernode (\S+) listening on udp (\S+)`)

// supernode starts a supernode on a free loopback port and waits until its
// socket is bound; it returns the target "peerid@host:port" and the address.
func (l *lab) supernode(name string, join ...string) (target, addr string) {
	l.t.Helper()
	target, addr, _ = l.supernodeWith(name, nil, join...)
	return target, addr
}

// supernodeWith is supernode with extra flags; it returns the process too.
func (l *lab) supernodeWith(name string, extra []string, join ...string) (target, addr string, proc *process) {
	t := l.t
	t.Helper()
	dataDir := filepath.Join(l.root, name)
	if _, err := os.Stat(filepath.Join(dataDir, protocol.CertFile)); err != nil {
		l.op.admit(dataDir)
	}
	// The free port may be taken between our probe and the supernode's bind:
	// try a few ports.
	for attempt := 0; attempt < 5; attempt++ {
		addr = freeUDPAddr(t)
		args := append([]string{"--listen", addr, "--data-dir", dataDir}, extra...)
		for _, j := range join {
			args = append(args, "--join", j)
		}
		p := startProcess(t, name, l.supernodeBin, args...)
		var m []string
		pollUntil(t, raceSlowdown*10*time.Second, name+" to listen", func() (bool, string) {
			m = listeningRE.FindStringSubmatch(p.stderr.String())
			return m != nil || p.exited(), p.stderr.String()
		})
		if m != nil {
			if m[2] != addr {
				t.Fatalf("%s says it listens on %s, asked for %s", name, m[2], addr)
			}
			return m[1] + "@" + addr, addr, p
		}
		if !strings.Contains(p.stderr.String(), "address already in use") {
			t.Fatalf("%s exited at start: %s", name, p.stderr.String())
		}
		p.mayExit = true
	}
	t.Fatalf("%s: no free port after 5 attempts", name)
	return "", "", nil
}

// daemon is a running `peer up`.
type daemon struct {
	name, dataDir string
	proc          *process
}

// daemon starts `peer up` for name, sharing share (if not empty), attached to
// supernode, with extra flags, and waits until its control socket answers.
func (l *lab) daemon(name, share, supernode string, extra ...string) daemon {
	t := l.t
	t.Helper()
	d := daemon{name: name, dataDir: filepath.Join(l.root, name)}
	args := []string{"--data-dir", d.dataDir, "up", "--name", name, "--supernode", supernode, "--listen", "127.0.0.1:0"}
	if share != "" {
		args = append(args, "--share", share)
	}
	args = append(args, extra...)
	d.proc = startProcess(t, "peer "+name, l.peerBin, args...)
	pollUntil(t, raceSlowdown*15*time.Second, name+"'s control socket", func() (bool, string) {
		if d.proc.exited() {
			t.Fatalf("peer %s exited at start: %s", name, d.proc.stderr.String())
		}
		r := l.peer(d.dataDir, "status", "--json")
		return r.code == 0, r.String()
	})
	return d
}

// statusJSON is what `peer status --json` prints.
type statusJSON struct {
	PeerID    string `json:"peer_id"`
	Name      string `json:"name"`
	LocalAddr string `json:"local_addr"`
	Supernode struct {
		Addr      string   `json:"addr"`
		PeerID    string   `json:"peer_id"`
		Connected bool     `json:"connected"`
		Observed  string   `json:"observed_addr"`
		LastError string   `json:"last_error"`
		NAT       string   `json:"nat"`
		Mapping   string   `json:"mapping"`
		Public    bool     `json:"public"`
		Relay     string   `json:"relay"`
		Proven    []string `json:"proven_addrs"`
	} `json:"supernode"`
	Shared []struct {
		ContentID string `json:"content_id"`
		Path      string `json:"path"`
		Size      int64  `json:"size"`
	} `json:"shared"`
	Downloaded int64 `json:"downloaded_bytes"`
	Downloads  []struct {
		Verified int64 `json:"verified_bytes"`
	} `json:"downloads"`
	Links []struct {
		PeerID string `json:"peer_id"`
		Path   string `json:"path"`
		Plan   string `json:"plan"`
		Remote string `json:"remote_addr"`
	} `json:"links"`
	Attempts []attemptJSON `json:"attempts"`
}

// attemptJSON is a connection attempt, as `peer connect --json` and status print it.
type attemptJSON struct {
	PeerID  string        `json:"peer_id"`
	Plan    string        `json:"plan"`
	Path    string        `json:"path"`
	Took    time.Duration `json:"took_ns"`
	Upgrade bool          `json:"upgrade"`
	Err     string        `json:"error"`
	At      time.Time     `json:"at"`
}

// waitAttached polls `peer status --json` until the daemon is attached.
func (l *lab) waitAttached(d daemon) statusJSON {
	t := l.t
	t.Helper()
	var st statusJSON
	pollUntil(t, raceSlowdown*15*time.Second, d.name+" to attach to its supernode", func() (bool, string) {
		if d.proc.exited() {
			t.Fatalf("peer %s exited: %s", d.name, d.proc.stderr.String())
		}
		r := l.peer(d.dataDir, "status", "--json")
		if r.code != 0 {
			return false, r.String()
		}
		st = statusJSON{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, r)
		}
		return st.Supernode.Connected, r.String()
	})
	return st
}

// searchJSON is what `peer search --json` prints.
type searchJSON struct {
	Query      string `json:"query"`
	Supernodes int    `json:"supernodes_searched"`
	Partial    bool   `json:"partial"`
	Results    []struct {
		ContentID string `json:"content_id"`
		Name      string `json:"name"`
		Size      int64  `json:"size"`
		Sources   []struct {
			PeerID string   `json:"peer_id"`
			Name   string   `json:"name"`
			Addrs  []string `json:"addrs"`
		} `json:"sources"`
	} `json:"results"`
}

// TestCLISearchAndGet: two linked supernodes, alice sharing two songs on the
// first, bob on the second finding them by name and by tag, downloading them,
// and both looking at their status.
func TestCLISearchAndGet(t *testing.T) {
	t.Parallel()
	l := newLab(t)

	share := filepath.Join(l.root, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	const (
		beatles = "The Beatles - Hey Jude.mp3" // matches by name and by tag
		track   = "track07.mp3"                // matches by its title tag only
	)
	// The first spans three pieces, so the download is more than one request.
	if err := contenttest.WriteID3v2MP3(filepath.Join(share, beatles), "Hey Jude", "The Beatles", "Hey Jude", 600_000, 1); err != nil {
		t.Fatal(err)
	}
	if err := contenttest.WriteID3v2MP3(filepath.Join(share, track), "Hey Jude", "Wilson Pickett", "Hey Jude", 50_000, 2); err != nil {
		t.Fatal(err)
	}
	size := func(name string) int64 {
		fi, err := os.Stat(filepath.Join(share, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}

	sn1, sn1Addr := l.supernode("sn1")
	_, sn2Addr := l.supernode("sn2", sn1)
	alice := l.daemon("alice", share, sn1) // pinned: peerid@host:port
	bob := l.daemon("bob", "", sn2Addr)    // plain host:port
	aliceSt := l.waitAttached(alice)
	bobSt := l.waitAttached(bob)
	if bobSt.Supernode.Addr != sn2Addr {
		t.Errorf("bob is attached to %s, want %s", bobSt.Supernode.Addr, sn2Addr)
	}

	// Summaries travel between supernodes on their ticks: poll until bob sees
	// both songs, and both supernodes search (the second only once the first
	// holds its summary: a supernode asks no neighbour that has sent none).
	var sr searchJSON
	pollUntil(t, raceSlowdown*15*time.Second, "bob to find both songs through both supernodes", func() (bool, string) {
		r := l.peer(bob.dataDir, "search", "--json", "hey jude")
		if r.code != 0 {
			return false, r.String()
		}
		sr = searchJSON{}
		if err := json.Unmarshal([]byte(r.stdout), &sr); err != nil {
			t.Fatalf("search --json is not JSON: %v\n%s", err, r)
		}
		return len(sr.Results) == 2 && sr.Supernodes == 2, r.String()
	})

	t.Run("search json", func(t *testing.T) {
		if sr.Query != "hey jude" || sr.Supernodes != 2 || sr.Partial {
			t.Errorf("query %q, %d supernodes, partial %v; want \"hey jude\", 2, false", sr.Query, sr.Supernodes, sr.Partial)
		}
		for _, h := range sr.Results {
			if h.Name != beatles && h.Name != track {
				t.Errorf("unexpected result %q", h.Name)
				continue
			}
			if h.Size != size(h.Name) || len(h.ContentID) != 64 {
				t.Errorf("%s: size %d, content ID %q; want %d and 64 hex digits", h.Name, h.Size, h.ContentID, size(h.Name))
			}
			if len(h.Sources) != 1 || h.Sources[0].PeerID != aliceSt.PeerID || h.Sources[0].Name != "alice" || len(h.Sources[0].Addrs) == 0 {
				t.Errorf("%s: sources %+v, want alice (%s) with an address", h.Name, h.Sources, aliceSt.PeerID)
			}
		}
		// The field names are the interface scripts rely on.
		r := l.peer(bob.dataDir, "search", "--json", "hey jude")
		var raw struct {
			Results []map[string]json.RawMessage `json:"results"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || len(raw.Results) == 0 {
			t.Fatalf("search --json: %v\n%s", err, r)
		}
		for _, k := range []string{"content_id", "name", "size", "sources"} {
			if _, ok := raw.Results[0][k]; !ok {
				t.Errorf("search --json result has no %q: %s", k, r.stdout)
			}
		}
	})

	cid := map[string]string{}
	for _, h := range sr.Results {
		cid[h.Name] = h.ContentID
	}

	t.Run("search table", func(t *testing.T) {
		r := l.peer(bob.dataDir, "search", "hey", "jude")
		if r.code != 0 {
			t.Fatalf("peer search hey jude: %s", r)
		}
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("want a header and 2 rows:\n%s", r.stdout)
		}
		if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME SIZE SOURCES CONTENT ID" {
			t.Errorf("header %q", lines[0])
		}
		col := strings.Index(lines[0], "CONTENT ID")
		rows := map[string]string{}
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			id := f[len(f)-1]
			rows[id] = line
			if strings.Index(line, id) != col {
				t.Errorf("content ID not under its header:\n%s\n%s", lines[0], line)
			}
			if f[len(f)-2] != "1" {
				t.Errorf("want 1 source: %q", line)
			}
		}
		if row := rows[cid[beatles]]; !strings.HasPrefix(row, beatles+"  ") {
			t.Errorf("row for %s: %q", beatles, row)
		}
		// A hit by tag alone shows the tag that matched.
		if row := rows[cid[track]]; !strings.HasPrefix(row, track) || !strings.Contains(row, "[Wilson Pickett - Hey Jude]") {
			t.Errorf("row for %s: %q", track, row)
		}
		if !strings.Contains(r.stderr, "2 results from 2 supernodes") || !strings.Contains(r.stderr, "peer get CONTENT_ID") {
			t.Errorf("search summary on stderr: %q", r.stderr)
		}
	})

	t.Run("get into a folder", func(t *testing.T) {
		out := filepath.Join(l.root, "dl")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		r := l.peer(bob.dataDir, "get", cid[beatles], "-o", out)
		if r.code != 0 {
			t.Fatalf("peer get: %s", r)
		}
		sameFile(t, filepath.Join(out, beatles), filepath.Join(share, beatles))
		if !strings.Contains(r.stderr, "saved "+filepath.Join(out, beatles)) || !strings.Contains(r.stderr, "3 pieces verified") {
			t.Errorf("get stderr: %q", r.stderr)
		}
	})

	t.Run("get onto a file that exists", func(t *testing.T) {
		// Another song's file: refused before a byte moves, left as it was.
		target := filepath.Join(l.root, "dl", beatles)
		r := l.peer(bob.dataDir, "get", cid[track], "-o", target)
		if r.code != 13 || !strings.Contains(r.stderr, "--overwrite") {
			t.Errorf("get onto an existing file: want exit 13 naming --overwrite\n%s", r)
		}
		sameFile(t, target, filepath.Join(share, beatles))
		if left, _ := filepath.Glob(target + ".part*"); len(left) > 0 {
			t.Errorf("the refused download left %v", left)
		}
	})

	t.Run("get into a new folder named with a slash", func(t *testing.T) {
		out := filepath.Join(l.root, "new", "music") + "/"
		r := l.peer(bob.dataDir, "get", cid[track], "-o", out)
		if r.code != 0 {
			t.Fatalf("peer get -o %s: %s", out, r)
		}
		sameFile(t, filepath.Join(out, track), filepath.Join(share, track))
	})

	t.Run("PEER_DATA_DIR", func(t *testing.T) {
		// The environment variable stands in for --data-dir.
		env := []string{"PEER_DATA_DIR=" + bob.dataDir}
		out := filepath.Join(l.root, "second.mp3")
		r := runBinary(t, 20*time.Second, env, l.peerBin, "get", cid[track], "-o", out)
		if r.code != 0 {
			t.Fatalf("PEER_DATA_DIR=bob peer get: %s", r)
		}
		sameFile(t, out, filepath.Join(share, track))
		r = runBinary(t, 20*time.Second, env, l.peerBin, "status", "--json")
		var st statusJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.PeerID != bobSt.PeerID {
			t.Errorf("PEER_DATA_DIR=bob peer status --json: want bob's peer ID %s\n%s", bobSt.PeerID, r)
		}
		if want := size(beatles) + size(track); st.Downloaded < want {
			t.Errorf("bob downloaded %d bytes, want at least %d", st.Downloaded, want)
		}
	})

	t.Run("short IDs as status prints them", func(t *testing.T) {
		r := l.peer(bob.dataDir, "connect", aliceSt.PeerID[:10])
		if r.code != 0 || !strings.Contains(r.stdout, "linked to "+aliceSt.PeerID[:10]) {
			t.Errorf("connect by the short ID: %s", r)
		}
		out := filepath.Join(l.root, "third.mp3")
		if r := l.peer(bob.dataDir, "get", cid[track][:10], "-o", out); r.code != 0 {
			t.Errorf("get by a short content ID bob holds: %s", r)
		} else {
			sameFile(t, out, filepath.Join(share, track))
		}
		if r := l.peer(bob.dataDir, "get", "ffffffffff"); r.code != 2 || !strings.Contains(r.stderr, `no ID the daemon knows starts with "ffffffffff"`) {
			t.Errorf("get by a prefix nobody has: %s", r)
		}
	})

	t.Run("status", func(t *testing.T) {
		r := l.peer(alice.dataDir, "status")
		if r.code != 0 {
			t.Fatalf("peer status: %s", r)
		}
		want := []string{
			"Peer ID:", aliceSt.PeerID,
			"Name:", "alice",
			"Supernode:", sn1Addr, aliceSt.Supernode.PeerID[:10],
			"Address seen by supernode:", aliceSt.Supernode.Observed,
			"Sharing:", "2 files",
			"SHARED FILE", beatles, cid[beatles], track, cid[track],
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("peer status lacks %q:\n%s", w, r.stdout)
			}
		}
		if aliceSt.Supernode.Observed == "" || !strings.HasPrefix(aliceSt.Supernode.Observed, "127.0.0.1:") {
			t.Errorf("observed address %q, want 127.0.0.1:port", aliceSt.Supernode.Observed)
		}
		if len(aliceSt.Shared) != 2 {
			t.Errorf("status --json lists %d shared files, want 2", len(aliceSt.Shared))
		}
	})
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s differs from %s: %d bytes, want %d", got, want, len(g), len(w))
	}
}

// TestCLIUsage: every binary prints its version, and every flag or argument
// mistake is printed with a hint at --help and exits 2, without starting
// anything.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	sn, pe := binaries(t)
	bins := map[string]string{"supernode": sn, "peer": pe, "relay": built.relay}
	for name, bin := range bins {
		r := runBinary(t, 10*time.Second, nil, bin, "--version")
		if r.code != 0 || !strings.HasPrefix(r.stdout, name+" ") || !strings.Contains(r.stdout, " go1.") || r.stderr != "" {
			t.Errorf("%s --version: %s", name, r)
		}
	}
	dir := t.TempDir()
	cases := []struct {
		bin  string
		args []string
		want []string // on stderr
	}{
		{sn, []string{"--bogus"}, []string{"supernode: unknown flag: --bogus", "Run 'supernode --help' for usage."}},
		{sn, []string{"--listen", "nowhere", "--data-dir", dir}, []string{`--listen "nowhere": want host:port`, "Run 'supernode --help'"}},
		{sn, []string{"admit"}, []string{"accepts 1 arg(s), received 0", "Run 'supernode admit --help'"}},
		{sn, []string{"network", "bogus"}, []string{`unknown command "bogus" for "supernode network"`}},
		{built.relay, []string{"--bogus"}, []string{"relay: unknown flag: --bogus", "Run 'relay --help' for usage."}},
		{pe, []string{"--data-dir", dir, "bogus"}, []string{`peer: unknown command "bogus" for "peer"`, "Run 'peer --help'"}},
		{pe, []string{"--data-dir", dir, "get"}, []string{"accepts 1 arg(s), received 0", "Run 'peer get --help'"}},
		{pe, []string{"--data-dir", dir, "search", "--bogus", "x"}, []string{"unknown flag: --bogus", "Run 'peer search --help'"}},
		{pe, []string{"--data-dir", dir, "up", "--listen", "127.0.0.1:0"}, []string{"--supernode is required", "Run 'peer up --help'"}},
	}
	for _, tc := range cases {
		r := runBinary(t, 10*time.Second, nil, tc.bin, tc.args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%s %q: %s", filepath.Base(tc.bin), tc.args, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s %q: stderr lacks %q\n%s", filepath.Base(tc.bin), tc.args, w, r)
			}
		}
	}
}

// TestCLIErrors: each common mistake gives a clear message and the documented
// exit code (2 usage, 3 no daemon, 4 no supernode, 5 nothing found).
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	l := newLab(t)

	sn, _ := l.supernode("sn")
	carol := l.daemon("carol", "", sn)
	l.waitAttached(carol)
	// dave's supernode does not exist; his daemon keeps retrying in the background.
	dave := l.daemon("dave", "", freeUDPAddr(t))
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	const anyFailure = -1
	peer := func(dataDir string, args ...string) []string {
		return append([]string{l.peerBin, "--data-dir", dataDir}, args...)
	}
	cases := []struct {
		name string
		argv []string
		code int      // the exit code, or anyFailure
		want []string // on stderr
	}{
		{"status without a daemon", peer(filepath.Join(l.root, "nobody"), "status"),
			3, []string{"no peer daemon is running", "peer up"}},
		{"get a bad content ID", peer(carol.dataDir, "get", "not-a-hex-id"),
			2, []string{"content ID must be 64 hex digits"}},
		{"get the zero content ID", peer(carol.dataDir, "get", strings.Repeat("0", 64)),
			5, []string{"no source found"}},
		{"get an unknown content ID", peer(carol.dataDir, "get", strings.Repeat("ab", 32)),
			5, []string{"no source found", strings.Repeat("ab", 32)}},
		{"search without results", peer(carol.dataDir, "search", "zzzqqqnothing"),
			5, []string{`No results for "zzzqqqnothing"`}},
		{"search without a supernode", peer(dave.dataDir, "search", "x"),
			4, []string{"cannot reach a supernode"}},
		{"connect to a bad peer ID", peer(carol.dataDir, "connect", "not-a-peer"),
			2, []string{"peer ID must be 52 base32 characters", "peer connect --help"}},
		{"connect to a peer nobody knows", peer(carol.dataDir, "connect", protocol.PeerID{7}.String()),
			5, []string{"not found", "not attached here"}},
		{"up twice", peer(carol.dataDir, "up", "--supernode", sn, "--listen", "127.0.0.1:0"),
			anyFailure, []string{"already running"}},
		{"up without a supernode", peer(filepath.Join(l.root, "erin"), "up", "--listen", "127.0.0.1:0"),
			2, []string{"--supernode is required"}},
		{"up sharing a missing folder", peer(filepath.Join(l.root, "frank"), "up", "--supernode", sn,
			"--listen", "127.0.0.1:0", "--share", filepath.Join(l.root, "no-such-folder")),
			anyFailure, []string{"share folder", "no-such-folder", "no such file or directory"}},
		{"supernode on a busy port", []string{l.supernodeBin, "--listen", busy.LocalAddr().String(), "--data-dir", filepath.Join(l.root, "sn2")},
			anyFailure, []string{"listen " + busy.LocalAddr().String(), "address already in use"}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				// Ten seconds: dave's search gives up after a few.
				r := runBinary(t, 10*time.Second, nil, tc.argv[0], tc.argv[1:]...)
				if r.code == 0 || tc.code != anyFailure && r.code != tc.code {
					t.Errorf("exit %d, want %d (-1: any failure)\n%s", r.code, tc.code, r)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr lacks %q\n%s", w, r)
					}
				}
				// A failure is explained once, not as an empty "failed:" line too.
				if strings.Contains(r.stderr, "failed: \n") || r.stdout != "" {
					t.Errorf("stray output\n%s", r)
				}
			})
		}
	})

	// JSON without results says so as table mode does: "results": [] and 5.
	if r := l.peer(carol.dataDir, "search", "--json", "zzzqqqnothing"); r.code != 5 || !strings.Contains(r.stdout, `"results": []`) {
		t.Errorf("search --json without results:\n%s", r)
	}
	// The refused second `peer up` left the first daemon's socket alone.
	if r := l.peer(carol.dataDir, "status"); r.code != 0 {
		t.Errorf("carol's daemon stopped answering after a second `peer up`:\n%s", r)
	}
	// dave's daemon runs, but says it is not attached.
	if r := l.peer(dave.dataDir, "status"); r.code != 0 || !strings.Contains(r.stdout, "not attached") {
		t.Errorf("dave's status:\n%s", r)
	}
}

// The commands for users by name: up --user registers, lookup resolves,
// send delivers, inbox lists, and a sender the receiver did not accept is
// refused with a clear message.
func TestCLIUsersAndInbox(t *testing.T) {
	l := newLab(t)
	sn1, _ := l.supernode("sn1")
	sn2, _ := l.supernode("sn2", sn1)
	inbox := filepath.Join(l.root, "alice-inbox")
	alice := l.daemon("alice", "", sn1, "--user", "alice", "--inbox", inbox, "--inbox-from", "accepted", "--accept", "bob")
	bob := l.daemon("bob", "", sn2, "--user", "bob")
	carol := l.daemon("carol", "", sn2, "--user", "carol")
	for _, d := range []daemon{alice, bob, carol} {
		pollUntil(t, raceSlowdown*20*time.Second, d.name+" registered", func() (bool, string) {
			r := l.peer(d.dataDir, "status")
			return strings.Contains(r.stdout, "Username:") && strings.Contains(r.stdout, "registered (record"), r.String()
		})
	}
	st := l.peer(alice.dataDir, "status", "--json")
	var aliceSt statusJSON
	if err := json.Unmarshal([]byte(st.stdout), &aliceSt); err != nil {
		t.Fatal(err, st)
	}
	// The directory is eventually consistent: a record put while the two
	// supernodes were still swapping member lists reaches its second
	// replica with the next round.
	pollUntil(t, raceSlowdown*10*time.Second, "bob finding alice", func() (bool, string) {
		r := l.peer(bob.dataDir, "lookup", "alice")
		return r.code == 0 && strings.Contains(r.stdout, aliceSt.PeerID) && strings.Contains(r.stdout, "Supernode:"), r.String()
	})
	if r := l.peer(bob.dataDir, "lookup", "nobody"); r.code != 5 || !strings.Contains(r.stderr, "no such user") {
		t.Fatalf("lookup of an unknown user: %s", r)
	}
	// Usernames have one spelling: typed with capitals they are the same name.
	if r := l.peer(bob.dataDir, "lookup", "Alice"); r.code != 0 || !strings.Contains(r.stdout, aliceSt.PeerID) {
		t.Errorf("lookup Alice: %s", r)
	}
	if r := l.peer(bob.dataDir, "lookup", "al ice"); r.code != 2 || !strings.Contains(r.stderr, "only a-z") {
		t.Errorf("lookup of a name that cannot be one: %s", r)
	}
	file := filepath.Join(l.root, "letter.txt")
	if err := os.WriteFile(file, []byte("dear alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := l.peer(bob.dataDir, "send", "alice", file); r.code != 0 || !strings.Contains(r.stdout, `stored as "letter.txt"`) {
		t.Fatalf("send: %s", r)
	}
	if r := l.peer(carol.dataDir, "send", "alice", file); r.code == 0 || !strings.Contains(r.stderr, "accepted senders") ||
		strings.Contains(r.stderr, "forbidden: forbidden") {
		t.Fatalf("carol's send should be refused, saying so once: %s", r)
	}
	r := l.peer(alice.dataDir, "inbox")
	if r.code != 0 || !strings.Contains(r.stdout, "letter.txt") || !strings.Contains(r.stdout, "bob (") || !strings.Contains(r.stdout, "1 file in "+inbox) {
		t.Fatalf("inbox: %s", r)
	}
	if got, err := os.ReadFile(filepath.Join(inbox, "letter.txt")); err != nil || string(got) != "dear alice\n" {
		t.Fatalf("inbox file: %q, %v", got, err)
	}

	// Save as, by the rules of peer get; then delete.
	saved := filepath.Join(l.root, "saved") + "/"
	for _, want := range []string{"letter.txt", "letter (1).txt"} {
		r := l.peer(alice.dataDir, "inbox", "get", "letter.txt", "-o", saved)
		if got, err := os.ReadFile(filepath.Join(saved, want)); r.code != 0 || err != nil || string(got) != "dear alice\n" {
			t.Fatalf("inbox get, want %s: %v\n%s", want, err, r)
		}
	}
	if r := l.peer(alice.dataDir, "inbox", "get", "letter.txt", "-o", filepath.Join(saved, "letter.txt")); r.code != 13 {
		t.Errorf("inbox get onto a file that exists: %s", r)
	}
	for _, name := range []string{"../.inbox.json", "nope.txt", inbox + "/letter.txt"} {
		if r := l.peer(alice.dataDir, "inbox", "get", name, "-o", saved); r.code != 5 || !strings.Contains(r.stderr, "no such file in the inbox") {
			t.Errorf("inbox get %s: %s", name, r)
		}
	}
	if r := l.peer(alice.dataDir, "inbox", "rm", "letter.txt", "nope.txt"); r.code != 5 {
		t.Errorf("inbox rm of a listed and an unlisted name: %s", r)
	}
	if _, err := os.Stat(filepath.Join(inbox, "letter.txt")); err != nil {
		t.Errorf("a failed inbox rm deleted something: %v", err)
	}
	if r := l.peer(alice.dataDir, "inbox", "rm", "letter.txt"); r.code != 0 {
		t.Fatalf("inbox rm: %s", r)
	}
	if r := l.peer(alice.dataDir, "inbox"); r.code != 0 || !strings.Contains(r.stdout, "nothing has arrived") {
		t.Errorf("inbox after rm: %s", r)
	}
	if _, err := os.Stat(filepath.Join(inbox, "letter.txt")); !os.IsNotExist(err) {
		t.Errorf("inbox rm left the file: %v", err)
	}

	// The daemon's metrics on its control socket, as curl --unix-socket gets them.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(alice.dataDir, "peer.sock"))
	}}}
	resp, err := c.Get("http://peer/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "supernet_peer_inbox_files 0\n") || !strings.Contains(string(body), "supernet_peer_supernodes_attached ") {
		t.Errorf("/metrics on the control socket: %d\n%.1500s", resp.StatusCode, body)
	}
}

// TestCLIPromotion: a supernode binary with a leaf limit of 2 and three
// peer daemons that may lead at once promotes one; its status shows the
// supernode it runs, another peer moves to it, and once that peer leaves the
// promoted supernode steps down, which status shows too.
func TestCLIPromotion(t *testing.T) {
	l := newLab(t)
	sn, _, snProc := l.supernodeWith("sn", []string{"--leaf-limit", "2", "--promote-every", "1h"})
	lead := []string{"--attach", "1", "--lead-after", "1ms", "--lead-step-down", "3s"}
	var ds []daemon
	for _, name := range []string{"ann", "ben", "cy"} {
		d := l.daemon(name, "", sn, lead...)
		l.waitAttached(d)
		ds = append(ds, d)
	}
	var leader daemon
	var line string
	pollUntil(t, raceSlowdown*30*time.Second, "a peer leading a supernode", func() (bool, string) {
		for _, d := range ds {
			r := l.peer(d.dataDir, "status")
			for _, ln := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(ln, "Leading:") {
					leader, line = d, ln
					return true, r.String()
				}
			}
		}
		return false, snProc.stderr.String()
	})
	t.Logf("%s: %s", leader.name, strings.Join(strings.Fields(line), " "))
	pollUntil(t, raceSlowdown*10*time.Second, "the supernode logging the promotion", func() (bool, string) {
		log := snProc.stderr.String()
		return strings.Contains(log, "promoting a leaf") && strings.Contains(log, "leaf promoted to supernode"), log
	})
	// One of the other two was redirected to the new supernode.
	var moved daemon
	pollUntil(t, raceSlowdown*15*time.Second, "a peer on the new supernode", func() (bool, string) {
		for _, d := range ds {
			if d.name == leader.name {
				continue
			}
			if st := l.waitAttached(d); !strings.HasPrefix(sn, st.Supernode.PeerID+"@") {
				moved = d
				return true, ""
			}
		}
		return false, ""
	})
	moved.proc.stop(t)
	pollUntil(t, raceSlowdown*30*time.Second, "the promoted supernode stepping down", func() (bool, string) {
		r := l.peer(leader.dataDir, "status")
		if i := strings.Index(r.stdout, "Led:"); i >= 0 && strings.Contains(r.stdout, "stepped down") {
			line = strings.SplitN(r.stdout[i:], "\n", 2)[0]
			return true, ""
		}
		return false, r.String()
	})
	t.Logf("%s: %s", leader.name, strings.Join(strings.Fields(line), " "))
}

// TestCLIConfig: `peer up` keeps its flags in the data dir; `peer config`
// shows them; a bare `peer up` starts the same way, and a flag still wins.
func TestCLIConfig(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	sn, snAddr := l.supernode("sn")
	share := filepath.Join(l.root, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	d := l.daemon("dora", share, sn, "--attach", "1")
	l.waitAttached(d)
	d.proc.stop(t)

	r := l.peer(d.dataDir, "config")
	for _, w := range []string{"share = '" + share + "'", "supernode = ['" + sn + "']", "attach = 1 ", "name = 'dora'", "attach = 1"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("peer config lacks %q:\n%s", w, r)
		}
	}
	if !strings.Contains(r.stdout, "unchoke-slots = ") || !strings.Contains(r.stdout, "# default") {
		t.Errorf("peer config shows no defaults:\n%s", r)
	}

	// Bare: the kept settings; one flag changes the name and is kept too.
	d.proc = startProcess(t, "peer dora again", l.peerBin, "--data-dir", d.dataDir, "up", "--name", "dora2")
	st := l.waitAttached(d)
	if st.Supernode.Addr != snAddr || st.Name != "dora2" {
		t.Errorf("bare peer up: attached to %s as %q, want %s as dora2", st.Supernode.Addr, st.Name, snAddr)
	}
	if r := l.peer(d.dataDir, "config"); !strings.Contains(r.stdout, "name = 'dora2'") {
		t.Errorf("the new name was not kept:\n%s", r)
	}
	if r := l.peer(d.dataDir, "config", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"name":"share","value":"`+share+`","from":"set"`) {
		t.Errorf("peer config --json:\n%s", r)
	}
}

// TestCLIGetInterruptedAndDiskFull: Ctrl-C stops `peer get` with exit 7 and
// the same command resumes; a download onto a full disk fails at once with
// exit 9 and leaves nothing behind.
func TestCLIGetInterruptedAndDiskFull(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	share := filepath.Join(l.root, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := contenttest.WriteID3v2MP3(filepath.Join(share, "long song.mp3"), "Long Song", "Band", "Album", 6<<20, 3); err != nil {
		t.Fatal(err)
	}
	sn, _ := l.supernode("sn")
	alice := l.daemon("alice", share, sn)
	l.waitAttached(alice)
	bob := l.daemon("bob", "", sn, "--down-rate", "2") // 2 MB/s: about 3 s for the song
	l.waitAttached(bob)
	var cid string
	pollUntil(t, raceSlowdown*15*time.Second, "bob to find the song", func() (bool, string) {
		r := l.peer(bob.dataDir, "search", "--json", "long song")
		var sr searchJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sr) != nil || len(sr.Results) != 1 {
			return false, r.String()
		}
		cid = sr.Results[0].ContentID
		return true, ""
	})

	out := filepath.Join(l.root, "song.mp3")
	ctx, cancel := context.WithTimeout(context.Background(), lifetime(t))
	defer cancel()
	var stderr lockedBuffer
	get := command(ctx, childEnv(), l.peerBin, "--data-dir", bob.dataDir, "get", cid, "-o", out)
	get.Stderr = &stderr
	if err := get.Start(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, raceSlowdown*15*time.Second, "the download to be under way", func() (bool, string) {
		var st statusJSON
		r := l.peer(bob.dataDir, "status", "--json")
		json.Unmarshal([]byte(r.stdout), &st)
		return len(st.Downloads) == 1 && st.Downloads[0].Verified > 0, r.String()
	})
	get.Process.Signal(os.Interrupt)
	get.Wait()
	if code := get.ProcessState.ExitCode(); code != 7 || !strings.Contains(stderr.String(), "interrupted; run the same command again to resume") {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, stderr.String())
	}
	if r := l.peer(bob.dataDir, "get", cid, "-o", out); r.code != 0 || !strings.Contains(r.stderr, "pieces resumed") {
		t.Errorf("the same command again: %s", r)
	}
	sameFile(t, out, filepath.Join(share, "long song.mp3"))

	// A full disk: dora's downloads go to a tmpfs of 1 MiB, mounted in a
	// mount namespace of her daemon's own.
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	small := filepath.Join(l.root, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	dora := daemon{name: "dora", dataDir: filepath.Join(l.root, "dora")}
	dora.proc = startProcess(t, "peer dora", unshare, "-m", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs -o size=1m tmpfs "+small+" && exec "+l.peerBin+" --data-dir "+dora.dataDir+
			" up --name dora --supernode "+sn+" --listen 127.0.0.1:0 --web -")
	l.waitAttached(dora)
	r := l.peer(dora.dataDir, "get", cid, "-o", small+"/")
	if r.code != 9 || !strings.Contains(r.stderr, "disk is full") {
		t.Errorf("a download onto a full disk: %s", r)
	}
	// Seen from inside her namespace, where the tmpfs is.
	ls := exec.Command("nsenter", "-t", strconv.Itoa(dora.proc.cmd.Process.Pid), "-m", "ls", "-A", small)
	if b, err := ls.CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "" {
		t.Errorf("the failed download left %q (%v)", b, err)
	}
}
