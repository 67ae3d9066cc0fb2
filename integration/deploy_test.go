package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits checks deploy/'s units with systemd-analyze verify, with
// ExecStart pointed at the binaries this test built: an unknown key, a bad
// value or a missing binary fails it.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	sn, pe := binaries(t)
	dir := t.TempDir()
	bins := map[string]string{"/usr/local/bin/supernode": sn, "/usr/local/bin/relay": built.relay, "%h/.local/bin/peer": pe}
	for _, unit := range []string{"supernode.service", "relay.service", "peer.service"} {
		b, err := os.ReadFile(filepath.Join("..", "deploy", "systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for from, to := range bins {
			s = strings.ReplaceAll(s, from, to)
		}
		path := filepath.Join(dir, unit)
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"verify", "--man=no", path}
		cmd := exec.Command(analyze, args...)
		if unit == "peer.service" {
			run := filepath.Join(dir, "run")
			if err := os.MkdirAll(run, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(analyze, append([]string{"--user"}, args...)...)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+run, "HOME="+dir)
		}
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}
