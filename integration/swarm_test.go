package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// fastChoking runs the tit-for-tat rounds of a daemon in test time.
func fastChoking(c *peer.Config) {
	c.UnchokeInterval = 200 * time.Millisecond
	c.OptimisticInterval = 600 * time.Millisecond
}

// Eight downloaders fetch one file from one first source at once. All end
// byte-identical, and the downloaders, not the source, carry most of the
// copies: the source's upload is capped so that it alone could not serve them
// in time, and it sends each piece about once.
func TestSwarmEightDownloaders(t *testing.T) {
	const size = 8 << 20 // 32 pieces
	sn := startSupernode(t)
	data := randomBytes(21, size)
	src := startPeer(t, sn, "src", map[string][]byte{"swarm test.bin": data}, fastChoking,
		func(c *peer.Config) { c.UploadRate = 2e6 })
	var getters []*peer.Daemon
	for i := range 8 {
		getters = append(getters, startPeer(t, sn, fmt.Sprintf("g%d", i), nil, fastChoking))
	}
	id := findOne(t, getters[0], "swarm test", 10*time.Second).ID

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, len(getters))
	last := make([]apitype.Progress, len(getters))
	for i, g := range getters {
		wg.Go(func() {
			_, errs[i] = g.Get(ctx, id, filepath.Join(dir, fmt.Sprint(i)), func(p apitype.Progress) { last[i] = p })
		})
	}
	wg.Wait()
	var peersUp int64
	for i, g := range getters {
		if errs[i] != nil {
			t.Fatalf("downloader %d: %v", i, errs[i])
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("downloader %d: file differs (%v)", i, err)
		}
		if last[i].Have != last[i].Pieces || last[i].Pieces != size/(256<<10) {
			t.Errorf("downloader %d ended with %d of %d pieces", i, last[i].Have, last[i].Pieces)
		}
		peersUp += g.Status().Uploaded
	}
	copies := float64(src.Status().Uploaded) / size
	t.Logf("first source sent %.2f copies, the downloaders %.2f", copies, float64(peersUp)/size)
	// Served by the source alone, the eight copies would have come from it.
	if copies > 2 {
		t.Errorf("the first source sent %.2f copies of the file; a swarm should need about one", copies)
	}
	if peersUp < 6*size {
		t.Errorf("the downloaders uploaded %.2f copies to each other; at least 6 of the 8 should come from them", float64(peersUp)/size)
	}
}

// A finished download keeps serving its file until the file changes or goes;
// then the peer stops offering it, and downloads go on from the other sources.
func TestFinishedDownloadStopsServingWhenFileGoes(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(3, 12<<20)
	a := startPeer(t, sn, "a", map[string][]byte{"x.bin": data})
	b := startPeer(t, sn, "b", nil)
	c := startPeer(t, sn, "c", nil)
	id := findOne(t, b, "x", 10*time.Second).ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	outB := filepath.Join(t.TempDir(), "x.bin")
	if _, err := b.Get(ctx, id, outB, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, raceSlowdown*10*time.Second, "b to show as a second source", func() bool {
		hits, _ := search(t, c, "x")
		return len(hits) == 1 && len(hits[0].Sources) == 2
	})
	if err := os.Remove(outB); err != nil {
		t.Fatal(err)
	}
	outC := filepath.Join(t.TempDir(), "x.bin")
	if _, err := c.Get(ctx, id, outC, nil); err != nil {
		t.Fatalf("download with one source's file gone: %v", err)
	}
	got, err := os.ReadFile(outC)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file differs (%v)", err)
	}
	// b found out when c asked it, and withdrew the file from the index.
	eventually(t, raceSlowdown*10*time.Second, "b to withdraw the file it no longer has", func() bool {
		hits, _ := search(t, a, "x")
		if len(hits) != 1 {
			return false
		}
		for _, s := range hits[0].Sources {
			if s.Peer == b.ID() {
				return false
			}
		}
		return true
	})
}

// progressJSON is one line of `peer get --json`.
type progressJSON struct {
	State    string `json:"state"`
	Path     string `json:"path"`
	Pieces   int    `json:"pieces"`
	Have     int    `json:"pieces_verified"`
	Resumed  int    `json:"pieces_resumed"`
	Sources  int    `json:"sources"`
	Active   int    `json:"active_sources"`
	Verified int64  `json:"verified_bytes"`
	Error    string `json:"error"`
}

