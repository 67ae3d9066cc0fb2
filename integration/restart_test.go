package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/ring"
	"github.com/supernet-p2p/supernet/supernode"
)

// userStatusJSON is the user part of `peer status --json`.
type userStatusJSON struct {
	PeerID string `json:"peer_id"`
	User   *struct {
		Registered bool   `json:"registered"`
		Seq        uint64 `json:"seq"`
		LastError  string `json:"last_error"`
	} `json:"user"`
}

func (l *lab) userStatus(d daemon) (userStatusJSON, string) {
	r := l.peer(d.dataDir, "status", "--json")
	var st userStatusJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.User == nil {
		return userStatusJSON{}, r.String()
	}
	return st, r.String()
}

// snProc is a supernode process started with a fixed address, so that it
// can be killed and started again on the same address and data directory.
type snProc struct {
	name, addr, dataDir string
	join                []string
	id                  protocol.PeerID
	proc                *process
}

// startAt starts (or starts again) the supernode s and waits until it listens.
func (l *lab) startAt(s *snProc) time.Duration {
	t := l.t
	t.Helper()
	if _, err := os.Stat(filepath.Join(s.dataDir, protocol.CertFile)); err != nil {
		l.op.admit(s.dataDir)
	}
	args := []string{"--listen", s.addr, "--data-dir", s.dataDir}
	for _, j := range s.join {
		args = append(args, "--join", j)
	}
	start := time.Now()
	p := startProcess(t, s.name, l.supernodeBin, args...)
	var m []string
	pollUntil(t, 10*time.Second, s.name+" to listen", func() (bool, string) {
		m = listeningRE.FindStringSubmatch(p.stderr.String())
		return m != nil || p.exited(), p.stderr.String()
	})
	if m == nil {
		t.Fatalf("%s exited at start: %s", s.name, p.stderr.String())
	}
	id, err := protocol.ParsePeerID(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if s.proc != nil && id != s.id {
		t.Fatalf("%s came back as %s, was %s", s.name, id, s.id)
	}
	s.id, s.proc = id, p
	return time.Since(start)
}

// kill ends the supernode with SIGKILL: no goodbye, no flush, no close.
func (s *snProc) kill(t *testing.T) {
	t.Helper()
	s.proc.mayExit = true
	if err := s.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.proc.done
}

func (s *snProc) target() string { return s.id.String() + "@" + s.addr }

var loadedRE = regexp.MustCompile(`"user_records":(\d+),"incarnation":(\d+),"took":"([^"]+)"`)

// loaded is what the supernode's log says it loaded at its last start.
func (s *snProc) loaded(t *testing.T) (records int, incarnation uint64, took time.Duration) {
	t.Helper()
	ms := loadedRE.FindAllStringSubmatch(s.proc.stderr.String(), -1)
	if len(ms) == 0 {
		t.Fatalf("%s did not log the load of its directory:\n%s", s.name, s.proc.stderr.String())
	}
	m := ms[len(ms)-1]
	records, _ = strconv.Atoi(m[1])
	incarnation, _ = strconv.ParseUint(m[2], 10, 64)
	took, _ = time.ParseDuration(m[3])
	return records, incarnation, took
}

// TestCLINamesSurviveRestart runs four supernode processes and peer daemons.
// The owner of "bob" on the ring is killed (SIGKILL) before bob registers, so
// it never stored his record; it is started again on its data directory and a
// fresh key tries "bob" through it at once. Then each of bob's three replicas
// in turn is killed and started again, and after each a fresh key tries the
// name through it. Every try is refused, bob stays registered, lookups
// through every restarted supernode resolve to bob, every restart loads the
// records from the file under a higher incarnation, and bob puts his record
// again after each restart of a supernode holding it.
func TestCLINamesSurviveRestart(t *testing.T) {
	l := newLab(t)
	const n = 4
	sns := make([]*snProc, n)
	for i := range sns {
		sns[i] = &snProc{name: fmt.Sprintf("sn%d", i+1), addr: freeUDPAddr(t)}
		sns[i].dataDir = filepath.Join(l.root, sns[i].name)
	}
	// Each joins the one before it, and the first the last: a supernode
	// started again links to the ring at once.
	for i, s := range sns {
		s.join = []string{sns[(i+n-1)%n].addr}
	}
	for _, s := range sns {
		l.startAt(s)
		if _, err := os.Stat(filepath.Join(s.dataDir, supernode.DirectoryFile)); err != nil {
			t.Fatalf("%s keeps no directory file: %v", s.name, err)
		}
	}
	ids := make([]ring.ID, n)
	for i, s := range sns {
		ids[i] = ring.ID(s.id)
	}
	const name = "bob"
	byID := func(id ring.ID) *snProc {
		for _, s := range sns {
			if ring.ID(s.id) == id {
				return s
			}
		}
		t.Fatalf("no supernode %s", protocol.PeerID(id).Short())
		return nil
	}
	var replicas []*snProc
	for _, id := range ring.New(ids).Replicas(ring.KeyOf(name), ring.Copies) {
		replicas = append(replicas, byID(id))
	}
	var other *snProc // the one supernode that does not hold bob's record
	for _, s := range sns {
		if s != replicas[0] && s != replicas[1] && s != replicas[2] {
			other = s
		}
	}
	owner := replicas[0]
	t.Logf("bob's replicas: %s (owner), %s, %s; %s holds none", owner.name, replicas[1].name, replicas[2].name, other.name)

	// The owner dies before bob registers: bob's record goes to the others.
	owner.kill(t)
	// Bob stays attached to the one supernode that does not hold his
	// record, so that what makes him put it again after a replica restarts
	// is the member list, not a lost attachment.
	bob := l.daemon("bob", "", other.target(), "--user", name, "--attach", "1")
	var bobSt userStatusJSON
	pollUntil(t, 30*time.Second, "bob registered", func() (bool, string) {
		var raw string
		bobSt, raw = l.userStatus(bob)
		return bobSt.User != nil && bobSt.User.Registered, raw
	})

	// tryName starts a daemon with a fresh key, attached to s, that tries to
	// register "bob", and checks it is refused as taken, that lookups through
	// it resolve to bob, and that bob is still registered.
	tries := 0
	tryName := func(s *snProc) time.Duration {
		t.Helper()
		tries++
		start := time.Now()
		m := l.daemon(fmt.Sprintf("mallory%d", tries), "", s.target(), "--user", name)
		pollUntil(t, 60*time.Second, m.name+" refused the name", func() (bool, string) {
			st, raw := l.userStatus(m)
			if st.User != nil && st.User.Registered {
				t.Fatalf("%s, a second key, registered %q through %s:\n%s", m.name, name, s.name, raw)
			}
			return st.User != nil && strings.Contains(st.User.LastError, "taken"), raw
		})
		refused := time.Since(start)
		pollUntil(t, 20*time.Second, m.name+" finding bob", func() (bool, string) {
			r := l.peer(m.dataDir, "lookup", name)
			return r.code == 0 && strings.Contains(r.stdout, bobSt.PeerID), r.String()
		})
		if st, raw := l.userStatus(bob); st.User == nil || !st.User.Registered {
			t.Fatalf("bob lost his registration:\n%s", raw)
		}
		m.proc.stop(t)
		return refused
	}

	// The owner comes back without bob's record; a fresh key tries the name
	// through it at once.
	took := l.startAt(owner)
	recs, inc0, load := owner.loaded(t)
	t.Logf("%s restarted (listening after %v, %d records loaded in %v, incarnation %d); its file lacks bob's record",
		owner.name, took.Round(time.Millisecond), recs, load, inc0)
	t.Logf("mallory1 through the owner that lacked the record: refused after %v", tryName(owner).Round(time.Millisecond))

	// Each of bob's replicas in turn, owner first, killed and started again.
	for i, s := range replicas {
		st, raw := l.userStatus(bob)
		if st.User == nil || !st.User.Registered {
			t.Fatalf("bob is not registered:\n%s", raw)
		}
		seqBefore := st.User.Seq
		_, incBefore, _ := s.loaded(t)
		s.kill(t)
		killed := time.Now()
		took := l.startAt(s)
		recs, inc, load := s.loaded(t)
		if inc <= incBefore {
			t.Fatalf("%s restarted with incarnation %d, not above %d", s.name, inc, incBefore)
		}
		// The other two held bob's record from his first put; the owner
		// may have been killed before a copy reached it.
		if i > 0 && recs == 0 {
			t.Fatalf("%s loaded no records after a restart: bob's should be in its file", s.name)
		}
		t.Logf("%s killed and restarted: listening after %v, %d records loaded in %v, incarnation %d",
			s.name, took.Round(time.Millisecond), recs, load, inc)
		refused := tryName(s)
		t.Logf("a fresh key through %s: refused %v after its start", s.name, refused.Round(time.Millisecond))
		// Bob learns of the restart from the member list his supernode
		// sends every 10 gossip rounds, and puts his record again; a put
		// made before his supernode has linked to the restarted one again
		// fails and is retried with a doubling backoff, which under -race
		// on a busy machine runs past 25 s.
		pollUntil(t, raceSlowdown*25*time.Second, "bob to put his record again after the restart of "+s.name, func() (bool, string) {
			st, raw := l.userStatus(bob)
			return st.User != nil && st.User.Registered && st.User.Seq > seqBefore, raw
		})
		t.Logf("bob put his record again %v after the kill of %s", time.Since(killed).Round(time.Millisecond), s.name)
	}
	// A restart shows to bob either as a higher incarnation in the member
	// list, or, when the restarted supernode's entry did not reach bob's
	// supernode within the member timeout, as a death and a return.
	t.Logf("bob saw %d of the 4 restarts by their incarnation", strings.Count(bob.proc.stderr.String(), "holding our username record restarted"))
}
