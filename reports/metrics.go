package reports

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

// Metrics counts flows into Prometheus metrics with Hubble's names and
// labels, in a registry of its own (never the global one). It is safe for
// concurrent use.
type Metrics struct {
	reg              *prometheus.Registry
	flowsProcessed   *prometheus.CounterVec
	drops            *prometheus.CounterVec
	tcpFlags         *prometheus.CounterVec
	ports            *prometheus.CounterVec
	icmp             *prometheus.CounterVec
	dnsQueries       *prometheus.CounterVec
	dnsResponses     *prometheus.CounterVec
	dnsResponseTypes *prometheus.CounterVec
	lost             *prometheus.CounterVec
	httpRequests     *prometheus.CounterVec
	httpResponses    *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec

	// dnsMu guards dnsAsked: the DNS queries counted from packets (client
	// address and transaction ID), so that a response is counted from its
	// packet only when its query was; queries the DNS proxy handled are
	// counted from its L7 flows instead.
	dnsMu    sync.Mutex
	dnsAsked map[string]DNSObservation
}

// NewMetrics returns metrics registered in a new registry.
func NewMetrics() *Metrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hubble", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg:              prometheus.NewRegistry(),
		flowsProcessed:   c("flows_processed_total", "Total number of flows processed", "type", "subtype", "verdict"),
		drops:            c("drop_total", "Number of drops", "reason", "protocol"),
		tcpFlags:         c("tcp_flags_total", "TCP flag occurrences", "flag", "family"),
		ports:            c("port_distribution_total", "Numbers of packets distributed by destination port", "protocol", "port"),
		icmp:             c("icmp_total", "Number of ICMP messages", "family", "type"),
		dnsQueries:       c("dns_queries_total", "Number of DNS queries observed", "rcode", "qtypes", "ips_returned"),
		dnsResponses:     c("dns_responses_total", "Number of DNS responses observed", "rcode", "qtypes", "ips_returned"),
		dnsResponseTypes: c("dns_response_types_total", "Number of DNS response types observed", "type", "qtypes"),
		lost:             c("lost_events_total", "Number of lost events", "source"),
		// Hubble's http handler (v1 label set, no context labels).
		httpRequests:  c("http_requests_total", "Count of HTTP requests", "method", "protocol", "reporter"),
		httpResponses: c("http_responses_total", "Count of HTTP responses", "method", "protocol", "status", "reporter"),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "hubble", Name: "http_request_duration_seconds",
			Help: "Quantiles of HTTP request duration in seconds"}, []string{"method", "reporter"}),
	}
	m.reg.MustRegister(m.flowsProcessed, m.drops, m.tcpFlags, m.ports, m.icmp, m.dnsQueries, m.dnsResponses, m.dnsResponseTypes, m.lost,
		m.httpRequests, m.httpResponses, m.httpDuration)
	return m
}

// MetricsFromFlows counts flows into new Metrics (for reports of a run
// whose live metrics were not kept).
func MetricsFromFlows(flows []*flow.Flow) *Metrics {
	m := NewMetrics()
	for _, f := range flows {
		m.Observe(f)
	}
	return m
}

