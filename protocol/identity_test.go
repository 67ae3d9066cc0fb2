package protocol

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir mode %v, want no access for others", di.Mode().Perm())
	}
	pub := id.Key.Public().(ed25519.PublicKey)
	if id.ID != PeerID(sha256.Sum256(pub)) {
		t.Error("ID is not the SHA-256 of the public key")
	}

	again, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != id.ID || !again.Key.Equal(id.Key) {
		t.Errorf("second load: %s, want %s", again.ID, id.ID)
	}

	other, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == id.ID {
		t.Error("two data dirs got the same identity")
	}
}

func TestLoadIdentityRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateIdentity(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateIdentity(dir)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %v: %v, want a refusal that says to chmod 600", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	if _, err := LoadOrCreateIdentity(dir); err != nil {
		t.Errorf("after chmod 600: %v", err)
	}
}

func TestLoadIdentityCorrupt(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "is empty"},
		{"garbage", "not a key\n", "not a PEM private key"},
		{"wrong PEM type", string(pemOf("CERTIFICATE", []byte{1, 2, 3})), "not a PEM private key"},
		{"bad DER", string(pemOf("PRIVATE KEY", []byte{1, 2, 3})), "identity"},
		{"not ed25519", string(pemOf("PRIVATE KEY", ecDER)), "not an ed25519 key"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		path := filepath.Join(dir, IdentityFile)
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		id, err := LoadOrCreateIdentity(dir)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, %v; want an error naming the file and saying %q", tt.name, id, err, tt.want)
		}
		// A corrupt key is never silently replaced: that would change the node's ID.
		if b, _ := os.ReadFile(path); string(b) != tt.content {
			t.Errorf("%s: the file was rewritten", tt.name)
		}
	}
}

func TestPeerIDString(t *testing.T) {
	id := fillPeer(0xa5)
	s := id.String()
	if len(s) != 52 || strings.ToLower(s) != s || strings.ContainsAny(s, "=") {
		t.Fatalf("String() = %q: want 52 lowercase unpadded base32 characters", s)
	}
	if id.Short() != s[:10] {
		t.Errorf("Short() = %q", id.Short())
	}
	for _, in := range []string{s, strings.ToUpper(s), "  " + s + "\n"} {
		got, err := ParsePeerID(in)
		if err != nil || got != id {
			t.Errorf("ParsePeerID(%q) = %s, %v", in, got, err)
		}
	}
	for i := 0; i < 50; i++ {
		gen, err := GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParsePeerID(gen.ID.String()); err != nil || got != gen.ID {
			t.Fatalf("round trip of %s: %s, %v", gen.ID, got, err)
		}
	}
	if (PeerID{}).IsZero() != true || id.IsZero() {
		t.Error("IsZero")
	}

	// The last character holds one bit of the ID; its other four bits must be 0, so
	// that each ID has exactly one spelling.
	last := strings.Index("abcdefghijklmnopqrstuvwxyz234567", s[51:])
	alias := s[:51] + string("abcdefghijklmnopqrstuvwxyz234567"[last^1])
	bad := []string{"", s[:51], s + "a", s[:51] + "1", s[:51] + "=", strings.Repeat("8", 52), alias}
	for _, in := range bad {
		if got, err := ParsePeerID(in); !errors.Is(err, ErrBadPeerID) {
			t.Errorf("ParsePeerID(%q) = %s, %v; want ErrBadPeerID", in, got, err)
		}
	}
}

func TestContentIDString(t *testing.T) {
	c := exCID
	c[31] = 0xab
	s := c.String()
	if len(s) != 64 || s != strings.ToLower(s) || c.Short() != s[:12] {
		t.Fatalf("String %q, Short %q", s, c.Short())
	}
	for _, in := range []string{s, strings.ToUpper(s), " " + s + "\t"} {
		if got, err := ParseContentID(in); err != nil || got != c {
			t.Errorf("ParseContentID(%q) = %s, %v", in, got, err)
		}
	}
	if !(ContentID{}).IsZero() || c.IsZero() {
		t.Error("IsZero")
	}
	bad := []string{"", s[:63], s + "0", s[:62] + "zz", s[:62] + "0x", strings.Repeat("g", 64)}
	for _, in := range bad {
		if got, err := ParseContentID(in); !errors.Is(err, ErrBadContentID) {
			t.Errorf("ParseContentID(%q) = %s, %v; want ErrBadContentID", in, got, err)
		}
	}
}

