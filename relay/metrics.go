package relay

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is the relay's metrics for Prometheus, read from Load when
// scraped. Register it once.
func (s *Server) Collector() prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("supernet_relay_"+name, help, labels, nil)
	}
	return &collector{s: s,
		allocs:   d("allocations", "Live TURN allocations."),
		capacity: d("allocation_capacity", "Most allocations at once (MaxAllocations)."),
		bytes:    d("bytes_total", "Payload bytes relayed, both directions."),
		rate:     d("bytes_per_second", "Payload bytes relayed per second over the last few seconds."),
		refused:  d("refused_total", "Requests refused or allocations stopped, by reason.", "reason"),
	}
}

type collector struct {
	s                                      *Server
	allocs, capacity, bytes, rate, refused *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ld := c.s.Load()
	ch <- prometheus.MustNewConstMetric(c.allocs, prometheus.GaugeValue, float64(ld.Allocations))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(ld.Capacity))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(ld.BytesRelayed))
	ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, ld.Rate)
	for _, r := range []struct {
		reason string
		v      uint64
	}{
		{"credentials", ld.AuthFailures},
		{"quota", ld.QuotaStops},
		{"allocation", ld.AllocationsRefused},
		{"permission", ld.PermissionsRefused},
		{"tcp", ld.TCPRefused},
	} {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(r.v), r.reason)
	}
}

// Healthy says why the relay is not serving, or nil: for a health check.
func (s *Server) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errors.New("shutting down")
	}
	return nil
}
