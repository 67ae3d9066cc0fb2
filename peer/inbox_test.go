package peer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// These tests attack a peer's inbox as a hostile sender would: senders
// announce large files on many deliver streams and then send nothing, or
// trickle. The victim is a real daemon on loopback; attackers speak the wire
// protocol through their own transport nodes; honest senders are daemons.

// inboxPeer starts a daemon with no supernode that takes deliveries from
// anyone under lim. free, when set, makes the inbox's free-space query.
func inboxPeer(t testing.TB, lim InboxLimits, free func(dir string) func() (int64, error), opts ...func(*Config)) *Daemon {
	t.Helper()
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), Conn: pc, ControlSocket: "-", NoLead: true, InboxLimits: lim,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	if free != nil {
		d.inbox.free = free(d.inbox.dir)
	}
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background()) }()
	t.Cleanup(func() {
		d.Close()
		<-done
	})
	// Serving once it takes a connection: a Close before that would race
	// Serve's start.
	dialRaw(t, d).close()
	return d
}

// allocated sums the disk held by the files in dir, and by the deliveries in
// progress alone.
func allocated(dir string) (all, incoming int64, temps int) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		n := st.Blocks * 512
		all += n
		if strings.HasPrefix(e.Name(), incomingPrefix) {
			incoming += n
			temps++
		}
	}
	return all, incoming, temps
}

// fakeDisk is a file system of capacity bytes that holds only the inbox: its
// free space is the capacity less what the inbox's files hold on the real disk.
func fakeDisk(capacity int64) func(dir string) func() (int64, error) {
	return func(dir string) func() (int64, error) {
		return func() (int64, error) {
			all, _, _ := allocated(dir)
			return max(capacity-all, 0), nil
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// rawPeer speaks the wire protocol to a victim from a fresh identity.
type rawPeer struct {
	id   protocol.PeerID
	link *transport.Link
}

func dialRaw(t testing.TB, to *Daemon) *rawPeer {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node, err := transport.New(transport.Config{Identity: id, Conn: pc, Log: zerolog.Nop()})
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, _, err := node.Dial(ctx, to.Addr().String(), to.ID(), &protocol.Hello{Role: protocol.RoleTransfer})
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close(nil)
		node.Close()
	})
	return &rawPeer{id: id.ID, link: l}
}

// close hangs up, as an attacker that gives up does.
func (r *rawPeer) close() { r.link.Close(nil) }

// announce opens a deliver stream for size bytes and sends only the frame.
// The victim's answer arrives on the channel: nil for Delivered.
func (r *rawPeer) announce(ctx context.Context, name string, size int64) (*quic.Stream, <-chan error, error) {
	s, err := r.link.Conn().OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, err
	}
	sum := make([]byte, 32)
	if err := protocol.WriteMessage(s, &protocol.Deliver{Name: name, Size: size, SHA256: sum}); err != nil {
		s.CancelWrite(0)
		return nil, nil, err
	}
	answer := make(chan error, 1)
	go func() {
		m, err := protocol.ReadMessage(bufio.NewReader(s), nil)
		switch m := m.(type) {
		case *protocol.Error:
			err = m.AsError()
		case *protocol.Delivered:
		case nil:
			if err == nil {
				err = errors.New("no answer")
			}
		default:
			err = fmt.Errorf("answered with %s", m.Type())
		}
		s.CancelWrite(0)
		answer <- err
	}()
	return s, answer, nil
}

// wait polls cond every 10 ms until it holds, or fails the test.
func wait(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answers tallies what a victim answered an attacker's streams.
type answers struct {
	mu       sync.Mutex
	byStatus map[protocol.Status]int
	other    []string // answers that were not an Error frame
	messages []string
	stalled  []time.Duration // announce to timeout, for each stream aborted for stalling
}

func (a *answers) add(err error, took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var re *protocol.RemoteError
	if !errors.As(err, &re) {
		a.other = append(a.other, fmt.Sprint(err))
		return
	}
	a.byStatus[re.Code]++
	a.messages = append(a.messages, re.Message)
	if re.Code == protocol.StatusTimeout {
		a.stalled = append(a.stalled, took)
	}
}

func (a *answers) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.messages) + len(a.other)
}