// Registry returns the registry the metrics live in, to add collectors or
// to serve it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts one flow.
//
//   - hubble_flows_processed_total{type,subtype,verdict}: every flow; type
//     is Trace, Drop or PolicyVerdict, subtype the observation point of a
//     trace ("to-endpoint").
//   - hubble_drop_total{reason,protocol}: drop events (not the policy
//     verdicts that accompany them), reason as text ("Policy denied").
//   - hubble_tcp_flags_total{flag,family}: FIN, RST, SYN, SYN-ACK of drop and
//     trace flows.
//   - hubble_port_distribution_total{protocol,port}: destination port of
//     forwarded, non-reply trace flows.
//   - hubble_icmp_total{family,type}: ICMP messages of drop and trace flows.
//   - hubble_dns_*: DNS messages of the DNS proxy's L7 flows (as Hubble
//     counts them; a query the proxy refused has rcode "Policy denied"),
//     and exchanges parsed from packets that did not go through the proxy,
//     counted when the response reaches the client (observePacketDNS).
//   - hubble_http_requests_total{method,protocol,reporter},
//     hubble_http_responses_total{method,protocol,status,reporter} and
//     hubble_http_request_duration_seconds{method,reporter}: L7 HTTP flows
//     of the proxies (reporter: client for egress, server for ingress).
func (m *Metrics) Observe(f *flow.Flow) {
	kind := f.EventKind()
	var typ, sub string
	switch kind {
	case flow.EventDrop:
		typ = "Drop"
	case flow.EventTrace:
		typ = "Trace"
		sub = flow.ObsPoint(f.EventType.SubType).String()
	case flow.EventPolicyVerdict:
		typ = "PolicyVerdict"
	case flow.EventCapture:
		typ = "Capture"
	case flow.EventL7:
		typ = "L7"
		if f.L7 != nil && f.L7.DNS != nil {
			sub = "DNS"
		} else if f.L7 != nil && f.L7.HTTP != nil {
			sub = "HTTP"
		}
	default:
		typ, sub = "Unknown", strconv.Itoa(int(kind))
	}
	m.flowsProcessed.WithLabelValues(typ, sub, f.Verdict.String()).Inc()
	if kind == flow.EventPolicyVerdict {
		return
	}
	if kind == flow.EventL7 {
		m.observeHTTP(f)
		if d := f.L7.DNS; d != nil {
			o := DNSObservation{Response: f.L7.Type == flow.L7Response, Rcode: uint8(d.Rcode), QTypes: d.QTypes, IPsReturned: len(d.IPs), RRTypes: d.RRTypes,
				Denied: f.Verdict == flow.VerdictDropped}
			m.ObserveDNS(o)
		}
		return
	}
	proto := f.Protocol()
	if kind == flow.EventDrop {
		m.drops.WithLabelValues(flow.DropReason(f.EventType.SubType).Text(), proto).Inc()
	}
	family := ""
	if f.IP != nil {
		family = f.IP.IPVersion.String()
	}
	if f.L4 != nil {
		switch {
		case f.L4.TCP != nil && f.L4.TCP.Flags != nil:
			fl := f.L4.TCP.Flags
			if fl.FIN {
				m.tcpFlags.WithLabelValues("FIN", family).Inc()
			}
			if fl.RST {
				m.tcpFlags.WithLabelValues("RST", family).Inc()
			}
			if fl.SYN {
				if fl.ACK {
					m.tcpFlags.WithLabelValues("SYN-ACK", family).Inc()
				} else {
					m.tcpFlags.WithLabelValues("SYN", family).Inc()
				}
			}
		case f.L4.ICMPv4 != nil:
			m.icmp.WithLabelValues("IPv4", layers.CreateICMPv4TypeCode(uint8(f.L4.ICMPv4.Type), uint8(f.L4.ICMPv4.Code)).String()).Inc()
		case f.L4.ICMPv6 != nil:
			m.icmp.WithLabelValues("IPv6", layers.CreateICMPv6TypeCode(uint8(f.L4.ICMPv6.Type), uint8(f.L4.ICMPv6.Code)).String()).Inc()
		}
	}
	reply, _ := f.IsReplyKnown()
	if kind == flow.EventTrace && f.Verdict == flow.VerdictForwarded && !reply {
		if _, dp := f.Ports(); dp != 0 {
			m.ports.WithLabelValues(proto, strconv.FormatUint(uint64(dp), 10)).Inc()
		}
	}
	if f.DNS != nil && kind == flow.EventTrace {
		m.observePacketDNS(f, flow.ObsPoint(f.EventType.SubType))
	}
}

