package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type testFlags struct {
	listen string
	join   []string
	max    int
	json   bool
	every  time.Duration
	rate   float64
}

func (tf *testFlags) set(args ...string) (*pflag.FlagSet, error) {
	f := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.StringVar(&tf.listen, "listen", ":6346", "")
	f.StringSliceVar(&tf.join, "join", nil, "")
	f.IntVar(&tf.max, "max-leaves", 4000, "")
	f.BoolVar(&tf.json, "log-json", false, "")
	f.DurationVar(&tf.every, "rescan", time.Minute, "")
	f.Float64Var(&tf.rate, "up-rate", 0, "")
	f.String(ConfigFlag, "", "")
	return f, f.Parse(args)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	path := writeFile(t, `
listen = "127.0.0.1:7000"
join = ["a:1", "b:2"]
max-leaves = 10
log-json = true
rescan = "30s"
up-rate = 1.5
`)
	var tf testFlags
	f, _ := tf.set("--max-leaves", "20") // the command line wins
	if ok, err := LoadConfig(f, path, true); !ok || err != nil {
		t.Fatalf("LoadConfig: %v, %v", ok, err)
	}
	want := testFlags{listen: "127.0.0.1:7000", join: []string{"a:1", "b:2"}, max: 20, json: true, every: 30 * time.Second, rate: 1.5}
	if !reflect.DeepEqual(tf, want) {
		t.Errorf("got %+v, want %+v", tf, want)
	}

	// Written back, it reads the same.
	out := filepath.Join(t.TempDir(), "sub", "saved.toml")
	if err := SaveConfig(f, out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("saved config: %v, mode %v", err, fi.Mode())
	}
	var again testFlags
	g, _ := again.set()
	if _, err := LoadConfig(g, out, true); err != nil || !reflect.DeepEqual(again, want) {
		b, _ := os.ReadFile(out)
		t.Errorf("round trip: %+v, %v\n%s", again, err, b)
	}
	// What is not set stays out of the file.
	if b, _ := os.ReadFile(out); strings.Contains(string(b), "config") {
		t.Errorf("saved %s", b)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{`nonsense = 1`, `"nonsense" is not a setting`},
		{`config = "x"`, `"config" is not a setting`},
		{`max-leaves = "many"`, `max-leaves = "many"`},
		{`rescan = 30`, `rescan = "30"`},
		{`listen = ["a", "b"]`, `listen takes one value`},
		{`[table]` + "\n" + `x = 1`, `"table.x" is not a setting`},
		{`listen = `, `config file`},
	}
	for _, c := range cases {
		var tf testFlags
		f, _ := tf.set()
		path := writeFile(t, c.body)
		if _, err := LoadConfig(f, path, true); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v, want an error naming the file and %q", c.body, err, c.want)
		}
	}
	var tf testFlags
	f, _ := tf.set()
	missing := filepath.Join(t.TempDir(), "none.toml")
	if ok, err := LoadConfig(f, missing, false); ok || err != nil {
		t.Errorf("a default file that is not there: %v, %v", ok, err)
	}
	if _, err := LoadConfig(f, missing, true); err == nil {
		t.Error("a named file that is not there was no error")
	}
}