func (a *answers) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.messages) == 0 {
		return ""
	}
	return a.messages[len(a.messages)-1]
}

func (a *answers) count(s protocol.Status) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byStatus[s]
}

// attack keeps width deliver streams of size bytes open on r, each stalled
// after its frame, and opens another whenever one is answered, until ctx ends
// or limit streams were opened. An answered stream is followed by a pause, so
// the attack outlasts a deadline without spinning the test's CPU.
func (r *rawPeer) attack(ctx context.Context, size int64, width, limit int, a *answers) (done <-chan struct{}) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var wg sync.WaitGroup
		defer wg.Wait()
		slots := make(chan struct{}, width)
		for i := 0; i < limit; i++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			start := time.Now()
			_, answer, err := r.announce(ctx, fmt.Sprintf("big-%d.iso", i), size)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case err := <-answer:
					if ctx.Err() == nil {
						a.add(err, time.Since(start))
					}
				case <-ctx.Done():
				}
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
				}
				<-slots
			}()
		}
	}()
	return finished
}

// peaks records the highest load seen while it runs.
type peaks struct {
	mu          sync.Mutex
	deliveries  int
	claimed     int64
	incoming    int64 // disk held by deliveries in progress
	sender      map[protocol.PeerID]senderLoad
	maxOfShare  float64 // claims over the share of free space they may have
	samples     int
	stop, ended chan struct{}
}

