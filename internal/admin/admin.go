// Package admin is the operator's HTTP listener of a supernode or relay:
// Prometheus metrics at /metrics, a health check at /healthz and Go's
// profiler at /debug/pprof/. It is off unless an address is given, and that
// address should be loopback: the profiler shows the process's internals.
// It is not a user interface; the peer daemon has its own.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Config is what the listener serves.
type Config struct {
	// Listen is the TCP address, e.g. 127.0.0.1:9090.
	Listen string
	// Version is the build's version, exported as supernet_build_info.
	Version string
	// Collectors are the process's own metrics; Go's runtime and process
	// metrics are added.
	Collectors []prometheus.Collector
	// Health says why the process is unhealthy, or nil; /healthz answers
	// 503 with the reason, or 200. Nil: healthy while serving.
	Health func() error
	Log    zerolog.Logger
}

// Server is a running admin listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	log  zerolog.Logger
	once sync.Once
}

// Timeouts of the listener: a client gets this long for its request
// headers, and an idle keep-alive connection is closed after idleTimeout.
// There is no write timeout: a CPU profile streams for as long as asked.
const (
	headerTimeout = 10 * time.Second
	idleTimeout   = 2 * time.Minute
)

// New listens on cfg.Listen; Serve answers.
func New(cfg Config) (*Server, error) {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "supernet_build_info",
		Help: "Always 1; the version label is the build's.", ConstLabels: prometheus.Labels{"version": cfg.Version}})
	build.Set(1)
	cs := append([]prometheus.Collector{build, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, cfg.Collectors...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLog{cfg.Log}, MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	health := cfg.Health
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "/metrics  Prometheus metrics\n/healthz  health check\n/debug/pprof/  Go profiler")
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if !Loopback(ln.Addr()) {
		cfg.Log.Warn().Str("listen", ln.Addr().String()).
			Msg("admin listener is not on loopback: anyone who reaches it sees the metrics and the profiler")
	}
	return &Server{
		ln: ln, log: cfg.Log,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout,
			MaxHeaderBytes: 16 << 10},
	}, nil
}

// Loopback reports whether addr is on a loopback address.
func Loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr is where the listener listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until ctx ends or Close is called; it then returns nil.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin: %w", err)
}

// Close stops the listener and the requests in flight; it may be called more
// than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.srv.Close()
		s.ln.Close() // in case Serve never ran
	})
	return err
}

// promLog sends promhttp's errors (a collector that failed) to the log.
type promLog struct{ log zerolog.Logger }

func (p promLog) Println(v ...any) { p.log.Warn().Msg(fmt.Sprint(v...)) }

// Go serves in a goroutine until ctx ends; stop closes the listener and
// waits for that goroutine.
func (s *Server) Go(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(ctx); err != nil {
			s.log.Error().Err(err).Msg("admin listener stopped")
		}
	}()
	return func() {
		s.Close()
		<-done
	}
}
