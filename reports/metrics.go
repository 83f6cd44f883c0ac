package reports

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

// Metrics counts flows into Prometheus metrics with the names, labels and
// counting rules of Hubble's metric handlers (flow, drop, tcp,
// port-distribution, icmp, dns, http and policy of cilium v1.20.2, no
// context options), in a registry of its own (never the global one).
// tools/hubble-metrics feeds a run's flows into Hubble's own handlers, and
// a test compares the two. It is safe for concurrent use.
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
	policyVerdicts   *prometheus.CounterVec
	lost             *prometheus.CounterVec
	httpRequests     *prometheus.CounterVec
	httpResponses    *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
}

// NewMetrics returns metrics registered in a new registry.
func NewMetrics() *Metrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hubble", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg:              prometheus.NewRegistry(),
		flowsProcessed:   c("flows_processed_total", "Total number of flows processed", "protocol", "type", "subtype", "verdict"),
		drops:            c("drop_total", "Number of drops", "reason", "protocol"),
		tcpFlags:         c("tcp_flags_total", "TCP flag occurrences", "flag", "family"),
		ports:            c("port_distribution_total", "Numbers of packets distributed by destination port", "protocol", "port"),
		icmp:             c("icmp_total", "Number of ICMP messages", "family", "type"),
		dnsQueries:       c("dns_queries_total", "Number of DNS queries observed", "rcode", "qtypes", "ips_returned"),
		dnsResponses:     c("dns_responses_total", "Number of DNS responses observed", "rcode", "qtypes", "ips_returned"),
		dnsResponseTypes: c("dns_response_types_total", "Number of DNS response types", "type", "qtypes"),
		policyVerdicts:   c("policy_verdicts_total", "Number of policy verdicts", "direction", "match", "action"),
		lost:             c("lost_events_total", "Number of lost events", "source"),
		// Hubble's http handler (v1 label set, no context labels).
		httpRequests:  c("http_requests_total", "Count of HTTP requests", "method", "protocol", "reporter"),
		httpResponses: c("http_responses_total", "Count of HTTP responses", "method", "protocol", "status", "reporter"),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "hubble", Name: "http_request_duration_seconds",
			Help: "Quantiles of HTTP request duration in seconds"}, []string{"method", "reporter"}),
	}
	m.reg.MustRegister(m.flowsProcessed, m.drops, m.tcpFlags, m.ports, m.icmp, m.dnsQueries, m.dnsResponses, m.dnsResponseTypes,
		m.policyVerdicts, m.lost, m.httpRequests, m.httpResponses, m.httpDuration)
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

// Observe counts one flow as Hubble's handlers do:
//
//   - hubble_flows_processed_total{protocol,type,subtype,verdict}: every
//     flow; type Trace, Drop, PolicyVerdict, Capture or L7, subtype the
//     observation point of a trace ("to-endpoint") or DNS/HTTP of an L7
//     flow.
//   - hubble_drop_total{reason,protocol}: every flow with verdict DROPPED
//     (drop events, the policy verdicts that accompany them and L7 flows
//     the proxies refused), reason the enum name ("POLICY_DENIED").
//   - hubble_tcp_flags_total{flag,family}: FIN, SYN, SYN-ACK, RST of
//     forwarded or redirected flows with TCP flags.
//   - hubble_port_distribution_total{protocol,port}: destination port of
//     forwarded or redirected flows known not to be replies.
//   - hubble_icmp_total{family,type}: ICMP messages of any flow.
//   - hubble_dns_*: L7 DNS flows of the DNS proxy only (a refused query
//     has rcode "Policy denied").
//   - hubble_policy_verdicts_total{direction,match,action}: policy-verdict
//     flows (but those from the host) and L7 flows (match "l7/dns").
//   - hubble_http_requests_total{method,protocol,reporter},
//     hubble_http_responses_total{method,protocol,status,reporter} and
//     hubble_http_request_duration_seconds{method,reporter}: L7 HTTP flows
//     of the proxies (reporter: client for egress, server for ingress).
func (m *Metrics) Observe(f *flow.Flow) {
	kind := f.EventKind()
	proto := metricProtocol(f)
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
	m.flowsProcessed.WithLabelValues(proto, typ, sub, f.Verdict.String()).Inc()
	if f.Verdict == flow.VerdictDropped {
		m.drops.WithLabelValues(f.DropReasonDesc.String(), proto).Inc()
	}
	forwarded := f.Verdict == flow.VerdictForwarded || f.Verdict == flow.VerdictRedirected
	if forwarded && f.IP != nil && f.L4 != nil && f.L4.TCP != nil && f.L4.TCP.Flags != nil {
		fl, family := f.L4.TCP.Flags, f.IP.IPVersion.String()
		if fl.FIN {
			m.tcpFlags.WithLabelValues("FIN", family).Inc()
		}
		if fl.SYN {
			if fl.ACK {
				m.tcpFlags.WithLabelValues("SYN-ACK", family).Inc()
			} else {
				m.tcpFlags.WithLabelValues("SYN", family).Inc()
			}
		}
		if fl.RST {
			m.tcpFlags.WithLabelValues("RST", family).Inc()
		}
	}
	if reply, known := f.IsReplyKnown(); forwarded && f.L4 != nil && known && !reply {
		m.observePort(f.L4)
	}
	if f.L4 != nil {
		if i := f.L4.ICMPv4; i != nil {
			m.icmp.WithLabelValues("IPv4", layers.CreateICMPv4TypeCode(uint8(i.Type), uint8(i.Code)).String()).Inc()
		}
		if i := f.L4.ICMPv6; i != nil {
			m.icmp.WithLabelValues("IPv6", layers.CreateICMPv6TypeCode(uint8(i.Type), uint8(i.Code)).String()).Inc()
		}
	}
	switch kind {
	case flow.EventPolicyVerdict:
		if f.Source == nil || f.Source.Identity != uint32(identityHost) {
			m.policyVerdicts.WithLabelValues(strings.ToLower(f.TrafficDirection.String()),
				strings.ToLower(flow.PolicyMatch(f.PolicyMatchType).String()), strings.ToLower(f.Verdict.String())).Inc()
		}
	case flow.EventL7:
		l7 := ""
		if f.L7 != nil && f.L7.DNS != nil {
			l7 = "dns"
		} else if f.L7 != nil && f.L7.HTTP != nil {
			l7 = "http"
		}
		m.policyVerdicts.WithLabelValues(strings.ToLower(f.TrafficDirection.String()), "l7/"+l7, strings.ToLower(f.Verdict.String())).Inc()
		m.observeHTTP(f)
		m.observeDNS(f)
	}
}

