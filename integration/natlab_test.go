//go:build linux

package integration

// The NAT lab: real Linux network namespaces in which the real binaries run
// behind real NATs. A "switch" namespace holds a bridge that stands for the
// public Internet (203.0.113.0/24); a public host hangs off it by one veth; a
// home is a router namespace (WAN on the bridge, nftables NAT) and host
// namespaces on a small LAN behind it (a /29 of 10.0.0.0/24, private as a
// home LAN is), joined by a bridge in the router.
//
// Every interface lives inside a namespace the lab made, so deleting the
// namespaces removes them all and nothing touches the machine's own network.
// A lab locks a file under /run/netns-owner for as long as it lives; a later
// lab that finds such a file unlocked knows its test process is gone and
// removes what it left behind, and nothing else.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NATKind is what a home router does to its hosts' traffic.
type NATKind int

const (
	// NATNone is a public host: no NAT, its own address is what others see.
	NATNone NATKind = iota
	// NATEndpointIndependent keeps one mapping per local socket whatever the
	// destination (plain masquerade keeps the source port when it is free);
	// inbound filtering is per conntrack entry, so address and port dependent.
	NATEndpointIndependent
	// NATSymmetric picks a fresh random port for every destination address
	// and port, so an address learnt from one server is useless to another.
	NATSymmetric
	// NATUDPBlocked is endpoint-independent but drops all UDP leaving the
	// LAN, as some corporate and hotel networks do; TCP still works.
	NATUDPBlocked
)

func (k NATKind) String() string {
	switch k {
	case NATNone:
		return "public"
	case NATEndpointIndependent:
		return "endpoint-independent"
	case NATSymmetric:
		return "symmetric"
	case NATUDPBlocked:
		return "udp-blocked"
	}
	return "NATKind(" + strconv.Itoa(int(k)) + ")"
}

const (
	// labOwnerDir holds one lock file per live lab, named by its prefix.
	labOwnerDir = "/run/netns-owner"
	// labCmdTimeout bounds each ip, nft or tc call.
	labCmdTimeout = 10 * time.Second
	// maxHomes is how many /29 LANs fit in 10.0.0.0/24.
	maxHomes = 32
)

var (
	// labPrefixRE matches the prefixes this harness makes: "snl" and four hex
	// digits, short so names stay readable and an owner file is easy to spot.
	labPrefixRE = regexp.MustCompile(`^snl[0-9a-f]{4}$`)
	// hostNameRE keeps host names free of '-', which separates the lab's own
	// suffixes, so no two hosts can map to one namespace.
	hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)
)

// Lab is one NAT lab. Make it with NewLab; call Public and Home from the
// goroutine of the test that made it.
type Lab struct {
	// Dir is a short temporary directory for the test's files (data
	// directories, sockets), removed after the namespaces at Close.
	Dir string

	t        *testing.T
	prefix   string   // e.g. "snl3f2a"; every namespace is prefix + "-" + suffix
	owner    *os.File // locked while the lab lives
	switchNS string

	mu         sync.Mutex
	closed     bool
	namespaces []string
	procs      []*Proc
	hosts      map[string]*Host
	nextPublic int             // last octet of the next 203.0.113.N
	homes      int             // LANs handed out
	blocked    map[string]bool // gateway namespace + " " + IP
}

// Host is a namespace with one address that processes run in.
type Host struct {
	Name string
	NS   string
	// IP is the host's own address: the LAN address for a home host.
	IP net.IP
	// PublicIP is what the public segment sees: the router's WAN address for
	// a home host, IP for a public one.
	PublicIP net.IP
	Kind     NATKind
	// RouterNS is the home router's namespace, empty for a public host.
	RouterNS string
	// IP6 is the host's IPv6 address: on the public segment, or in its
	// home's /64 (no NAT: a stateful firewall at the router), or nil for a
	// home without IPv6.
	IP6 net.IP
	// lanBase is the home LAN's first address (its /29), and lanHosts the
	// hosts on it so far.
	lanBase, lanHosts int
	gw                net.IP

	lab *Lab
}

// Addr is "IP:port" on the host's own address.
func (h *Host) Addr(port int) string {
	return net.JoinHostPort(h.IP.String(), strconv.Itoa(port))
}

// PublicAddr is "PublicIP:port". For a home host it is where its traffic
// appears to come from only if the NAT kept the port.
func (h *Host) PublicAddr(port int) string {
	return net.JoinHostPort(h.PublicIP.String(), strconv.Itoa(port))
}

