package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/supernet-p2p/supernet/content/contenttest"
	"github.com/supernet-p2p/supernet/internal/cli"
)

var adminRE = regexp.MustCompile(`admin listening on http://(\S+) `)

// adminAddr waits for p to print its admin address.
func adminAddr(t *testing.T, p *process) string {
	t.Helper()
	var m []string
	pollUntil(t, raceSlowdown*10*time.Second, p.name+"'s admin listener", func() (bool, string) {
		m = adminRE.FindStringSubmatch(p.stderr.String())
		return m != nil || p.exited(), p.stderr.String()
	})
	if m == nil {
		t.Fatalf("%s exited without an admin listener: %s", p.name, p.stderr.String())
	}
	return m[1]
}

// httpGet fetches url and returns the status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrape parses the Prometheus text at addr's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, body)
	}
	return fams
}

// metric is the value of the sample of family name whose labels include
// labels (name=value pairs), or -1 when there is none.
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestAdminListener runs a supernode and a relay with --admin: /metrics shows
// the leaves, the searches and their durations, and the relay the supernode
// refused because it has no relay secret; /healthz and the profiler answer;
// SIGTERM is logged.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	share := filepath.Join(l.root, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := contenttest.WriteID3v2MP3(filepath.Join(share, "The Beatles - Hey Jude.mp3"), "Hey Jude", "The Beatles", "Hey Jude", 50_000, 1); err != nil {
		t.Fatal(err)
	}
	sn, _, snProc := l.supernodeWith("sn", []string{"--admin", "127.0.0.1:0", "--log-json"})
	snAdmin := adminAddr(t, snProc)
	alice := l.daemon("alice", share, sn)
	bob := l.daemon("bob", "", sn)
	l.waitAttached(alice)
	l.waitAttached(bob)
	const searches = 3
	for range searches {
		pollUntil(t, raceSlowdown*15*time.Second, "bob to find alice's song", func() (bool, string) {
			r := l.peer(bob.dataDir, "search", "hey jude")
			return r.code == 0 && strings.Contains(r.stdout, "Hey Jude"), r.String()
		})
	}
	fams := scrape(t, snAdmin)
	for _, c := range []struct {
		name   string
		labels []string
		least  float64
	}{
		{"supernet_supernode_leaves", nil, 2},
		{"supernet_supernode_members", nil, 1},
		{"supernet_supernode_indexed_files", nil, 1},
		{"supernet_supernode_queries_received_total", []string{"from", "leaf"}, searches},
		{"supernet_supernode_leaf_query_duration_seconds", nil, searches},
		{"supernet_supernode_hits_sent_total", nil, searches},
		{"supernet_supernode_refused_total", []string{"reason", "leaves_full"}, 0},
		{"supernet_build_info", []string{"version", cli.Version()}, 1},
		{"go_goroutines", nil, 1},
		{"process_resident_memory_bytes", nil, 1},
	} {
		if v := metric(fams, c.name, c.labels...); v < c.least {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.least)
		}
	}
	if v := metric(fams, "supernet_supernode_leaves"); v != 2 {
		t.Errorf("leaves = %v, want 2", v)
	}
	if code, body := httpGet(t, "http://"+snAdmin+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, "http://"+snAdmin+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine: %d %.200q", code, body)
	}

	// A relay that reports to a supernode without a relay secret is refused,
	// and both say why.
	secret := filepath.Join(l.root, "relay.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := startProcess(t, "relay", built.relay, "--listen", freeUDPAddr(t), "--relay-ip", "127.0.0.1", "--secret-file", secret,
		"--data-dir", filepath.Join(l.root, "relay"), "--supernode", sn, "--admin", "127.0.0.1:0", "--log-json")
	relayAdmin := adminAddr(t, relay)
	pollUntil(t, raceSlowdown*15*time.Second, "the supernode to refuse the relay", func() (bool, string) {
		v := metric(scrape(t, snAdmin), "supernet_supernode_refused_total", "reason", "no_relay_secret")
		return v >= 1 && strings.Contains(relay.stderr.String(), "no relay secret") &&
			strings.Contains(relay.stderr.String(), "supernode refused this relay"), relay.stderr.String()
	})
	if !strings.Contains(snProc.stderr.String(), "relay refused: this supernode has no relay secret") {
		t.Errorf("the supernode did not log why it refused the relay")
	}
	rf := scrape(t, relayAdmin)
	for _, name := range []string{"supernet_relay_allocations", "supernet_relay_bytes_total", "supernet_relay_allocation_capacity"} {
		if v := metric(rf, name); v < 0 {
			t.Errorf("relay lacks %s", name)
		}
	}
	if v := metric(rf, "supernet_relay_refused_total", "reason", "credentials"); v != 0 {
		t.Errorf("relay refused_total{credentials} = %v, want 0", v)
	}
	if code, _ := httpGet(t, "http://"+relayAdmin+"/healthz"); code != http.StatusOK {
		t.Errorf("relay /healthz: %d", code)
	}

	snProc.stop(t)
	if !strings.Contains(snProc.stderr.String(), `"cause":"terminated signal received","time"`) ||
		!strings.Contains(snProc.stderr.String(), "supernode stopping") {
		t.Errorf("SIGTERM was not logged:\n%s", snProc.stderr.String())
	}
}
