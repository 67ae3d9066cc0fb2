//go:build linux

package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// TestNATLab checks the lab itself with natprobe: that each NAT kind maps and
// filters as documented, that Block and Unblock make a hole punch fail and
// then succeed, that WithRate shapes, and that Close leaves nothing behind.
func TestNATLab(t *testing.T) {
	l := NewLab(t)
	probe := natProbe(t)

	stun1, stun2, pub := l.Public("stun1"), l.Public("stun2"), l.Public("pub")
	eim := l.Home("eim", NATEndpointIndependent)
	eimb := l.Home("eimb", NATEndpointIndependent)
	sym := l.Home("sym", NATSymmetric)
	blk := l.Home("udpblk", NATUDPBlocked)
	slow := l.Home("slow", NATEndpointIndependent, WithRate(10))

	const stunPort = 3478
	for _, p := range []*Proc{
		stun1.Start(t, "echo stun1", probe, "echo", "-udp", ":3478,:3479", "-tcp", ":3478"),
		stun2.Start(t, "echo stun2", probe, "echo", "-udp", ":3478", "-tcp", ":3478"),
	} {
		pollUntil(t, 5*time.Second, p.Name+" to be ready", func() (bool, string) {
			if p.Exited() {
				t.Fatalf("%s exited: %s", p.Name, p.Output())
			}
			return strings.Contains(p.Output(), "ready"), p.Output()
		})
	}
	servers := []string{stun1.Addr(stunPort), stun1.Addr(stunPort + 1), stun2.Addr(stunPort)}

	var seen [][]string // the table logged at the end
	defer func() {
		var b strings.Builder
		w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, row := range seen {
			fmt.Fprintln(w, strings.Join(row, "\t"))
		}
		w.Flush()
		t.Logf("what the lab did:\n%s", b.String())
	}()
	seen = append(seen, []string{"HOST", "KIND", "LOCAL", "UDP " + strings.Join(servers, " / "), "TCP " + servers[0]})

	t.Run("mapping", func(t *testing.T) {
		const localPort = 40000
		for _, h := range []*Host{pub, eim, sym, blk} {
			// Short waits: the lab loses nothing, so only udpblk waits them out.
			udpOut, udpErr := h.Run(t, 5*time.Second, probe, "ask", "-from", ":"+strconv.Itoa(localPort),
				"-timeout", "250ms", "-tries", "2", servers[0], servers[1], servers[2])
			mapped := strings.Fields(udpOut)
			tcpOut, tcpErr := h.Run(t, 5*time.Second, probe, "askt", servers[0])
			tcpMapped := strings.TrimSpace(tcpOut)
			seen = append(seen, []string{h.Name, h.Kind.String(), h.Addr(localPort), strings.Join(mapped, " / "), tcpMapped})

			if h.Kind == NATUDPBlocked {
				if udpErr == nil || strings.Join(mapped, " ") != "timeout timeout timeout" {
					t.Errorf("%s: UDP got through: %q, %v", h.Name, udpOut, udpErr)
				}
			} else if udpErr != nil || len(mapped) != len(servers) {
				t.Errorf("%s: ask: %q, %v", h.Name, udpOut, udpErr)
				continue
			}
			if tcpErr != nil || !sameIP(tcpMapped, h.PublicIP) {
				t.Errorf("%s: TCP mapped to %q (%v), want from %v", h.Name, tcpMapped, tcpErr, h.PublicIP)
			}
			switch h.Kind {
			case NATNone:
				for _, m := range mapped {
					if m != h.Addr(localPort) {
						t.Errorf("%s: public host mapped to %s, want its own %s", h.Name, m, h.Addr(localPort))
					}
				}
			case NATEndpointIndependent:
				// Nothing else uses the port on this router, so masquerade
				// keeps it: one mapping, WAN IP and the local port.
				for _, m := range mapped {
					if m != h.PublicAddr(localPort) {
						t.Errorf("%s: mapped to %s, want %s for every server", h.Name, m, h.PublicAddr(localPort))
					}
				}
			case NATSymmetric:
				ports := map[string]bool{}
				for _, m := range mapped {
					host, port, _ := net.SplitHostPort(m)
					if host != h.PublicIP.String() {
						t.Errorf("%s: mapped to %s, want the WAN address %v", h.Name, m, h.PublicIP)
					}
					ports[port] = true
				}
				if len(ports) != len(servers) {
					t.Errorf("%s: mapped to %v: want a different port per server and per server port", h.Name, mapped)
				}
			}
		}
	})

	t.Run("filtering", func(t *testing.T) {
		// A host keeps a mapping open to stun1:3478; a public host and stun1
		// from another port send to that mapping. Only stun1:3478 gets in.
		const localPort = 40100
		for _, h := range []*Host{eim, sym} {
			out, err := h.Run(t, 5*time.Second, probe, "ask", "-from", ":"+strconv.Itoa(localPort), servers[0])
			if err != nil {
				t.Fatalf("%s: ask: %v", h.Name, err)
			}
			mapping := strings.TrimSpace(out)
			const run = "1s"
			home := h.Start(t, h.Name+" punch", probe, "punch", "-from", ":"+strconv.Itoa(localPort), "-for", run, servers[0])
			stranger := pub.Start(t, "pub punch", probe, "punch", "-from", ":40200", "-for", run, mapping)
			otherPort := stun1.Start(t, "stun1 punch", probe, "punch", "-from", ":3480", "-for", run, mapping)
			for _, p := range []*Proc{home, stranger, otherPort} {
				if err := p.Wait(10 * time.Second); err != nil {
					t.Fatalf("%s: %v\n%s", p.Name, err, p.Output())
				}
			}
			got := home.Output()
			ok := strings.Contains(got, "recv "+servers[0]+"\n") &&
				!strings.Contains(got, "recv "+pub.IP.String()+":") && !strings.Contains(got, stun1.Addr(3480))
			seen = append(seen, []string{h.Name, h.Kind.String(), "filter", "mapping " + mapping,
				"got " + strings.Join(strings.Fields(strings.ReplaceAll(got, "recv ", "")), " ")})
			if !ok {
				t.Errorf("%s behind mapping %s: want only stun1:3478's answers, got:\n%s", h.Name, mapping, got)
			}
		}
	})

	t.Run("hole punch with Block", func(t *testing.T) {
		// Two endpoint-independent homes know each other's mapping (WAN IP,
		// same port). Blocked, neither hears the other; unblocked, both do.
		const port = 41000
		if err := l.Block(eim, eimb.PublicIP); err != nil {
			t.Fatal(err)
		}
		a := eim.Start(t, "eim punch", probe, "punch", "-from", ":"+strconv.Itoa(port), "-for", "4s", eimb.PublicAddr(port))
		b := eimb.Start(t, "eimb punch", probe, "punch", "-from", ":"+strconv.Itoa(port), "-for", "4s", eim.PublicAddr(port))
		// eim's punches reach its gateway's drop rule a few times (eimb's,
		// sent alike, find no mapping there and die in its input chain);
		// none of them gets through.
		const tries = 3
		pollUntil(t, 3*time.Second, "eim's punches dropped", func() (bool, string) {
			_, to, err := l.Dropped(eim)
			if err != nil {
				t.Fatal(err)
			}
			return to >= tries, fmt.Sprintf("dropped at eim's gateway: %d to eimb", to)
		})
		if a.Output()+b.Output() != "" {
			t.Fatalf("traffic while blocked:\neim: %s\neimb: %s", a.Output(), b.Output())
		}
		if err := l.Unblock(eim, eimb.PublicIP); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		pollUntil(t, 3*time.Second, "the punch to succeed both ways", func() (bool, string) {
			return strings.Contains(a.Output(), "recv "+eimb.PublicAddr(port)) &&
				strings.Contains(b.Output(), "recv "+eim.PublicAddr(port)), "eim: " + a.Output() + "eimb: " + b.Output()
		})
		seen = append(seen, []string{"eim+eimb", "punch", fmt.Sprint(port), fmt.Sprintf("blocked: %d punches dropped, none heard", tries),
			fmt.Sprintf("unblocked: both ways in %v", time.Since(start).Round(10*time.Millisecond))})
		a.Stop()
		b.Stop()
		if err := l.Unblock(eim, eimb.PublicIP); err != nil { // idempotent
			t.Error(err)
		}
	})

	t.Run("rate", func(t *testing.T) {
		const (
			mbit = 10
			size = 1_250_000 // one second at the set rate
		)
		for _, h := range []*Host{slow, eim} {
			var rates []string
			for _, mode := range []string{"send", "fetch"} {
				out, err := h.Run(t, 15*time.Second, probe, mode, "-n", strconv.Itoa(size), servers[0])
				if err != nil {
					t.Fatalf("%s %s: %v", h.Name, mode, err)
				}
				var n int
				var secs, rate float64
				if _, err := fmt.Sscanf(out, "bytes %d seconds %g mbit %g", &n, &secs, &rate); err != nil {
					t.Fatalf("%s %s: %q: %v", h.Name, mode, out, err)
				}
				rates = append(rates, fmt.Sprintf("%s %.1f Mbit/s", map[string]string{"send": "up", "fetch": "down"}[mode], rate))
				if h == slow && (rate <= 0 || rate >= 2*mbit) {
					t.Errorf("%s %s: %.1f Mbit/s through a %d Mbit/s link: not shaped", h.Name, mode, rate, mbit)
				}
			}
			limit := "unshaped"
			if h == slow {
				limit = fmt.Sprintf("tbf %d Mbit/s", mbit)
			}
			seen = append(seen, []string{h.Name, h.Kind.String(), limit, strings.Join(rates, ", "), ""})
		}
	})

	t.Run("close", func(t *testing.T) {
		l2 := NewLab(t)
		h := l2.Home("x", NATSymmetric, WithRate(5))
		l2.Public("y")
		p := h.Start(t, "sleeper", "sleep", "60")
		owner, dir := l2.owner.Name(), l2.Dir
		l2.Close()
		l2.Close()
		if !p.Exited() {
			t.Error("a process outlived Close")
		}
		if left := namespacesWithPrefix(l2.prefix); len(left) > 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
		for _, f := range []string{owner, dir} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%s left after Close: %v", f, err)
			}
		}
		if err := l2.Block(h, stun1.IP); err == nil {
			t.Error("Block on a closed lab succeeded")
		}
	})

	t.Run("leftovers of a killed run", func(t *testing.T) {
		// A lab whose process died: its owner file exists but is unlocked,
		// and a process still runs in its namespace.
		var prefix, path string
		var f *os.File
		for range 16 {
			prefix = fmt.Sprintf("snl%04x", rand.IntN(1<<16))
			path = filepath.Join(labOwnerDir, prefix)
			var err error
			if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
				break
			}
		}
		if f == nil {
			t.Fatal("no free prefix for a fake stale lab")
		}
		ns := prefix + "-stale"
		t.Cleanup(func() {
			labRun("", "ip", "netns", "del", ns)
			os.Remove(path)
		})
		// Held while the namespace is made, as a live lab would.
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		if out, err := labRun("", "ip", "netns", "add", ns); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// Start returns once ip runs, before it joins the namespace; a sweep
		// then would find no process there. "in" is printed from inside.
		orphan := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "echo in; exec sleep 60")
		stdout, err := orphan.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := orphan.Start(); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, 3)
		if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "in\n" {
			orphan.Process.Kill()
			orphan.Wait()
			t.Fatalf("the orphan did not start in %s: %q %v", ns, line, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- orphan.Wait() }()
		t.Cleanup(func() {
			orphan.Process.Kill()
			<-exited
		})
		f.Close() // the owner "dies"

		NewLab(t)
		if left := namespacesWithPrefix(prefix); len(left) > 0 {
			t.Errorf("stale namespaces not removed: %v", left)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("stale owner file not removed: %v", err)
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Logf("orphan in the stale namespace: %v", err)
		case <-time.After(5 * time.Second):
			t.Error("the process in the stale namespace was not killed")
		}
	})
}

// sameIP reports whether "ip:port" is from ip.
func sameIP(addr string, ip net.IP) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && net.ParseIP(host).Equal(ip)
}

func namespacesWithPrefix(prefix string) []string {
	var left []string
	for _, ns := range listNamespaces() {
		if strings.HasPrefix(ns, prefix+"-") {
			left = append(left, ns)
		}
	}
	return left
}
