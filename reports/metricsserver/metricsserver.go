// Package metricsserver serves a lab's Prometheus metrics over HTTP: the
// Hubble metrics of its flows and the datapath's own per-reason counters
// of every node, on a loopback address only.
package metricsserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/reports"
)

// CheckAddr accepts only host:port on a loopback address.
func CheckAddr(s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return fmt.Errorf("%q: want a loopback address and port, e.g. 127.0.0.1:9965", s)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%q: metrics are served on loopback only", s)
	}
	return nil
}

// Handle registers GET /metrics on mux: the flows of store so far, then
// each new flow as it is decoded, plus the datapath counters of every
// node of cp (nil: flows only); flows the reader fell behind on are
// counted as lost. The returned stop ends the reading of the store.
func Handle(mux *http.ServeMux, store *flow.Store, cp *controlplane.ControlPlane) (stop func()) {
	m := reports.NewMetrics()
	if cp != nil {
		for _, node := range cp.Nodes() {
			_ = m.RegisterDatapathCounters(node, reports.DatapathMetrics(cp.NodeDatapath(node).Metrics))
		}
	}
	backlog, rd := store.Tail(-1, nil)
	for _, f := range backlog {
		m.Observe(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		buf := make([]*flow.Flow, 256)
		for {
			n, skipped, err := rd.Read(ctx, buf)
			if err != nil {
				return
			}
			m.AddLost(flow.LostObserverQueue, skipped)
			for _, f := range buf[:n] {
				m.Observe(f)
			}
		}
	}()
	mux.Handle("GET /metrics", m.Handler())
	return cancel
}

// Listen binds the metrics address, so that a busy port fails before a
// lab is built.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return ln, nil
}

// Serve serves GET /metrics of mux (and nothing else of it) on ln until
// the returned stop.
func Serve(ln net.Listener, mux *http.ServeMux) (stop func() error) {
	only := http.NewServeMux()
	only.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { mux.ServeHTTP(w, r) })
	srv := &http.Server{Handler: only, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv.Close
}
