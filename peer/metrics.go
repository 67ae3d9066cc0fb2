package peer

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/supernet-p2p/supernet/peer/apitype"
)

// collector is the daemon's metrics for Prometheus, read from its status
// when scraped.
type collector struct {
	d                                                                 *Daemon
	up, down, attached, links, swarms, downloads, files, bytes, inbox *prometheus.Desc
}

func newCollector(d *Daemon) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("supernet_peer_"+name, help, labels, nil)
	}
	return &collector{d: d,
		up:        desc("uploaded_bytes_total", "Bytes of pieces sent to other peers."),
		down:      desc("downloaded_bytes_total", "Bytes of verified pieces fetched from other peers."),
		attached:  desc("supernodes_attached", "Supernodes this peer is attached to now."),
		links:     desc("links", "Links to other peers, by path.", "path"),
		swarms:    desc("swarms", "Files this peer exchanges with others, by role.", "role"),
		downloads: desc("downloads", "Downloads running."),
		files:     desc("shared_files", "Files in the share folder."),
		bytes:     desc("shared_bytes", "Bytes in the share folder."),
		inbox:     desc("inbox_files", "Files that arrived in the inbox."),
	}
}

// Describe lists the descriptions without a Collect: the collector is
// registered before the daemon it reads is whole.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.down, c.attached, c.links, c.swarms, c.downloads, c.files, c.bytes, c.inbox} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.Status()
	m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	m(c.up, prometheus.CounterValue, float64(st.Uploaded))
	m(c.down, prometheus.CounterValue, float64(st.Downloaded))
	attached := 0
	for _, sn := range st.Supernodes {
		if sn.Connected {
			attached++
		}
	}
	m(c.attached, prometheus.GaugeValue, float64(attached))
	paths := map[string]int{apitype.PathDirect: 0, apitype.PathRelayed: 0}
	for _, l := range st.Links {
		paths[l.Path]++
	}
	for p, n := range paths {
		m(c.links, prometheus.GaugeValue, float64(n), p)
	}
	roles := map[string]int{}
	for _, s := range st.Swarms {
		roles[s.Role]++
	}
	for r, n := range roles {
		m(c.swarms, prometheus.GaugeValue, float64(n), r)
	}
	m(c.downloads, prometheus.GaugeValue, float64(len(st.Downloads)))
	m(c.files, prometheus.GaugeValue, float64(len(st.Shared)))
	m(c.bytes, prometheus.GaugeValue, float64(st.SharedSize))
	if list, err := c.d.Inbox(); err == nil {
		m(c.inbox, prometheus.GaugeValue, float64(len(list)))
	}
}

// metricsHandler serves the daemon's metrics, with Go's, in Prometheus text:
// on the control socket and the web page, at /metrics.
func (d *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(d), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2})
}

// Metrics is the control API's /metrics.
func (b backend) Metrics() http.Handler { return b.metrics }