func watchInbox(d *Daemon) *peaks {
	p := &peaks{sender: make(map[protocol.PeerID]senderLoad), stop: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		for {
			u := d.inbox.load.usage()
			_, incoming, _ := allocated(d.inbox.dir)
			free, ferr := d.inbox.free()
			p.mu.Lock()
			p.samples++
			p.deliveries = max(p.deliveries, u.Deliveries)
			p.claimed = max(p.claimed, u.Claimed)
			p.incoming = max(p.incoming, incoming)
			if ferr == nil && u.Claimed > 0 {
				p.maxOfShare = max(p.maxOfShare, float64(u.Claimed)/(d.inbox.lim.FreeShare*float64(free+u.Ahead)))
			}
			for id, s := range u.Senders {
				m := p.sender[id]
				p.sender[id] = senderLoad{n: max(m.n, s.n), claimed: max(m.claimed, s.claimed)}
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *peaks) finish() {
	close(p.stop)
	<-p.ended
}

// sendTo delivers data, stored as name, from one daemon to another, the way
// Send does once the user is looked up.
func sendTo(ctx context.Context, t *testing.T, from, to *Daemon, name string, data []byte) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, fname, size, sum, err := openForSend(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := protocol.Source{Peer: to.ID(), Addrs: []string{to.Addr().String()}}
	stored, _, err := from.deliverFile(ctx, src, "victim", f, fname, size, sum)
	return stored, err
}

func randomData(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkStored fails unless the inbox holds data under name.
func checkStored(t *testing.T, d *Daemon, name string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(d.inbox.dir, name))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%s in the inbox differs from what was sent (%v)", name, err)
	}
}

// checkPrivate fails when a message to a sender names a local path.
func checkPrivate(t *testing.T, d *Daemon, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if strings.Contains(m, d.inbox.dir) || strings.Contains(m, incomingPrefix) || strings.Contains(m, d.cfg.DataDir) {
			t.Fatalf("a sender was told a local path: %q", m)
		}
	}
}

// One hostile sender opening stream after stream, each announcing a large
// file and sending nothing, holds no more than its caps (deliveries and bytes
// announced but not sent), holds at most a reservation step of disk per
// delivery, loses each stalled delivery at the deadline with nothing left on
// disk, and an honest sender's files are stored meanwhile.
func TestInboxStalledSenderHeldToItsCaps(t *testing.T) {
	const (
		senderBytes = 64 << 20
		bigSize     = 20 << 20 // three fit in senderBytes, a fourth does not
		smallSize   = 1 << 20  // the delivery count binds first
	)
	lim := InboxLimits{Deliveries: 16, SenderDeliveries: 4, SenderBytes: senderBytes, FreeShare: 0.5,
		StallTimeout: 3 * time.Second, StallHoldoff: time.Hour}
	victim := inboxPeer(t, lim, fakeDisk(1<<30))
	honest := inboxPeer(t, InboxLimits{}, nil)
	big, many := dialRaw(t, victim), dialRaw(t, victim)

	heapBefore := heapInuse()
	watch := watchInbox(victim)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bigAns, manyAns answers
	bigAns.byStatus, manyAns.byStatus = map[protocol.Status]int{}, map[protocol.Status]int{}
	bigDone := big.attack(ctx, bigSize, 12, 5000, &bigAns)
	manyDone := many.attack(ctx, smallSize, 12, 5000, &manyAns)

	wait(t, 10*time.Second, "the attackers' deliveries admitted", func() bool {
		u := victim.inbox.load.usage()
		return u.Deliveries == 7 && bigAns.count(protocol.StatusOverloaded) > 0 && manyAns.count(protocol.StatusOverloaded) > 0
	})
	u := victim.inbox.load.usage()
	if u.Senders[big.id].claimed != 3*bigSize || u.Senders[many.id].claimed != 4*smallSize {
		t.Fatalf("claims: big %d, many %d; want %d and %d", u.Senders[big.id].claimed, u.Senders[many.id].claimed, 3*bigSize, 4*smallSize)
	}
	heapDuring := heapInuse()

	// The honest sender is served while the attack goes on.
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	for i := range 3 {
		data := randomData(t, 2<<20+i)
		name := fmt.Sprintf("holiday-%d.jpg", i)
		stored, err := sendTo(sctx, t, honest, victim, name, data)
		if err != nil {
			t.Fatalf("honest delivery %d during the attack: %v", i, err)
		}
		checkStored(t, victim, stored, data)
	}

	// Every stalled delivery of the first round is cut off by the deadline.
	wait(t, 10*lim.StallTimeout, "stalled deliveries aborted", func() bool {
		return bigAns.count(protocol.StatusTimeout) >= 3 && manyAns.count(protocol.StatusTimeout) >= 4
	})
	// Announcing again at once gets the attackers nothing: they are held off.
	bigSeen, manySeen := bigAns.total(), manyAns.total()
	wait(t, 30*time.Second, "the attackers' next streams answered", func() bool {
		return bigAns.total() >= bigSeen+24 && manyAns.total() >= manySeen+24
	})
	if u := victim.inbox.load.usage(); u.Deliveries != 0 || u.HeldOff != 2 ||
		bigAns.count(protocol.StatusTimeout) != 3 || manyAns.count(protocol.StatusTimeout) != 4 {
		t.Fatalf("after the deadline the attackers got in again: %+v", u)
	}
	if m := bigAns.last(); !strings.Contains(m, "stalled") {
		t.Fatalf("a held-off sender was told %q", m)
	}
	cancel()
	<-bigDone
	<-manyDone
	big.close()
	many.close()
	wait(t, 10*time.Second, "claims given back and files removed", func() bool {
		u := victim.inbox.load.usage()
		_, _, temps := allocated(victim.inbox.dir)
		return u.Deliveries == 0 && u.Claimed == 0 && u.Ahead == 0 && len(u.Senders) == 0 && temps == 0
	})
	watch.finish()

	watch.mu.Lock()
	defer watch.mu.Unlock()
	pb, pm := watch.sender[big.id], watch.sender[many.id]
	t.Logf("big sender: at most %d deliveries, %d bytes claimed (cap %d); many sender: %d deliveries, %d bytes claimed",
		pb.n, pb.claimed, senderBytes, pm.n, pm.claimed)
	t.Logf("inbox: at most %d deliveries, %d bytes claimed (%.3f of the allowed share of free space), %d bytes of disk held by deliveries in progress; %d samples",
		watch.deliveries, watch.claimed, watch.maxOfShare, watch.incoming, watch.samples)
	t.Logf("heap in use: %d KiB before the attack, %d KiB during it", heapBefore>>10, heapDuring>>10)
	for _, who := range []struct {
		name string
		p    senderLoad
		ans  *answers
		max  int64
	}{{"big", pb, &bigAns, 3 * bigSize}, {"many", pm, &manyAns, 4 * smallSize}} {
		if who.p.n > lim.SenderDeliveries || who.p.claimed > who.max || who.p.claimed > senderBytes {
			t.Errorf("%s sender held %d deliveries and %d bytes; caps %d and %d", who.name, who.p.n, who.p.claimed, lim.SenderDeliveries, who.max)
		}
		who.ans.mu.Lock()
		t.Logf("%s sender's streams answered: %v; stalled ones cut off after %v", who.name, who.ans.byStatus, who.ans.stalled)
		if len(who.ans.other) > 0 {
			t.Errorf("%s sender got answers that were no error frame: %q", who.name, who.ans.other)
		}
		for s := range who.ans.byStatus {
			if s != protocol.StatusOverloaded && s != protocol.StatusTimeout {
				t.Errorf("%s sender was answered %s", who.name, s)
			}
		}
		for _, d := range who.ans.stalled {
			if d < lim.StallTimeout {
				t.Errorf("%s sender's stalled delivery was cut off after %s, before the %s deadline", who.name, d, lim.StallTimeout)
			}
		}
		checkPrivate(t, victim, who.ans.messages...)
		who.ans.mu.Unlock()
	}
	// The honest sender's three deliveries add at most one at a time.
	if watch.deliveries > 3+4+1 {
		t.Errorf("%d deliveries in progress at once", watch.deliveries)
	}
	if watch.maxOfShare > 1 {
		t.Errorf("claims reached %.3f of the share of free space they may have", watch.maxOfShare)
	}
	// Disk: a reservation step (or the whole file, when smaller) per attacker
	// delivery, and at most one honest file of 2 MiB (and a block).
	if held := int64(3*inboxStep + 4*smallSize + 2<<20 + 64<<10); watch.incoming > held {
		t.Errorf("deliveries in progress held %d bytes of disk, more than %d", watch.incoming, held)
	}
	if heapDuring > heapBefore+32<<20 {
		t.Errorf("heap grew from %d to %d KiB during the attack", heapBefore>>10, heapDuring>>10)
	}
	if u := victim.inbox.load.usage(); u.Aborted < 7 {
		t.Errorf("%d deliveries aborted for stalling, want at least 7", u.Aborted)
	}
}

// Many senders, each within its own caps, together claim no more than the
// share of free space deliveries in progress may have. A small honest file
// still fits beside them; a larger one is refused as overloaded at once, and
// is stored once the attackers are gone; a file larger than the share is
// refused as unavailable before the sender gets more than a flow-control
// window out.
func TestInboxShareOfFreeSpace(t *testing.T) {
	const (
		capacity = 400 << 20
		unit     = 48 << 20 // four fit in half the capacity, five do not
	)
	lim := InboxLimits{Deliveries: 16, SenderDeliveries: 4, SenderBytes: 512 << 20, FreeShare: 0.5,
		StallTimeout: time.Minute}
	victim := inboxPeer(t, lim, fakeDisk(capacity))
	honest := inboxPeer(t, InboxLimits{}, nil)
	watch := watchInbox(victim)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ans answers
	ans.byStatus = map[protocol.Status]int{}
	var sybils []*rawPeer
	// One stream at a time, each admitted (its first step reserved) or
	// refused before the next: a reservation under way is not yet in the free
	// space the next admission reads, which would make the count depend on
	// timing.
	for i := range 5 {
		r := dialRaw(t, victim)
		sybils = append(sybils, r)
		for j := range 2 {
			before, answered := victim.inbox.load.usage(), ans.total()
			start := time.Now()
			_, answer, err := r.announce(ctx, fmt.Sprintf("s%d-%d.iso", i, j), unit)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				select {
				case err := <-answer:
					ans.add(err, time.Since(start))
				case <-ctx.Done():
				}
			}()
			wait(t, 10*time.Second, "an attacker's delivery admitted or refused", func() bool {
				u := victim.inbox.load.usage()
				return ans.total() > answered || u.Deliveries > before.Deliveries && u.Ahead == int64(u.Deliveries)*inboxStep
			})
		}
	}
	if u := victim.inbox.load.usage(); u.Deliveries != 4 || ans.count(protocol.StatusOverloaded) != 6 {
		t.Fatalf("%d attackers' deliveries admitted, %d refused as overloaded; want 4 and 6", u.Deliveries, ans.count(protocol.StatusOverloaded))
	}
	u := victim.inbox.load.usage()
	free, _ := victim.inbox.free()
	if u.Claimed != 4*unit || float64(u.Claimed) > lim.FreeShare*float64(free+u.Ahead) {
		t.Fatalf("claims %d with %d bytes free and %d reserved ahead; want %d, within half", u.Claimed, free, u.Ahead, 4*unit)
	}

	small := randomData(t, 3<<20)
	stored, err := sendTo(ctx, t, honest, victim, "letter.pdf", small)
	if err != nil {
		t.Fatalf("a small honest delivery beside the attack: %v", err)
	}
	checkStored(t, victim, stored, small)

	large := randomData(t, 20<<20)
	_, err = sendTo(ctx, t, honest, victim, "film.mkv", large)
	if !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("a delivery that does not fit beside the attack: %v, want overloaded", err)
	}
	checkPrivate(t, victim, err.Error())

	// Larger than the share even of an idle inbox: refused before the body.
	r := dialRaw(t, victim)
	s, answer, err := r.announce(ctx, "huge.iso", 300<<20)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan int64, 1)
	go func() {
		var n int64
		buf := make([]byte, 64<<10)
		for n < 300<<20 {
			k, err := s.Write(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		pushed <- n
	}()
	select {
	case err := <-answer:
		if !errors.Is(err, protocol.ErrUnavailable) {
			t.Fatalf("a file larger than the share of free space: %v, want unavailable", err)
		}
		checkPrivate(t, victim, err.Error())
	case <-ctx.Done():
		t.Fatal("no answer to a file larger than the share of free space")
	}
	n := <-pushed
	t.Logf("a 300 MiB delivery refused as unavailable after the sender pushed %d KiB", n>>10)
	if n > 32<<20 {
		t.Errorf("the sender pushed %d bytes before the refusal stopped it", n)
	}

	for _, r := range sybils {
		r.close()
	}
	wait(t, 10*time.Second, "the attackers' claims given back", func() bool {
		return victim.inbox.load.usage().Deliveries == 0
	})
	stored, err = sendTo(ctx, t, honest, victim, "film.mkv", large)
	if err != nil {
		t.Fatalf("the larger delivery once the attackers left: %v", err)
	}
	checkStored(t, victim, stored, large)
	watch.finish()
	wait(t, 10*time.Second, "no delivery in progress", func() bool {
		_, _, temps := allocated(victim.inbox.dir)
		return victim.inbox.load.usage().Claimed == 0 && temps == 0
	})
	watch.mu.Lock()
	defer watch.mu.Unlock()
	t.Logf("five senders: at most %d bytes claimed together, %.3f of the share of free space; %d bytes of disk held by deliveries in progress",
		watch.claimed, watch.maxOfShare, watch.incoming)
	if watch.maxOfShare > 1 {
		t.Errorf("claims reached %.3f of the share of free space", watch.maxOfShare)
	}
	ans.mu.Lock()
	checkPrivate(t, victim, ans.messages...)
	ans.mu.Unlock()
}

// A sender that trickles bytes, enough to keep the stream from going silent
// but below the minimum rate, is cut off too.
func TestInboxTrickleAborted(t *testing.T) {
	lim := InboxLimits{StallTimeout: time.Second, MinRate: 64 << 10}
	victim := inboxPeer(t, lim, nil)
	r := dialRaw(t, victim)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, answer, err := r.announce(ctx, "slow.bin", 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 4<<10)
		for i := 0; i < 1000; i++ { // 4 KiB every 200 ms: 20 KiB/s
			if _, err := s.Write(buf); err != nil {
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}()
	select {
	case err := <-answer:
		if !errors.Is(err, protocol.ErrTimeout) || !strings.Contains(err.Error(), "fewer than") {
			t.Fatalf("a trickling sender was answered %v, want a timeout for its rate", err)
		}
		t.Logf("trickling sender: %v", err)
	case <-ctx.Done():
		t.Fatal("a trickling sender was never cut off")
	}
	wait(t, 10*time.Second, "the trickler's claim given back and file removed", func() bool {
		u := victim.inbox.load.usage()
		_, _, temps := allocated(victim.inbox.dir)
		return u.Deliveries == 0 && u.Claimed == 0 && temps == 0 && u.Aborted == 1 && u.HeldOff == 1
	})
}

// A daemon that stopped mid-delivery (a crash) left the delivery's file and
// the disk it reserved; the next start removes it and nothing else.
func TestInboxSweepsUnfinished(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int{incomingPrefix + "123": 1 << 20, "_" + incomingPrefix + "sent.txt": 10, "photo.jpg": 10} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inboxPeer(t, InboxLimits{}, nil, func(c *Config) { c.InboxDir = dir })
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "_"+incomingPrefix+"sent.txt" || names[1] != "photo.jpg" {
		t.Fatalf("the inbox holds %v after a start", names)
	}
}

// The accounting alone: caps, the share of free space, progress and release.
func TestInboxLoad(t *testing.T) {
	lim := InboxLimits{Deliveries: 3, SenderDeliveries: 2, SenderBytes: 100, FreeShare: 0.5}.withDefaults(1000)
	lo := newInboxLoad(lim)
	free := int64(1000)
	freeFn := func() (int64, error) { return free, nil }
	a, b := protocol.PeerID{1}, protocol.PeerID{2}

	a1, err := lo.enter(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.admit(60, freeFn); err != nil {
		t.Fatal(err)
	}
	a2, _ := lo.enter(a)
	if err := a2.admit(50, freeFn); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("a's 110 bytes on the way: %v, want overloaded", err)
	}
	// a2 holds its slot until released, refused or not.
	if _, err := lo.enter(a); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("a's third delivery: %v, want overloaded", err)
	}
	a2.release()
	a2.release() // safe twice
	if u := lo.usage(); u.Deliveries != 1 || u.Claimed != 60 || u.Senders[a].n != 1 {
		t.Fatalf("after a refusal: %+v", u)
	}
	b0, _ := lo.enter(b)
	if err := b0.admit(101, freeFn); !errors.Is(err, protocol.ErrForbidden) {
		t.Fatalf("more than one sender may have on the way: %v, want forbidden", err)
	}
	b0.release()
	// The share: free 1000, half is 500 and 60 are claimed. Too little free
	// space for the file at all is unavailable; too little beside the others
	// is overloaded.
	free = 100
	b1, _ := lo.enter(b)
	if err := b1.admit(51, freeFn); !errors.Is(err, protocol.ErrUnavailable) {
		t.Fatalf("51 bytes with 100 free: %v, want unavailable", err)
	}
	b1.release()
	b1, _ = lo.enter(b)
	if err := b1.admit(40, freeFn); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("40 bytes beside 60 claimed with 100 free: %v, want overloaded", err)
	}
	b1.release()
	// Bytes arriving shrink the claim; the disk reserved ahead counts as free.
	a1.progress(20, 36)
	free = 64 // 100 less the 36 reserved
	if u := lo.usage(); u.Claimed != 40 || u.Ahead != 16 || u.Senders[a].claimed != 40 {
		t.Fatalf("after progress: %+v", u)
	}
	b1, _ = lo.enter(b)
	if err := b1.admit(0, freeFn); err != nil {
		t.Fatal(err)
	}
	b2, _ := lo.enter(b)
	if err := b2.admit(0, func() (int64, error) { return 0, errors.New("statfs /secret/dir: I/O error") }); !errors.Is(err, protocol.ErrInternal) ||
		strings.Contains(publicError(err).Error(), "/secret") {
		t.Fatalf("a failed free-space query: %v, told %v", err, publicError(err))
	}
	b2.release()
	b2, _ = lo.enter(b)
	if err := b2.admit(5, func() (int64, error) { return 0, errors.ErrUnsupported }); err != nil {
		t.Fatalf("where the free space is unknown: %v", err)
	}
	c, _ := lo.enter(protocol.PeerID{3})
	if err := c.admit(1, freeFn); !errors.Is(err, protocol.ErrOverloaded) {
		t.Fatalf("a fourth delivery with three admitted: %v, want overloaded", err)
	}
	c.release()
	for _, c := range []*inboxClaim{a1, b1, b2} {
		c.release()
	}
	if u := lo.usage(); u.Deliveries != 0 || u.Claimed != 0 || u.Ahead != 0 || len(u.Senders) != 0 {
		t.Fatalf("after every release: %+v", u)
	}

	// A sender whose delivery stalled is held off for StallHoldoff.
	now := time.Unix(1000, 0)
	lo.now = func() time.Time { return now }
	a1, _ = lo.enter(a)
	if err := a1.admit(10, freeFn); err != nil {
		t.Fatal(err)
	}
	a1.abort()
	a1.release()
	if _, err := lo.enter(a); !errors.Is(err, protocol.ErrOverloaded) || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("a sender just aborted for stalling: %v, want held off", err)
	}
	if c, err := lo.enter(b); err != nil {
		t.Fatalf("another sender: %v", err)
	} else {
		c.release()
	}
	now = now.Add(lim.StallHoldoff)
	if c, err := lo.enter(a); err != nil {
		t.Fatalf("after the hold-off: %v", err)
	} else {
		c.release()
	}
	// The senders held off are bounded.
	for i := range maxHoldoffs + 10 {
		c, err := lo.enter(protocol.PeerID{byte(i), byte(i >> 8), 9})
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Millisecond)
		c.abort()
		c.release()
	}
	if u := lo.usage(); u.HeldOff != maxHoldoffs || u.Aborted != maxHoldoffs+11 {
		t.Fatalf("after %d stalls: %d held off, %d aborted", maxHoldoffs+11, u.HeldOff, u.Aborted)
	}
	// The ones forgotten are those whose hold-off ended first.
	if _, err := lo.enter(protocol.PeerID{0, 0, 9}); err != nil {
		t.Fatalf("the first sender held off was not the one forgotten: %v", err)
	}
}