// gatewayNS is where nftables rules for the host live: its router, or the
// host itself when public.
func (h *Host) gatewayNS() string {
	if h.RouterNS != "" {
		return h.RouterNS
	}
	return h.NS
}

// NewLab makes an empty lab (the public segment only) and removes it when the
// test ends. Without root, iproute2 or nftables it skips the test, saying so.
func NewLab(t *testing.T) *Lab {
	t.Helper()
	const howTo = "run the NAT lab tests as root on Linux with iproute2 and nftables installed " +
		"(apt-get install iproute2 nftables; sudo go test ./integration -run TestNAT)"
	if uid := os.Geteuid(); uid != 0 {
		t.Skipf("NAT lab skipped: needs root to make network namespaces (running as uid %d); %s", uid, howTo)
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("NAT lab skipped: %q not found in PATH; %s", tool, howTo)
		}
	}
	if err := os.MkdirAll(labOwnerDir, 0o755); err != nil {
		t.Skipf("NAT lab skipped: %v; %s", err, howTo)
	}
	sweepStaleLabs(t)

	l := &Lab{t: t, hosts: map[string]*Host{}, blocked: map[string]bool{}, nextPublic: 1}
	if err := l.claimPrefix(); err != nil {
		t.Fatalf("NAT lab: %v", err)
	}
	t.Cleanup(l.Close)
	dir, err := os.MkdirTemp("", l.prefix)
	if err != nil {
		t.Fatalf("NAT lab: %v", err)
	}
	l.Dir = dir

	l.switchNS = l.prefix + "-sw"
	if out, err := labRun("", "ip", "netns", "add", l.switchNS); err != nil {
		t.Skipf("NAT lab skipped: cannot make a network namespace (%v: %s); %s", err, out, howTo)
	}
	l.namespaces = append(l.namespaces, l.switchNS)
	if out, err := labRun("", "ip", "netns", "exec", l.switchNS, "nft", "list", "tables"); err != nil {
		t.Skipf("NAT lab skipped: nftables does not work here (%v: %s); %s", err, out, howTo)
	}
	l.ip("-n", l.switchNS, "link", "set", "lo", "up")
	// Veth pairs are made here and their far ends moved into the hosts, so
	// this namespace's defaults are theirs: no duplicate address detection,
	// under which a new link's IPv6 addresses stay tentative for a second or
	// two and its first packets wait or drop (see addNS).
	l.must("", "ip", "netns", "exec", l.switchNS, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	// A bridge takes the lowest address of its ports unless it has one of
	// its own: each host plugged in later could change it, and every host
	// that had the switch's old address in its neighbour cache would send
	// it frames nobody takes, for seconds, until it asked again.
	l.ip("-n", l.switchNS, "link", "add", "br0", "address", "02:00:00:00:00:01", "type", "bridge")
	l.ip("-n", l.switchNS, "link", "set", "br0", "up")
	// IPv6: the public segment is 2001:db8::/64 and the switch routes it to
	// each home's /64, through that home's router.
	l.ip("-n", l.switchNS, "addr", "add", "2001:db8::ffff/64", "dev", "br0", "nodad")
	l.must("", "ip", "netns", "exec", l.switchNS, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	return l
}

// claimPrefix picks an unused prefix and holds its owner file's lock.
func (l *Lab) claimPrefix() error {
	for range 16 {
		var b [2]byte
		rand.Read(b[:])
		prefix := "snl" + hex.EncodeToString(b[:])
		path := filepath.Join(labOwnerDir, prefix)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		// A sweeper may lock and remove the file between create and lock;
		// then it is no longer ours to publish, so try another prefix.
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil || !stillAt(f, path) {
			f.Close()
			continue
		}
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
		l.prefix, l.owner = prefix, f
		return nil
	}
	return errors.New("no free lab prefix after 16 tries")
}

// stillAt reports whether path still names the open file f.
func stillAt(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// sweepStaleLabs removes the namespaces of labs whose owner file nobody holds
// locked: their test process was killed before its cleanup ran. Processes left
// inside those namespaces are killed first.
func sweepStaleLabs(t *testing.T) {
	entries, err := os.ReadDir(labOwnerDir)
	if err != nil {
		return
	}
	var all []string // read once, only if some lab is stale
	for _, e := range entries {
		prefix := e.Name()
		if !labPrefixRE.MatchString(prefix) {
			continue
		}
		path := filepath.Join(labOwnerDir, prefix)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !stillAt(f, path) {
			f.Close() // alive, or swept and reused meanwhile
			continue
		}
		if all == nil {
			all = listNamespaces()
		}
		var removed []string
		for _, ns := range all {
			if strings.HasPrefix(ns, prefix+"-") {
				killNamespaceProcs(ns)
				if _, err := labRun("", "ip", "netns", "del", ns); err == nil {
					removed = append(removed, ns)
				}
			}
		}
		// The lab's temporary directory: MkdirTemp named it prefix + digits.
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"[0-9]*"))
		for _, d := range dirs {
			os.RemoveAll(d)
		}
		os.Remove(path)
		f.Close()
		t.Logf("NAT lab: removed leftovers of a killed run (%s): %v and %v", prefix, removed, dirs)
	}
}