// observePacketDNS counts DNS messages parsed from packets, one exchange
// once: a query leaving its client (from-endpoint) is held until its
// response reaches the client (to-endpoint), and both are counted then.
// A query the datapath hands to the DNS proxy (to-proxy) is dropped from
// the held ones, since the proxy's L7 flows count that exchange. Queries
// that never get an answer are not counted.
func (m *Metrics) observePacketDNS(f *flow.Flow, obs flow.ObsPoint) {
	if f.IP == nil {
		return
	}
	m.dnsMu.Lock()
	defer m.dnsMu.Unlock()
	if m.dnsAsked == nil {
		m.dnsAsked = map[string]DNSObservation{}
	}
	d := f.DNS
	switch {
	case !d.Response && obs == flow.ObsFromEndpoint:
		if len(m.dnsAsked) < 1<<16 {
			m.dnsAsked[f.IP.Source+"/"+strconv.Itoa(int(d.ID))] = DNSObservation{QTypes: d.QTypes}
		}
	case !d.Response && obs == flow.ObsToProxy:
		delete(m.dnsAsked, f.IP.Source+"/"+strconv.Itoa(int(d.ID)))
	case d.Response && obs == flow.ObsToEndpoint:
		k := f.IP.Destination + "/" + strconv.Itoa(int(d.ID))
		q, ok := m.dnsAsked[k]
		if !ok {
			return
		}
		delete(m.dnsAsked, k)
		m.ObserveDNS(q)
		m.ObserveDNS(DNSObservation{Response: true, Rcode: d.Rcode, QTypes: d.QTypes, IPsReturned: len(d.IPs), RRTypes: d.RRTypes})
	}
}

func (m *Metrics) observeHTTP(f *flow.Flow) {
	if f.L7 == nil || f.L7.HTTP == nil {
		return
	}
	reporter := "unknown"
	switch f.TrafficDirection {
	case flow.Egress:
		reporter = "client"
	case flow.Ingress:
		reporter = "server"
	}
	h := f.L7.HTTP
	switch f.L7.Type {
	case flow.L7Request:
		m.httpRequests.WithLabelValues(h.Method, h.Protocol, reporter).Inc()
	case flow.L7Response:
		m.httpResponses.WithLabelValues(h.Method, h.Protocol, strconv.Itoa(int(h.Code)), reporter).Inc()
		m.httpDuration.WithLabelValues(h.Method, reporter).Observe(float64(f.L7.LatencyNs) / 1e9)
	}
}

// DNSObservation is one DNS message, parsed from a packet or reported by
// the lab's DNS workload.
type DNSObservation struct {
	// Response is false for a query.
	Response bool
	// Denied is a query the DNS proxy refused by policy (rcode label
	// "Policy denied", as Hubble's).
	Denied bool
	// Rcode is the response code of a response.
	Rcode uint8
	// QTypes are the question types ("A", "AAAA").
	QTypes []string
	// IPsReturned is the number of A/AAAA answers.
	IPsReturned int
	// RRTypes are the types of the answer records.
	RRTypes []string
}

// ObserveDNS counts one DNS message into hubble_dns_queries_total,
// hubble_dns_responses_total and hubble_dns_response_types_total.
func (m *Metrics) ObserveDNS(o DNSObservation) {
	qtypes := strings.Join(o.QTypes, ",")
	if !o.Response {
		rcode := ""
		if o.Denied {
			rcode = "Policy denied"
		}
		m.dnsQueries.WithLabelValues(rcode, qtypes, "0").Inc()
		return
	}
	m.dnsResponses.WithLabelValues(flow.RcodeText(o.Rcode), qtypes, strconv.Itoa(o.IPsReturned)).Inc()
	for _, t := range o.RRTypes {
		m.dnsResponseTypes.WithLabelValues(t, qtypes).Inc()
	}
}

// AddLost counts n events lost at source (flow.LostRingBuffer,
// flow.LostObserverQueue).
func (m *Metrics) AddLost(source string, n uint64) {
	if n > 0 {
		m.lost.WithLabelValues(source).Add(float64(n))
	}
}

// DatapathCounterKey indexes the datapath's own metrics map: a reason code
// (0..129 forwarded, 130+ a drop reason) and a traffic direction.
type DatapathCounterKey struct {
	Reason    uint8
	Direction flow.TrafficDirection
}

// DatapathCounter is the packet and byte count of one key, summed over
// CPUs.
type DatapathCounter struct {
	Packets uint64
	Bytes   uint64
}

// DatapathCounterReader reads the datapath's metrics map.
type DatapathCounterReader func() (map[DatapathCounterKey]DatapathCounter, error)

