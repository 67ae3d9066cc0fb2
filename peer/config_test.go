package peer

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// A zero Config is completed to DefaultConfig, but for the fields whose
// default comes from others.
func TestConfigDefaults(t *testing.T) {
	got := Config{DataDir: "/d"}.withDefaults()
	want := DefaultConfig()
	want.DataDir, want.ControlSocket = "/d", filepath.Join("/d", "peer.sock")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("zero config completed to\n%+v\nwant\n%+v", got, want)
	}
	def := DefaultConfig()
	def.DataDir = "/d"
	again := def.withDefaults()
	again.ControlSocket = ""
	if !reflect.DeepEqual(again, def) {
		t.Errorf("DefaultConfig is not complete: completed to\n%+v", again)
	}
	if got := (Config{}).withDefaults(); got.DataDir != DefaultDataDir() {
		t.Errorf("data dir %q, want %q", got.DataDir, DefaultDataDir())
	}
}

func TestConfigKeepsWhatIsSet(t *testing.T) {
	in := Config{DataDir: "/d", Listen: "127.0.0.1:0", ProbeInterval: -1, OptimisticSlots: -1, Attach: 1,
		PunchTimeout: time.Second, InboxPolicy: InboxNobody, ControlSocket: "-"}
	got := in.withDefaults()
	if got.Listen != in.Listen || got.ProbeInterval != -1 || got.OptimisticSlots != -1 || got.Attach != 1 ||
		got.PunchTimeout != time.Second || got.InboxPolicy != InboxNobody || got.ControlSocket != "-" {
		t.Errorf("set fields changed: %+v", got)
	}
	// Below zero means unset where it means nothing else.
	if got := (Config{DataDir: "/d", Attach: -1, StallTimeout: -time.Second}).withDefaults(); got.Attach != DefaultConfig().Attach ||
		got.StallTimeout != DefaultConfig().StallTimeout {
		t.Errorf("negative values kept: %d, %v", got.Attach, got.StallTimeout)
	}
}

func TestDataDirFrom(t *testing.T) {
	if got := DataDirFrom(func(k string) string { return map[string]string{DataDirEnv: "/x"}[k] }); got != "/x" {
		t.Errorf("with $%s: %q", DataDirEnv, got)
	}
	if got := DataDirFrom(func(string) string { return "" }); got == "" || got == "/x" {
		t.Errorf("without $%s: %q", DataDirEnv, got)
	}
}