func listNamespaces() []string {
	out, err := labRun("", "ip", "netns", "list")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// killNamespaceProcs SIGKILLs whatever still runs in ns. Only called for
// namespaces a lab made, so everything in them was started by a test.
func killNamespaceProcs(ns string) {
	out, _ := labRun("", "ip", "netns", "pids", ns)
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// labRun runs a setup command on the host (not in a namespace unless args
// say so) and returns its combined output.
func labRun(stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), labCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

// must runs a setup command and fails the test if it fails.
func (l *Lab) must(stdin string, name string, args ...string) {
	l.t.Helper()
	if out, err := labRun(stdin, name, args...); err != nil {
		l.t.Fatalf("NAT lab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (l *Lab) ip(args ...string) {
	l.t.Helper()
	l.must("", "ip", args...)
}

// addNS makes the namespace prefix-suffix with lo up.
func (l *Lab) addNS(suffix string) string {
	l.t.Helper()
	ns := l.prefix + "-" + suffix
	l.ip("netns", "add", ns)
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	l.ip("-n", ns, "link", "set", "lo", "up")
	// No duplicate address detection: until it ends a new link's
	// addresses are tentative and its first IPv6 packets wait or drop.
	l.must("", "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return ns
}

// newHost checks the name and reserves it and a public address.
func (l *Lab) newHost(name string, kind NATKind) (*Host, net.IP) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		l.t.Fatalf("NAT lab: host %q added after Close", name)
	case !hostNameRE.MatchString(name) || name == "sw":
		l.t.Fatalf("NAT lab: host name %q: want %s, not \"sw\"", name, hostNameRE)
	case l.hosts[name] != nil:
		l.t.Fatalf("NAT lab: two hosts named %q", name)
	case l.nextPublic > 254:
		l.t.Fatalf("NAT lab: the public segment is full")
	case kind != NATNone && l.homes >= maxHomes:
		l.t.Fatalf("NAT lab: at most %d homes", maxHomes)
	}
	h := &Host{Name: name, Kind: kind, lab: l}
	l.hosts[name] = h
	pub := net.IPv4(203, 0, 113, byte(l.nextPublic)).To4()
	l.nextPublic++
	return h, pub
}

// switchPort names the bridge port of a public address: unique on the
// switch, and short enough for an interface name.
func switchPort(ip net.IP) string { return "p" + strconv.Itoa(int(ip.To4()[3])) }

// plug joins namespace ns to the public bridge as dev with address ip/24.
func (l *Lab) plug(ns, dev string, ip net.IP) {
	l.t.Helper()
	port := switchPort(ip)
	l.ip("-n", l.switchNS, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
	l.ip("-n", l.switchNS, "link", "set", port, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", ip.String()+"/24", "dev", dev)
	l.ip("-n", ns, "addr", "add", publicIP6(ip).String()+"/64", "dev", dev, "nodad")
	l.ip("-n", ns, "link", "set", dev, "up")
	l.ip("-n", ns, "-6", "route", "add", "default", "via", "2001:db8::ffff")
}

// publicIP6 is the IPv6 address of the public host or router at ip.
func publicIP6(ip net.IP) net.IP {
	return net.ParseIP(fmt.Sprintf("2001:db8::%d", ip.To4()[3]))
}

// Public adds a host on the public segment.
func (l *Lab) Public(name string, opts ...HostOption) *Host {
	l.t.Helper()
	cfg := hostOptions(opts)
	h, ip := l.newHost(name, NATNone)
	h.NS = l.addNS(name)
	h.IP, h.PublicIP, h.IP6 = ip, ip, publicIP6(ip)
	l.plug(h.NS, "eth0", ip)
	l.must(publicRules, "ip", "netns", "exec", h.NS, "nft", "-f", "-")
	if cfg.rateMbit > 0 {
		// eth0 egress is the upload; the switch port's egress the download.
		l.shape(h.NS, "eth0", cfg.rateMbit)
		l.shape(l.switchNS, switchPort(ip), cfg.rateMbit)
	}
	return h
}

// HostOption changes how Public or Home builds a host.
type HostOption func(*hostConfig)

type hostConfig struct {
	rateMbit int
	ipv6     bool
	no4      bool // no IPv4 route beyond the LAN
}

func hostOptions(opts []HostOption) hostConfig {
	var cfg hostConfig
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// WithIPv6 gives a home IPv6 beside its IPv4 NAT: a /64 routed to its
// router, whose stateful firewall lets in only what answers traffic that
// went out, as home routers do.
func WithIPv6() HostOption {
	return func(c *hostConfig) { c.ipv6 = true }
}

// WithIPv6Only is WithIPv6 for a home whose IPv4 ends at its LAN, as on
// an IPv6-only access network.
func WithIPv6Only() HostOption {
	return func(c *hostConfig) { c.ipv6, c.no4 = true, true }
}

// WithRate shapes the host's link (a home's line) to mbit Mbit/s each way, as
// a broadband line would be.
func WithRate(mbit int) HostOption {
	return func(c *hostConfig) { c.rateMbit = mbit }
}

// shape puts a token bucket of mbit Mbit/s on dev's egress. The bucket holds
// 10 ms of traffic, and at least a few full-size packets.
func (l *Lab) shape(ns, dev string, mbit int) {
	l.t.Helper()
	l.must("", "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
		"rate", strconv.Itoa(mbit)+"mbit", "burst", strconv.Itoa(max(32*1024, mbit*1250)), "latency", "50ms")
}

// Home adds a home: a router NATing as kind, and the host behind it, which it
// returns. The router is the host's default gateway; the LAN is a /29.
func (l *Lab) Home(name string, kind NATKind, opts ...HostOption) *Host {
	l.t.Helper()
	cfg := hostOptions(opts)
	masq, ok := map[NATKind]string{
		NATEndpointIndependent: "masquerade",
		NATSymmetric:           "masquerade random,fully-random",
		NATUDPBlocked:          "masquerade",
	}[kind]
	if !ok {
		l.t.Fatalf("NAT lab: home %q: no such NAT kind %v", name, kind)
	}
	h, wanIP := l.newHost(name, kind)
	l.mu.Lock()
	lan := l.homes * 8
	l.homes++
	l.mu.Unlock()
	gwIP := net.IPv4(10, 0, 0, byte(lan+1)).To4()
	h.PublicIP, h.lanBase, h.gw = wanIP, lan, gwIP

	h.RouterNS = l.addNS(name + "-gw")
	l.plug(h.RouterNS, "wan", wanIP)
	// An address of its own, as br0 has, so hosts joining the LAN later do
	// not change the gateway's.
	l.ip("-n", h.RouterNS, "link", "add", "lan", "address", fmt.Sprintf("02:00:00:00:01:%02x", lan/8), "type", "bridge")
	l.ip("-n", h.RouterNS, "addr", "add", gwIP.String()+"/29", "dev", "lan")
	l.ip("-n", h.RouterNS, "link", "set", "lan", "up")
	l.must("", "ip", "netns", "exec", h.RouterNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	h.NS = l.addNS(name)
	h.IP = l.joinLAN(h, h.NS)
	if cfg.ipv6 {
		net6 := fmt.Sprintf("2001:db8:%x::", 0x100+lan/8)
		l.ip("-n", h.RouterNS, "addr", "add", net6+"1/64", "dev", "lan", "nodad")
		l.must("", "ip", "netns", "exec", h.RouterNS, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
		l.ip("-n", l.switchNS, "-6", "route", "add", net6+"/64", "via", publicIP6(wanIP).String())
		h.IP6 = net.ParseIP(net6 + "2")
		l.ip("-n", h.NS, "addr", "add", h.IP6.String()+"/64", "dev", "eth0", "nodad")
		l.ip("-n", h.NS, "-6", "route", "add", "default", "via", net6+"1")
		l.must(firewall6, "ip", "netns", "exec", h.RouterNS, "nft", "-f", "-")
	}
	if cfg.no4 {
		l.ip("-n", h.NS, "route", "del", "default")
	}

	dropUDP := ""
	if kind == NATUDPBlocked {
		dropUDP = `iifname "lan" meta l4proto udp drop`
	}
	l.must(fmt.Sprintf(routerRules, dropUDP, masq), "ip", "netns", "exec", h.RouterNS, "nft", "-f", "-")

	if cfg.rateMbit > 0 {
		// wan egress is the upload, lan egress the download.
		l.shape(h.RouterNS, "wan", cfg.rateMbit)
		l.shape(h.RouterNS, "lan", cfg.rateMbit)
	}
	return h
}

// joinLAN puts namespace ns on home's LAN, behind its router, and returns
// its address there.
func (l *Lab) joinLAN(home *Host, ns string) net.IP {
	l.t.Helper()
	l.mu.Lock()
	n := home.lanHosts
	home.lanHosts++
	l.mu.Unlock()
	if n >= 5 {
		l.t.Fatalf("NAT lab: home %q has room for 5 hosts", home.Name)
	}
	ip := net.IPv4(10, 0, 0, byte(home.lanBase+2+n)).To4()
	port := "lan" + strconv.Itoa(n)
	l.ip("-n", home.RouterNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip("-n", home.RouterNS, "link", "set", port, "master", "lan")
	l.ip("-n", home.RouterNS, "link", "set", port, "up")
	l.ip("-n", ns, "addr", "add", ip.String()+"/29", "dev", "eth0")
	l.ip("-n", ns, "link", "set", "eth0", "up")
	l.ip("-n", ns, "route", "add", "default", "via", home.gw.String())
	return ip
}

// Neighbour adds a host called name on home's LAN, behind the same NAT: its
// traffic to the Internet leaves from the same public address, and the two
// reach each other across the LAN, which is not shaped.
func (l *Lab) Neighbour(home *Host, name string) *Host {
	l.t.Helper()
	if home.RouterNS == "" {
		l.t.Fatalf("NAT lab: %q is no home", home.Name)
	}
	h, _ := l.newHost(name, NATNone) // no home of its own
	h.Kind, h.PublicIP, h.RouterNS = home.Kind, home.PublicIP, home.RouterNS
	h.NS = l.addNS(name)
	h.IP = l.joinLAN(home, h.NS)
	return h
}

// routerRules is a home router's ruleset; %s are an extra forward rule and the
// NAT statement. Like a real home router it drops unsolicited packets from the
// WAN in input too: a packet merely delivered to the router would leave a
// conntrack entry whose tuple later clashes with the host's own mapping, and
// masquerade would then move the host to another port.
const routerRules = `table ip natlab {
	set blocked { type ipv4_addr; }
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr @blocked meta l4proto udp counter drop
		ip daddr @blocked meta l4proto udp counter drop
		%s
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" %s
	}
}
`

// firewall6 is a home router's IPv6 firewall: no NAT, but nothing in from
// the WAN that does not answer what went out.
const firewall6 = `table ip6 natlab6 {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" counter drop
	}
}
`

// publicRules lets Block work on a public host too.
const publicRules = `table ip natlab {
	set blocked { type ipv4_addr; }
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked meta l4proto udp counter drop
	}
	chain output {
		type filter hook output priority filter; policy accept;
		ip daddr @blocked meta l4proto udp counter drop
	}
}
`

// Dropped counts the UDP packets Block has dropped at h's gateway so far,
// those from a blocked address and those to one: a test waits on it to know
// a blocked path was tried, rather than sleeping.
func (l *Lab) Dropped(h *Host) (from, to int, err error) {
	out, err := labRun("", "ip", "netns", "exec", h.gatewayNS(), "nft", "list", "table", "ip", "natlab")
	if err != nil {
		return 0, 0, fmt.Errorf("NAT lab: count drops in %s: %v: %s", h.gatewayNS(), err, out)
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		i := slices.Index(f, "packets")
		if i < 1 || f[i-1] != "counter" || i+1 >= len(f) {
			continue
		}
		c, err := strconv.Atoi(f[i+1])
		if err != nil {
			return 0, 0, fmt.Errorf("NAT lab: count drops in %s: %q: %v", h.gatewayNS(), line, err)
		}
		switch {
		case strings.Contains(line, "saddr @blocked"):
			from += c
		case strings.Contains(line, "daddr @blocked"):
			to += c
		}
	}
	return from, to, nil
}

// Block drops UDP both ways between h's home (or h itself, if public) and the
// public address peer, until Unblock. TCP is untouched. Both are idempotent
// and safe from any goroutine.
func (l *Lab) Block(h *Host, peer net.IP) error {
	return l.setBlocked(h, peer, true)
}

// Unblock undoes Block.
func (l *Lab) Unblock(h *Host, peer net.IP) error {
	return l.setBlocked(h, peer, false)
}

func (l *Lab) setBlocked(h *Host, peer net.IP, block bool) error {
	p4 := peer.To4()
	if p4 == nil {
		return fmt.Errorf("NAT lab: block %v: not an IPv4 address", peer)
	}
	ns := h.gatewayNS()
	key := ns + " " + p4.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("NAT lab: closed")
	}
	if l.blocked[key] == block {
		return nil
	}
	verb := map[bool]string{true: "add", false: "delete"}[block]
	if out, err := labRun("", "ip", "netns", "exec", ns, "nft", verb, "element", "ip", "natlab", "blocked", "{", p4.String(), "}"); err != nil {
		return fmt.Errorf("NAT lab: %s %v in %s: %v: %s", verb, p4, ns, err, out)
	}
	l.blocked[key] = block
	return nil
}

// Close stops the lab's processes, deletes its namespaces (and so every veth
// in them) and then its files. It is idempotent and also runs at cleanup.
func (l *Lab) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	procs, namespaces := l.procs, l.namespaces
	l.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()
	for i := len(namespaces) - 1; i >= 0; i-- {
		ns := namespaces[i]
		killNamespaceProcs(ns) // anything a test started with Command and left
		if out, err := labRun("", "ip", "netns", "del", ns); err != nil {
			l.t.Errorf("NAT lab: deleting namespace %s: %v: %s", ns, err, out)
		}
	}
	if l.Dir != "" {
		os.RemoveAll(l.Dir)
	}
	if l.owner != nil {
		os.Remove(l.owner.Name())
		l.owner.Close()
	}
}

// Command is `ip netns exec NS bin args...`: cancelling ctx sends SIGTERM,
// then SIGKILL after stopGrace; the child is killed if the test binary dies.
func (h *Host) Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := command(ctx, childEnv(), "ip", append([]string{"netns", "exec", h.NS, bin}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs bin in the host's namespace to completion within timeout and
// returns its stdout; the error carries the exit status and stderr.
func (h *Host) Run(t *testing.T, timeout time.Duration, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, lifetime(t)))
	defer cancel()
	var stdout, stderr lockedBuffer
	cmd := h.Command(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v", timeout)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %s %s: %w\nstderr:\n%s",
			h.Name, filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Proc is a long-running process in a lab host.
type Proc struct {
	Name string

	cmd    *exec.Cmd
	out    lockedBuffer // stdout and stderr, interleaved
	cancel context.CancelFunc
	done   chan struct{} // closed once the process has exited
	err    error         // from Wait; read only after done
}

// Start runs bin in the host's namespace until it exits or the test ends. At
// cleanup it gets SIGTERM, then SIGKILL after stopGrace, and is waited for;
// its output is logged if the test failed.
func (h *Host) Start(t *testing.T, name, bin string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lifetime(t))
	p := &Proc{Name: name, cancel: cancel, done: make(chan struct{})}
	p.cmd = h.Command(ctx, bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	l := h.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		cancel()
		t.Fatalf("NAT lab: starting %s after Close", name)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s in %s: %v", name, h.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s in %s (%v) output:\n%s", name, h.Name, p.cmd.ProcessState, p.Output())
		}
	})
	return p
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, then SIGKILL after stopGrace, and returns how the
// process exited: nil only for status 0. On an exited process it just returns
// that.
func (p *Proc) Stop() error {
	p.cancel()
	<-p.done // bounded by cmd.WaitDelay
	return p.err
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() error {
	if !p.Exited() {
		p.cmd.Process.Kill()
	}
	<-p.done
	return p.err
}

// errStillRunning is Wait's answer for a process that outlived the timeout.
var errStillRunning = errors.New("still running")

// Wait waits up to timeout for the process to exit by itself and returns how
// it exited, or errStillRunning.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: %w after %v", p.Name, errStillRunning, timeout)
	}
}

// natProbe builds integration/internal/natprobe into a directory removed when
// the test ends, and returns its path.
func natProbe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", dir, module+"/integration/internal/natprobe").CombinedOutput()
	if err != nil {
		t.Fatalf("building natprobe: %v\n%s", err, out)
	}
	return filepath.Join(dir, "natprobe")
}