// RegisterDatapathCounters exposes the datapath's per-reason counters on
// every scrape, with Cilium's names: cilium_forward_count_total{direction},
// cilium_forward_bytes_total{direction},
// cilium_drop_count_total{reason,direction},
// cilium_drop_bytes_total{reason,direction}. node, when not empty, is
// added as a constant "node" label, so several nodes can share a registry.
func (m *Metrics) RegisterDatapathCounters(node string, read DatapathCounterReader) error {
	var constLabels prometheus.Labels
	if node != "" {
		constLabels = prometheus.Labels{"node": node}
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cilium_"+name, help, labels, constLabels)
	}
	c := &datapathCollector{
		read:        read,
		fwdPackets:  d("forward_count_total", "Total forwarded packets, tagged by ingress/egress direction", "direction"),
		fwdBytes:    d("forward_bytes_total", "Total forwarded bytes, tagged by ingress/egress direction", "direction"),
		dropPackets: d("drop_count_total", "Total dropped packets, tagged by drop reason and ingress/egress direction", "reason", "direction"),
		dropBytes:   d("drop_bytes_total", "Total dropped bytes, tagged by drop reason and ingress/egress direction", "reason", "direction"),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("register datapath counters of %q: %w", node, err)
	}
	return nil
}

type datapathCollector struct {
	read                                         DatapathCounterReader
	fwdPackets, fwdBytes, dropPackets, dropBytes *prometheus.Desc
}

func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fwdPackets
	ch <- c.fwdBytes
	ch <- c.dropPackets
	ch <- c.dropBytes
}

func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.dropPackets, fmt.Errorf("read datapath metrics: %w", err))
		return
	}
	type fwdKey = flow.TrafficDirection
	fwd := map[fwdKey]DatapathCounter{}
	for k, v := range counters {
		dir := directionLabel(k.Direction)
		if k.Reason < 130 {
			s := fwd[k.Direction]
			s.Packets += v.Packets
			s.Bytes += v.Bytes
			fwd[k.Direction] = s
			continue
		}
		reason := flow.DropReason(k.Reason).Text()
		ch <- prometheus.MustNewConstMetric(c.dropPackets, prometheus.CounterValue, float64(v.Packets), reason, dir)
		ch <- prometheus.MustNewConstMetric(c.dropBytes, prometheus.CounterValue, float64(v.Bytes), reason, dir)
	}
	for d, v := range fwd {
		ch <- prometheus.MustNewConstMetric(c.fwdPackets, prometheus.CounterValue, float64(v.Packets), directionLabel(d))
		ch <- prometheus.MustNewConstMetric(c.fwdBytes, prometheus.CounterValue, float64(v.Bytes), directionLabel(d))
	}
}

func directionLabel(d flow.TrafficDirection) string {
	switch d {
	case flow.Ingress:
		return "INGRESS"
	case flow.Egress:
		return "EGRESS"
	}
	return "UNKNOWN"
}

// WriteText writes every metric in the Prometheus text exposition format
// (the content of metrics.prom). Metrics that could be gathered are written
// even when some collector failed; the failure is returned.
func (m *Metrics) WriteText(w io.Writer) error {
	return WriteRegistryText(w, m.reg)
}

// WriteRegistryText writes everything g gathers in the text exposition
// format.
func WriteRegistryText(w io.Writer, g prometheus.Gatherer) error {
	mfs, gatherErr := g.Gather()
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("write metric %s: %w", mf.GetName(), err)
		}
	}
	if gatherErr != nil {
		return fmt.Errorf("gather metrics: %w", gatherErr)
	}
	return nil
}

// Handler serves the metrics over HTTP (for `podlab up --metrics`).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogErrorLog{}, ErrorHandling: promhttp.ContinueOnError})
}

// slogErrorLog adapts promhttp's error logging to log/slog.
type slogErrorLog struct{}

func (slogErrorLog) Println(v ...any) { slog.Error("serve metrics", "error", fmt.Sprint(v...)) }

// DatapathMetrics adapts a node's Datapath.Metrics to a
// DatapathCounterReader.
func DatapathMetrics(read func() ([]datapath.Metric, error)) DatapathCounterReader {
	return func() (map[DatapathCounterKey]DatapathCounter, error) {
		ms, err := read()
		if err != nil {
			return nil, err
		}
		out := make(map[DatapathCounterKey]DatapathCounter, len(ms))
		for _, m := range ms {
			k := DatapathCounterKey{Reason: uint8(m.Reason), Direction: flow.TrafficDirection(m.Direction)}
			c := out[k]
			c.Packets += m.Packets
			c.Bytes += m.Bytes
			out[k] = c
		}
		return out, nil
	}
}
