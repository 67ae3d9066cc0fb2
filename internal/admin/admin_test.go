package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var unhealthy atomic.Bool
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_hits_total", Help: "Hits."})
	hits.Add(3)
	s, err := New(Config{Listen: "127.0.0.1:0", Version: "v9 abc", Collectors: []prometheus.Collector{hits},
		Health: func() error {
			if unhealthy.Load() {
				return errors.New("shutting down")
			}
			return nil
		}, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	stop := s.Go(context.Background())
	base := "http://" + s.Addr().String()

	// A client that sends half a request holds nothing up.
	half, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n"))

	cases := []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/metrics", 200, "test_hits_total 3\n"},
		{"GET", "/metrics", 200, `supernet_build_info{version="v9 abc"} 1`},
		{"GET", "/metrics", 200, "go_goroutines "},
		{"POST", "/metrics", 405, ""},
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/debug/pprof/", 200, "goroutine"},
		{"GET", "/", 200, "/metrics"},
		{"GET", "/nothing", 404, ""},
	}
	for _, c := range cases {
		code, body := get(t, c.method, base+c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %.300q, want %d and %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
	unhealthy.Store(true)
	if code, body := get(t, "GET", base+"/healthz"); code != 503 || body != "unhealthy: shutting down\n" {
		t.Errorf("unhealthy /healthz: %d %q", code, body)
	}
	stop()
	s.Close() // again: no panic, no error that matters
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Error("still listening after stop")
	}
}

func TestServerWarnsOffLoopback(t *testing.T) {
	var logs bytes.Buffer
	s, err := New(Config{Listen: "0.0.0.0:0", Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "admin listener is not on loopback") {
		t.Errorf("no warning for a listener on all interfaces: %s", logs.String())
	}
	logs.Reset()
	if s, err = New(Config{Listen: "127.0.0.1:0", Log: zerolog.New(&logs)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if logs.Len() > 0 {
		t.Errorf("a loopback listener logged %s", logs.String())
	}
}

func TestServerBadAddress(t *testing.T) {
	if _, err := New(Config{Listen: "127.0.0.1:99999"}); err == nil || !strings.Contains(err.Error(), "admin:") {
		t.Errorf("bad address: %v", err)
	}
}
