package supernode

import (
	"reflect"
	"testing"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
)

// A zero Config is completed to DefaultConfig, but for the fields whose
// default comes from others or from the clock.
func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := DefaultConfig()
	want.StepDownBelow = max(1, want.LeafLimit/10)
	want.Router = RouterConfig{} // NewRouter completes it
	if got.Incarnation == 0 {
		t.Error("no incarnation")
	}
	want.Incarnation = got.Incarnation
	if got.Memory == nil {
		t.Error("no memory reading")
	}
	got.Memory = nil // funcs do not compare
	if !reflect.DeepEqual(got, want) {
		t.Errorf("zero config completed to\n%+v\nwant\n%+v", got, want)
	}
	def := DefaultConfig()
	again := def.withDefaults()
	again.StepDownBelow, again.Incarnation, again.Memory = 0, 0, nil
	if !reflect.DeepEqual(again, def) {
		t.Errorf("DefaultConfig is not complete: completed to\n%+v", again)
	}
}

func TestConfigKeepsWhatIsSet(t *testing.T) {
	in := Config{Listen: "127.0.0.1:0", MaxLeaves: 5, LeafLimit: -1, Neighbours: -1, PromoteEvery: time.Hour,
		StepDownAfter: time.Second, Incarnation: 7, LeafDirRate: 0.5}
	got := in.withDefaults()
	if got.Listen != in.Listen || got.MaxLeaves != 5 || got.LeafLimit != -1 || got.Neighbours != -1 ||
		got.PromoteEvery != time.Hour || got.StepDownAfter != time.Second || got.Incarnation != 7 || got.LeafDirRate != 0.5 {
		t.Errorf("set fields changed: %+v", got)
	}
	// Never promoting, a supernode is underused below one leaf.
	if got.StepDownBelow != 1 {
		t.Errorf("step down below %d with no promotions, want 1", got.StepDownBelow)
	}
	if got := (Config{LeafLimit: 500}).withDefaults(); got.StepDownBelow != 50 {
		t.Errorf("step down below %d for a leaf limit of 500, want 50", got.StepDownBelow)
	}
	// Below zero means unset where it means nothing else.
	if got := (Config{MaxLeaves: -3, GossipInterval: -time.Second}).withDefaults(); got.MaxLeaves != DefaultConfig().MaxLeaves ||
		got.GossipInterval != DefaultConfig().GossipInterval {
		t.Errorf("negative values kept: %d, %v", got.MaxLeaves, got.GossipInterval)
	}
}

func TestRouterConfigDefaults(t *testing.T) {
	var got RouterConfig
	got.defaults()
	if got.Now == nil || got.Rand == nil || got.Incarnation == 0 {
		t.Fatal("no clock, random source or incarnation")
	}
	got.Now, got.Rand, got.Incarnation = nil, nil, 0
	if want := DefaultRouterConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("zero router config completed to\n%+v\nwant\n%+v", got, want)
	}
	set := RouterConfig{HopLimit: 255, MaxResults: 3, NeighbourQueryRate: 1}
	set.defaults()
	if set.HopLimit != protocol.MaxHops || set.MaxResults != 3 || set.NeighbourQueryRate != 1 ||
		set.NeighbourQueryBurst != DefaultRouterConfig().NeighbourQueryBurst {
		t.Errorf("set fields not kept, or hops not capped: %+v", set)
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
