package reports

import (
	"bytes"
	"testing"

	"github.com/podlab/podlab/datapath/flow"
)

// l7DNSFlows are the DNS proxy's flows of one answered query, one answer
// without records and one refused query, with the packets of an exchange
// that did not go through the proxy.
func l7DNSFlows() []*flow.Flow {
	yes, no := true, false
	trace := func(obs flow.ObsPoint, src, dst string, d *flow.DNS) *flow.Flow {
		return &flow.Flow{Verdict: flow.VerdictForwarded, EventType: &flow.CiliumEventType{Type: int32(flow.EventTrace), SubType: int32(obs)},
			IP: &flow.IP{Source: src, Destination: dst, IPVersion: flow.IPv4}, L4: &flow.Layer4{UDP: &flow.UDP{SourcePort: 40000, DestinationPort: 53}}, DNS: d}
	}
	l7 := func(typ flow.L7FlowType, verdict flow.Verdict, reply *bool, d *flow.L7DNS) *flow.Flow {
		return &flow.Flow{Verdict: verdict, Type: flow.FlowTypeL7, EventType: &flow.CiliumEventType{Type: int32(flow.EventL7)},
			TrafficDirection: flow.Egress, IsReply: reply,
			IP: &flow.IP{Source: "10.244.1.2", Destination: "10.244.0.2", IPVersion: flow.IPv4}, L4: &flow.Layer4{UDP: &flow.UDP{SourcePort: 40001, DestinationPort: 53}},
			L7: &flow.Layer7{Type: typ, DNS: d}}
	}
	return []*flow.Flow{
		l7(flow.L7Request, flow.VerdictForwarded, &no, &flow.L7DNS{Query: "www.example.com.", QTypes: []string{"A"}, ObservationSource: "proxy"}),
		l7(flow.L7Response, flow.VerdictForwarded, &yes, &flow.L7DNS{Query: "www.example.com.", QTypes: []string{"A"}, IPs: []string{"198.18.0.7"}, RRTypes: []string{"A"}, ObservationSource: "proxy"}),
		l7(flow.L7Request, flow.VerdictForwarded, &no, &flow.L7DNS{Query: "nx.example.com.", QTypes: []string{"AAAA"}, ObservationSource: "proxy"}),
		l7(flow.L7Response, flow.VerdictForwarded, &yes, &flow.L7DNS{Query: "nx.example.com.", QTypes: []string{"AAAA"}, Rcode: 3, ObservationSource: "proxy"}),
		l7(flow.L7Request, flow.VerdictDropped, &no, &flow.L7DNS{Query: "www.google.com.", QTypes: []string{"A"}, ObservationSource: "proxy"}),
		// Not proxied: Hubble has no L7 flow for it, so no DNS metric.
		trace(flow.ObsFromEndpoint, "10.244.1.3", "10.244.0.2", &flow.DNS{ID: 9, QTypes: []string{"A"}}),
		trace(flow.ObsToEndpoint, "10.96.0.10", "10.244.1.3", &flow.DNS{ID: 9, Response: true, Rcode: 3, QTypes: []string{"A"}}),
	}
}

// DNS metrics count the DNS proxy's L7 flows only, as Hubble's dns
// handler does: a refused query with rcode "Policy denied", a reply as a
// response; DNS parsed from packets counts nowhere.
func TestDNSMetricsFromL7FlowsOnly(t *testing.T) {
	var buf bytes.Buffer
	if err := MetricsFromFlows(l7DNSFlows()).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	s := parseExposition(t, buf.String())
	want := map[string]float64{
		`hubble_dns_queries_total{ips_returned="0",qtypes="A",rcode=""}`:                         1,
		`hubble_dns_queries_total{ips_returned="0",qtypes="AAAA",rcode=""}`:                      1,
		`hubble_dns_queries_total{ips_returned="0",qtypes="A",rcode="Policy denied"}`:            1,
		`hubble_dns_responses_total{ips_returned="1",qtypes="A",rcode="No Error"}`:               1,
		`hubble_dns_responses_total{ips_returned="0",qtypes="AAAA",rcode="Non-Existent Domain"}`: 1,
		`hubble_dns_response_types_total{qtypes="A",type="A"}`:                                   1,
		`hubble_flows_processed_total{protocol="DNS",subtype="DNS",type="L7",verdict="DROPPED"}`: 1,
		`hubble_drop_total{protocol="DNS",reason="DROP_REASON_UNKNOWN"}`:                         1,
		`hubble_policy_verdicts_total{action="dropped",direction="egress",match="l7/dns"}`:       1,
		`hubble_policy_verdicts_total{action="forwarded",direction="egress",match="l7/dns"}`:     4,
	}
	n := 0
	for k, v := range s {
		if len(k) > len("hubble_dns_") && k[:len("hubble_dns_")] == "hubble_dns_" {
			n++
			if want[k] != v {
				t.Errorf("%s = %v, want %v", k, v, want[k])
			}
		}
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
	if n != 6 {
		t.Errorf("%d DNS series, want 6:\n%s", n, buf.String())
	}
}
