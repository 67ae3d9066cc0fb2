package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// IdentityFile is the name of the key file inside a node's data directory.
const IdentityFile = "identity.key"

// ErrPeerIDMismatch is returned by a handshake whose certificate carries another
// key than the one the dialler expected.
var ErrPeerIDMismatch = errors.New("peer ID mismatch")

// Identity is a node's ed25519 key pair and the peer ID derived from it.
type Identity struct {
	Key ed25519.PrivateKey
	ID  PeerID
	crt tls.Certificate
}

// NewIdentity makes an identity from a key.
func NewIdentity(key ed25519.PrivateKey) (*Identity, error) {
	pub := key.Public().(ed25519.PublicKey)
	id := &Identity{Key: key, ID: PeerIDFromPublicKey(pub)}
	crt, err := selfSignedCert(key, id.ID)
	if err != nil {
		return nil, err
	}
	id.crt = crt
	return id, nil
}

// GenerateIdentity makes a fresh random identity (tests, ephemeral nodes).
func GenerateIdentity() (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewIdentity(key)
}

// LoadOrCreateIdentity reads dir/identity.key, or creates it (mode 0600) on first run.
// A key file readable by others is refused rather than trusted.
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	key, err := LoadOrCreateKey(dir, IdentityFile)
	if err != nil {
		return nil, err
	}
	return NewIdentity(key)
}

// LoadOrCreateKey reads the ed25519 key in dir/name, or creates it (mode 0600)
// when there is none: node identities and network keys alike.
func LoadOrCreateKey(dir, name string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, name)
	key, err := ReadKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(dir, path, name)
	}
	return key, err
}

// ReadKeyFile reads an ed25519 private key (PEM "PRIVATE KEY", PKCS #8). A key
// file that group or others can read is refused rather than used.
func ReadKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key %s has mode %v: others can read it; run chmod 600 on it", path, fi.Mode().Perm())
	}
	if len(b) == 0 { // a first run that died between creating and writing the file
		return nil, fmt.Errorf("key %s is empty: delete it to make a new key", path)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: not an ed25519 key", path)
	}
	return key, nil
}

// CreateKeyFile writes a new ed25519 key to path (mode 0600); it fails if the
// file exists.
func CreateKeyFile(path string) (ed25519.PrivateKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return key, nil
}

func createKey(dir, path, name string) (ed25519.PrivateKey, error) {
	key, err := CreateKeyFile(path)
	if errors.Is(err, os.ErrExist) { // another process won the race: use its key
		return LoadOrCreateKey(dir, name)
	}
	return key, err
}

func selfSignedCert(key ed25519.PrivateKey, id PeerID) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// PeerIDFromCert checks that a presented certificate is a self-signed ed25519
// certificate and returns the peer ID of its key. The certificate's names and
// dates do not matter: the key is the identity.
func PeerIDFromCert(rawCerts [][]byte) (PeerID, error) {
	if len(rawCerts) != 1 {
		return PeerID{}, fmt.Errorf("want one certificate, got %d", len(rawCerts))
	}
	crt, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return PeerID{}, fmt.Errorf("parse certificate: %w", err)
	}
	pub, ok := crt.PublicKey.(ed25519.PublicKey)
	if !ok {
		return PeerID{}, errors.New("certificate key is not ed25519")
	}
	if err := crt.CheckSignature(crt.SignatureAlgorithm, crt.RawTBSCertificate, crt.Signature); err != nil {
		return PeerID{}, fmt.Errorf("certificate not signed by its own key: %w", err)
	}
	return PeerIDFromPublicKey(pub), nil
}

// RemotePeerID returns the verified peer ID of the other side of a handshake.
func RemotePeerID(cs tls.ConnectionState) (PeerID, error) {
	if len(cs.PeerCertificates) == 0 {
		return PeerID{}, errors.New("no peer certificate")
	}
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	return PeerIDFromCert(raw)
}

// ServerTLS is the TLS config for accepting connections: the client must present
// its own key's certificate, which is verified the same way.
func (id *Identity) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.crt},
		ClientAuth:         tls.RequireAnyClientCert,
		NextProtos:         []string{ALPN},
		InsecureSkipVerify: true, // no CAs: VerifyPeerCertificate checks the key
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := PeerIDFromCert(raw)
			return err
		},
	}
}

// ClientTLS is the TLS config for dialling. When expect is not zero, a server whose
// key does not hash to it fails the handshake with ErrPeerIDMismatch.
func (id *Identity) ClientTLS(expect PeerID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.crt},
		NextProtos:         []string{ALPN},
		ServerName:         "supernet",
		InsecureSkipVerify: true, // no CAs: VerifyPeerCertificate pins the key
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, err := PeerIDFromCert(raw)
			if err != nil {
				return err
			}
			if !expect.IsZero() && got != expect {
				return fmt.Errorf("%w: want %s, server is %s", ErrPeerIDMismatch, expect.Short(), got.Short())
			}
			return nil
		},
	}
}
