package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

var secret = []byte("shared relay secret")

func startRelay(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Secret = secret
	cfg.ListenUDP = "127.0.0.1:0"
	if cfg.ListenTCP == "" {
		cfg.ListenTCP = "127.0.0.1:0"
	}
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func allocate(t *testing.T, server string, tcp bool, creds Credentials) (*Allocation, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := Allocate(ctx, ClientConfig{Server: server, TCP: tcp, Creds: creds})
	if err == nil {
		t.Cleanup(func() { a.Close() })
	}
	return a, err
}

// quicThrough listens with QUIC on the allocation, dials its relayed address
// from a plain socket, and sends n bytes; it returns what arrived.
func quicThrough(t *testing.T, a *Allocation, n int, timeout time.Duration) ([]byte, []byte, error) {
	t.Helper()
	srvID, _ := protocol.GenerateIdentity()
	cliID, _ := protocol.GenerateIdentity()
	ln, err := (&quic.Transport{Conn: a}).Listen(srvID.ServerTLS(), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	if err := a.Permit(pc.LocalAddr()); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			got <- nil
			return
		}
		s, err := c.AcceptStream(ctx)
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(s)
		got <- b
	}()
	c, err := tr.Dial(ctx, a.RelayedAddr(), cliID.ClientTLS(srvID.ID), &quic.Config{})
	if err != nil {
		return nil, nil, err
	}
	defer c.CloseWithError(0, "")
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, err
	}
	want := make([]byte, n)
	rand.Read(want)
	s.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := s.Write(want); err != nil {
		return want, nil, err
	}
	s.Close()
	select {
	case b := <-got:
		return want, b, nil
	case <-ctx.Done():
		return want, nil, ctx.Err()
	}
}

func TestQUICThroughRelay(t *testing.T) {
	s := startRelay(t, Config{})
	for _, tcp := range []bool{false, true} {
		addr := s.UDPAddr().String()
		if tcp {
			addr = s.TCPAddr().String()
		}
		a, err := allocate(t, addr, tcp, Mint(secret, "peer-a", time.Minute))
		if err != nil {
			t.Fatalf("tcp=%v: %v", tcp, err)
		}
		want, got, err := quicThrough(t, a, 4<<20, 10*time.Second)
		if err != nil || !bytes.Equal(want, got) {
			t.Fatalf("tcp=%v: %d bytes sent, %d arrived, %v", tcp, len(want), len(got), err)
		}
	}
	if ld := s.Load(); ld.BytesRelayed < 8<<20 || ld.Allocations != 2 {
		t.Errorf("load %+v", ld)
	}
}

func TestRelayRefusesBadCredentials(t *testing.T) {
	s := startRelay(t, Config{})
	good := Mint(secret, "peer-a", time.Minute)
	for name, c := range map[string]Credentials{
		"none":         {},
		"bad password": {Username: good.Username, Password: "AAAA"},
		"expired":      Mint(secret, "peer-a", -time.Minute),
		"wrong secret": Mint([]byte("other"), "peer-a", time.Minute),
	} {
		if _, err := allocate(t, s.UDPAddr().String(), false, c); err == nil {
			t.Errorf("%s: allocation granted", name)
		} else if name != "none" && !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
	if n := s.Load().AuthFailures; n < 2 {
		t.Errorf("auth failures %d, want at least 2", n)
	}
}

func TestRelayQuota(t *testing.T) {
	s := startRelay(t, Config{MaxBytes: 256 << 10})
	a, err := allocate(t, s.UDPAddr().String(), false, Mint(secret, "peer-a", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := quicThrough(t, a, 2<<20, 3*time.Second)
	if err == nil && len(got) == 2<<20 {
		t.Fatal("2 MiB went through an allocation with a 256 KiB quota")
	}
	if n := s.Load().QuotaStops; n != 1 {
		t.Errorf("quota stops %d, want 1", n)
	}

	s2 := startRelay(t, Config{MaxDuration: 300 * time.Millisecond})
	a2, err := allocate(t, s2.UDPAddr().String(), false, Mint(secret, "peer-b", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s2.Load().QuotaStops == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s2.Load().QuotaStops != 1 {
		t.Fatal("allocation outlived its time quota")
	}
	if _, _, err := quicThrough(t, a2, 1024, 2*time.Second); err == nil {
		t.Error("QUIC worked through an allocation past its time quota")
	}
}

func TestRelayIgnoresGarbage(t *testing.T) {
	s := startRelay(t, Config{})
	c, err := net.Dial("udp4", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	junk := make([]byte, 512)
	for i := range 200 {
		rand.Read(junk[:1+i%511])
		c.Write(junk[:1+i%511])
	}
	if _, err := allocate(t, s.UDPAddr().String(), false, Mint(secret, "peer-a", time.Minute)); err != nil {
		t.Fatalf("relay after garbage: %v", err)
	}
}

// TestStockTURNServer: credentials minted here work on coturn set up with the
// same secret, and QUIC runs through it.
func TestStockTURNServer(t *testing.T) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("coturn's turnserver is not installed (apt-get install coturn); the stock TURN server check needs it")
	}
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-n", "--use-auth-secret", "--static-auth-secret="+string(secret),
		"--realm=supernet", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
		"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--min-port=49152", "--max-port=65535",
		"--pidfile="+dir+"/turn.pid", "--userdb="+dir+"/turn.db", "--log-file=stdout", "--simple-log")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Log(out.String())
		}
	}()
	server := "127.0.0.1:" + strconv.Itoa(port)
	var a *Allocation
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err = allocate(t, server, false, Mint(secret, "peer-a", time.Minute))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("allocation on coturn: %v", err)
	}
	want, got, err := quicThrough(t, a, 1<<20, 10*time.Second)
	if err != nil || !bytes.Equal(want, got) {
		t.Fatalf("QUIC through coturn: %d bytes arrived, %v", len(got), err)
	}
	if _, err := allocate(t, server, false, Mint([]byte("other"), "peer-a", time.Minute)); err == nil {
		t.Error("coturn granted an allocation with the wrong secret")
	}
}