// certFor makes a self-signed-looking certificate for pub, signed by signer.
func certFor(t *testing.T, pub, signer any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "x"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestPeerIDFromCert(t *testing.T) {
	a, _ := GenerateIdentity()
	b, _ := GenerateIdentity()
	got, err := PeerIDFromCert(a.crt.Certificate)
	if err != nil || got != a.ID {
		t.Fatalf("own certificate: %s, %v; want %s", got, err, a.ID)
	}
	// Names and dates do not matter, the key does: an expired certificate of the
	// key still names the peer.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1, 0)}
	old, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, a.Key.Public(), a.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := PeerIDFromCert([][]byte{old}); err != nil || got != a.ID {
		t.Errorf("expired certificate: %s, %v", got, err)
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		raw  [][]byte
		want string
	}{
		{"A's key signed by B", [][]byte{certFor(t, a.Key.Public(), b.Key)}, "not signed by its own key"},
		{"ECDSA certificate", [][]byte{certFor(t, ecKey.Public(), ecKey)}, "not ed25519"},
		{"no certificate", nil, "want one certificate"},
		{"a chain", [][]byte{a.crt.Certificate[0], b.crt.Certificate[0]}, "want one certificate"},
		{"garbage", [][]byte{{0x30, 0x03, 0x01, 0x02, 0x03}}, "parse certificate"},
	}
	for _, tt := range tests {
		got, err := PeerIDFromCert(tt.raw)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %s, %v; want an error saying %q", tt.name, got, err, tt.want)
		}
	}
}

type handshakeResult struct {
	server, client error
	serverSaw      PeerID // the client's ID as the server verified it
	clientSaw      PeerID
	alpn           string
}

// handshake runs a real TLS 1.3 handshake over loopback TCP (kernel buffers let
// each side finish writing without waiting for the other to read).
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		cc.Close()
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	s, c := tls.Server(sc, srv), tls.Client(cc, cli)
	defer s.Close()
	defer c.Close()

	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res.server = s.Handshake(); res.server == nil {
			res.serverSaw, res.server = RemotePeerID(s.ConnectionState())
		}
	}()
	if res.client = c.Handshake(); res.client == nil {
		res.clientSaw, res.client = RemotePeerID(c.ConnectionState())
		res.alpn = c.ConnectionState().NegotiatedProtocol
	} else {
		cc.Close() // the server may be waiting for a flight that will not come
	}
	<-done
	return res
}

func TestTLSPinning(t *testing.T) {
	server, _ := GenerateIdentity()
	client, _ := GenerateIdentity()
	stranger, _ := GenerateIdentity()

	// The expected ID: both sides learn each other's verified ID.
	r := handshake(t, server.ServerTLS(), client.ClientTLS(server.ID))
	if r.client != nil || r.server != nil {
		t.Fatalf("pinned handshake failed: client %v, server %v", r.client, r.server)
	}
	if r.clientSaw != server.ID || r.serverSaw != client.ID {
		t.Errorf("client saw %s (want %s), server saw %s (want %s)", r.clientSaw.Short(), server.ID.Short(), r.serverSaw.Short(), client.ID.Short())
	}
	if r.alpn != ALPN {
		t.Errorf("ALPN %q, want %q", r.alpn, ALPN)
	}

	// Another ID: the dialler refuses the server, naming the mismatch.
	r = handshake(t, server.ServerTLS(), client.ClientTLS(stranger.ID))
	if !errors.Is(r.client, ErrPeerIDMismatch) {
		t.Errorf("wrong ID: client %v, want ErrPeerIDMismatch", r.client)
	}

	// No expectation (a bootstrap dial): any well-formed identity is accepted and
	// RemotePeerID says which one it was.
	r = handshake(t, server.ServerTLS(), client.ClientTLS(PeerID{}))
	if r.client != nil || r.server != nil || r.clientSaw != server.ID {
		t.Errorf("unpinned: client %v, server %v, saw %s", r.client, r.server, r.clientSaw.Short())
	}

	// A client with no certificate is refused: every connection proves its ID.
	anon := client.ClientTLS(server.ID)
	anon.Certificates = nil
	r = handshake(t, server.ServerTLS(), anon)
	if r.server == nil {
		t.Error("server accepted a client without a certificate")
	} else {
		t.Logf("no client certificate: %v", r.server)
	}

	// A client whose certificate is not signed by its own key is refused.
	forged := client.ClientTLS(server.ID)
	forged.Certificates = []tls.Certificate{{
		Certificate: [][]byte{certFor(t, stranger.Key.Public(), client.Key)},
		PrivateKey:  client.Key,
	}}
	r = handshake(t, server.ServerTLS(), forged)
	if r.server == nil || !strings.Contains(r.server.Error(), "not signed by its own key") {
		t.Errorf("forged client certificate: server %v", r.server)
	}
}

func TestGenerateIdentityDistinct(t *testing.T) {
	a, _ := GenerateIdentity()
	b, _ := GenerateIdentity()
	if a.ID == b.ID || bytes.Equal(a.Key, b.Key) {
		t.Fatal("two generated identities are the same")
	}
	c, err := NewIdentity(a.Key)
	if err != nil || c.ID != a.ID {
		t.Fatalf("NewIdentity from the same key: %v, %v", c, err)
	}
}