// A downloading daemon killed (SIGKILL) half way resumes when started again:
// every piece it had verified counts, none is fetched again, and the file ends
// byte-identical. The real binaries run, as a user would run them.
func TestSwarmResumeAfterKill(t *testing.T) {
	l := newLab(t)
	target, _ := l.supernode("sn")
	const size = 32 << 20 // 128 pieces
	data := randomBytes(31, size)
	share := filepath.Join(l.root, "share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "Killed Halfway.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	src := l.daemon("src", share, target, "--up-rate", "4")
	l.waitAttached(src)
	getter := l.daemon("getter", "", target)
	l.waitAttached(getter)
	var cid string
	pollUntil(t, 15*time.Second, "the file in the index", func() (bool, string) {
		r := l.peer(getter.dataDir, "search", "--json", "killed halfway")
		var s searchJSON
		if json.Unmarshal([]byte(r.stdout), &s) == nil && len(s.Results) == 1 {
			cid = s.Results[0].ContentID
			return true, ""
		}
		return false, r.String()
	})
	out := filepath.Join(l.root, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	// First run: kill the daemon once half the pieces are verified.
	ctx, cancel := context.WithTimeout(context.Background(), lifetime(t))
	defer cancel()
	get := command(ctx, childEnv(), l.peerBin, "--data-dir", getter.dataDir, "get", cid, "-o", out, "--json")
	stdout, err := get.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var getErr lockedBuffer
	get.Stderr = &getErr
	if err := get.Start(); err != nil {
		t.Fatal(err)
	}
	atKill := -1
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var p progressJSON
		if json.Unmarshal(sc.Bytes(), &p) != nil || p.Pieces == 0 {
			continue
		}
		if p.State == "done" {
			t.Fatal("the download finished before the daemon was killed")
		}
		if atKill < 0 && p.Have >= p.Pieces/2 {
			atKill = p.Have
			getter.proc.mayExit = true
			if err := getter.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	get.Wait()
	<-getter.proc.done
	if atKill < 0 {
		t.Fatalf("the download never got half way: %s", getErr.String())
	}
	if get.ProcessState.Success() {
		t.Fatal("peer get exited 0 though its daemon was killed")
	}
	t.Logf("killed the daemon with %d of %d pieces verified; peer get said: %s", atKill, size/(256<<10), strings.TrimSpace(getErr.String()))

	// Second run, in a new daemon on the same data directory.
	getter = l.daemon("getter", "", target)
	l.waitAttached(getter)
	r := runBinary(t, 2*time.Minute, nil, l.peerBin, "--data-dir", getter.dataDir, "get", cid, "-o", out, "--json")
	if r.code != 0 {
		t.Fatalf("resumed get: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last progressJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.State != "done" {
		t.Fatalf("last line of get --json: %v\n%s", err, r)
	}
	if last.Resumed < atKill {
		t.Errorf("resumed with %d pieces verified, but %d were verified when the daemon was killed", last.Resumed, atKill)
	}
	got, err := os.ReadFile(last.Path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed file differs (%v)", err)
	}
	st := l.waitAttached(getter)
	if want := int64(last.Pieces-last.Resumed) * (256 << 10); st.Downloaded != want {
		t.Errorf("the second run verified %d bytes; with %d of %d pieces resumed it should need %d", st.Downloaded, last.Resumed, last.Pieces, want)
	}
	t.Logf("resumed with %d pieces, fetched the other %d", last.Resumed, last.Pieces-last.Resumed)
}

// A peer on a swarm stream that breaks the protocol is told why, and loses only
// that stream: the same link, and the peer's other swarms, go on.
func TestSwarmProtocolErrorClosesOnlyThatStream(t *testing.T) {
	sn := startSupernode(t)
	data := randomBytes(41, 1<<20)
	src := startPeer(t, sn, "src", map[string][]byte{"good.bin": data})
	g := startPeer(t, sn, "g", nil)
	cid := findOne(t, g, "good", 10*time.Second).ID

	id, _ := protocol.GenerateIdentity()
	n, err := transport.New(transport.Config{Identity: id, Conn: loopbackConn(t), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l, _, err := n.Dial(context.Background(), src.Addr().String(), src.ID(), &protocol.Hello{Role: protocol.RoleTransfer, MinVersion: 1, MaxVersion: protocol.MaxVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(nil)
	open := func() (*quic.Stream, *bufio.Reader) {
		s, err := l.Conn().OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := protocol.WriteMessage(s, &protocol.Join{ID: cid}); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(s)
		if m, err := protocol.ReadMessage(br, nil); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*protocol.Meta); !ok {
			t.Fatalf("join answered with %s, want meta", m.Type())
		}
		return s, br
	}
	for _, bad := range []protocol.Message{
		&protocol.Have{Piece: 0},                                  // before the have-map
		&protocol.Bitfield{Bits: []byte{0xff}},                    // 4 pieces need 1 byte with 4 spare bits clear
		&protocol.Request{Piece: 0, Offset: 100, Length: 1 << 15}, // more than a block
	} {
		s, br := open()
		if _, ok := bad.(*protocol.Have); !ok {
			if _, ok := bad.(*protocol.Bitfield); !ok {
				protocol.WriteMessage(s, &protocol.Bitfield{Bits: []byte{0}})
			}
		}
		if err := protocol.WriteMessage(s, bad); err != nil {
			t.Fatal(err)
		}
		var got *protocol.Error
		for got == nil {
			m, err := protocol.ReadMessage(br, nil)
			if err != nil {
				t.Fatalf("after %s: %v, want an error message first", bad.Type(), err)
			}
			got, _ = m.(*protocol.Error)
		}
		if !errors.Is(got.AsError(), protocol.ErrBadRequest) {
			t.Fatalf("after %s: %v, want a bad request", bad.Type(), got.AsError())
		}
		t.Logf("%s: %s", bad.Type(), got.Message)
	}
	// The link still works: a well-behaved stream on it gets the have-map.
	s, br := open()
	protocol.WriteMessage(s, &protocol.Bitfield{Bits: []byte{0}})
	if m, err := protocol.ReadMessage(br, nil); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*protocol.Bitfield); !ok {
		t.Fatalf("first frame after meta: %s, want bitfield", m.Type())
	}
	// And others still download.
	out := filepath.Join(t.TempDir(), "good.bin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.Get(ctx, cid, out, nil); err != nil {
		t.Fatal(err)
	}
}
