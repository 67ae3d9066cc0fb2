package relay

import (
	"reflect"
	"testing"

	"github.com/rs/zerolog"
)

// New completes a Config's limits to DefaultConfig's.
func TestConfigDefaults(t *testing.T) {
	s := newRelay(t, Config{ListenTCP: "-"}, zerolog.WarnLevel)
	got := s.cfg
	// What newRelay sets, and the sockets, which are no defaults.
	got.Secret, got.ListenUDP, got.ListenTCP, got.Log = nil, DefaultListen, "", zerolog.Logger{}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("zero config completed to\n%+v\nwant\n%+v", got, want)
	}
}