// identityHost is Cilium's reserved identity of the host, whose policy
// verdicts Hubble's policy handler leaves out.
const identityHost = 1

// metricProtocol names a flow's protocol as Hubble's metrics do
// (api/v1 FlowProtocol): DNS or HTTP for L7 flows, the L4 protocol for
// datapath events.
func metricProtocol(f *flow.Flow) string {
	switch f.EventKind() {
	case flow.EventL7:
		switch {
		case f.L7 != nil && f.L7.DNS != nil:
			return "DNS"
		case f.L7 != nil && f.L7.HTTP != nil:
			return "HTTP"
		}
		return "Unknown L7"
	case flow.EventDrop, flow.EventTrace, flow.EventPolicyVerdict, flow.EventCapture:
		if p := f.Protocol(); p != "Unknown flow" {
			return p
		}
		return "Unknown L4"
	}
	return "Unknown flow"
}

func (m *Metrics) observePort(l4 *flow.Layer4) {
	port := func(p uint32) string { return strconv.FormatUint(uint64(p), 10) }
	if l4.TCP != nil {
		m.ports.WithLabelValues("TCP", port(l4.TCP.DestinationPort)).Inc()
	}
	if l4.UDP != nil {
		m.ports.WithLabelValues("UDP", port(l4.UDP.DestinationPort)).Inc()
	}
	if l4.SCTP != nil {
		m.ports.WithLabelValues("SCTP", port(l4.SCTP.DestinationPort)).Inc()
	}
	if l4.ICMPv4 != nil {
		m.ports.WithLabelValues("ICMPv4", "0").Inc()
	}
	if l4.ICMPv6 != nil {
		m.ports.WithLabelValues("ICMPv6", "0").Inc()
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

// observeDNS counts an L7 DNS flow: a refused query (verdict DROPPED) as a
// query with rcode "Policy denied", a flow that is not a reply as a query,
// a reply as a response with its answer types.
func (m *Metrics) observeDNS(f *flow.Flow) {
	if f.L7 == nil || f.L7.DNS == nil {
		return
	}
	d := f.L7.DNS
	qtypes := strings.Join(d.QTypes, ",")
	ips := strconv.Itoa(len(d.IPs))
	reply, _ := f.IsReplyKnown()
	switch {
	case f.Verdict == flow.VerdictDropped:
		m.dnsQueries.WithLabelValues("Policy denied", qtypes, ips).Inc()
	case !reply:
		m.dnsQueries.WithLabelValues("", qtypes, ips).Inc()
	default:
		m.dnsResponses.WithLabelValues(flow.RcodeName(d.Rcode), qtypes, ips).Inc()
		for _, t := range d.RRTypes {
			m.dnsResponseTypes.WithLabelValues(t, qtypes).Inc()
		}
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
