package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// The overlay the in-process tests run: every supernode they start is
// admitted to it, and every peer trusts it.
var testNetKey = func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

var testNetwork = protocol.NetworkIDOf(testNetKey)

// testAdmit is a chain admitting id to every role for a day.
func testAdmit(id *protocol.Identity) protocol.Chain {
	return protocol.Admit(testNetKey, id.Key.Public().(ed25519.PublicKey),
		protocol.CertSupernode|protocol.CertRelay|protocol.CertAdmit, time.Now().Add(24*time.Hour))
}

// operator admits supernodes run as binaries the way a person does: a
// network key made with `supernode network init`, and for each supernode
// `supernode id --key` on its data directory and `supernode admit`.
type operator struct {
	t       *testing.T
	bin     string
	keyFile string
	network string
}

func newOperator(t *testing.T, supernodeBin, dir string) *operator {
	t.Helper()
	o := &operator{t: t, bin: supernodeBin, keyFile: filepath.Join(dir, "operator", protocol.NetworkKeyFile)}
	r := runBinary(t, 20*time.Second, nil, supernodeBin, "network", "init", "--network-key", o.keyFile)
	if r.code != 0 {
		t.Fatalf("supernode network init: %s", r)
	}
	o.network = strings.TrimSpace(r.stdout)
	if _, err := protocol.ParseNetworkID(o.network); err != nil {
		t.Fatalf("supernode network init printed %q: %v", o.network, err)
	}
	return o
}

// admit puts a certificate for the supernode of dataDir in that directory,
// where the supernode finds it at start.
func (o *operator) admit(dataDir string) {
	t := o.t
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, 20*time.Second, nil, o.bin, "id", "--key", "--data-dir", dataDir)
	if r.code != 0 {
		t.Fatalf("supernode id --key: %s", r)
	}
	key := strings.TrimSpace(r.stdout)
	r = runBinary(t, 20*time.Second, nil, o.bin, "admit", key, "--network-key", o.keyFile,
		"-o", filepath.Join(dataDir, protocol.CertFile))
	if r.code != 0 {
		t.Fatalf("supernode admit: %s", r)
	}
}