// BenchmarkInboxDelivery sends a 256 MiB file between two daemons on
// loopback, with the default limits: the cost of reserving the disk in steps
// and of the pace checks shows in the rate.
func BenchmarkInboxDelivery(b *testing.B) {
	victim := inboxPeer(b, InboxLimits{}, nil)
	sender := inboxPeer(b, InboxLimits{}, nil)
	data := make([]byte, 256<<20)
	rand.Read(data)
	path := filepath.Join(b.TempDir(), "big.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	src := protocol.Source{Peer: victim.ID(), Addrs: []string{victim.Addr().String()}}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		f, name, size, sum, err := openForSend(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		stored, _, err := sender.deliverFile(context.Background(), src, "victim", f, name, size, sum)
		b.StopTimer()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(filepath.Join(victim.inbox.dir, stored))
		b.StartTimer()
	}
}

// TestOneDaemonPerDataDir: a second daemon on a data dir in use is refused,
// even with no control socket to find it by; once the first closes, the
// data dir is free again.
func TestOneDaemonPerDataDir(t *testing.T) {
	first := inboxPeer(t, InboxLimits{}, nil)
	pc, err := transport.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := Config{DataDir: first.cfg.DataDir, Conn: pc, ControlSocket: "-", NoLead: true, Log: zerolog.Nop()}
	if d, err := New(cfg); !errors.Is(err, ErrAlreadyRunning) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("a second daemon on %s: %v, want ErrAlreadyRunning", cfg.DataDir, err)
	}
	first.Close()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	d.Close()
}
