package reports

import (
	"bytes"
	"testing"

	"github.com/podlab/podlab/datapath/flow"
)

// A DNS exchange through the DNS proxy counts once, from the proxy's L7
// flows; a refused query counts with rcode "Policy denied"; an exchange
// that does not go through the proxy counts from its packets.
func TestDNSMetricsProxyAndPackets(t *testing.T) {
	trace := func(obs flow.ObsPoint, src, dst string, d *flow.DNS) *flow.Flow {
		return &flow.Flow{Verdict: flow.VerdictForwarded, EventType: &flow.CiliumEventType{Type: int32(flow.EventTrace), SubType: int32(obs)},
			IP: &flow.IP{Source: src, Destination: dst}, DNS: d}
	}
	l7 := func(typ flow.L7FlowType, verdict flow.Verdict, d *flow.L7DNS) *flow.Flow {
		return &flow.Flow{Verdict: verdict, Type: flow.FlowTypeL7, EventType: &flow.CiliumEventType{Type: int32(flow.EventL7)},
			IP: &flow.IP{Source: "10.244.1.2", Destination: "10.244.0.2"}, L7: &flow.Layer7{Type: typ, DNS: d}}
	}
	q := &flow.DNS{ID: 7, QTypes: []string{"A"}}
	a := &flow.DNS{ID: 7, Response: true, QTypes: []string{"A"}, IPs: []string{"198.18.0.7"}, RRTypes: []string{"A"}}
	q2 := &flow.DNS{ID: 9, QTypes: []string{"A"}}
	a2 := &flow.DNS{ID: 9, Response: true, Rcode: 3, QTypes: []string{"A"}}
	flows := []*flow.Flow{
		// Proxied: the packets and the proxy's flows.
		trace(flow.ObsFromEndpoint, "10.244.1.2", "10.244.0.2", q),
		trace(flow.ObsToProxy, "10.244.1.2", "10.244.0.2", q),
		l7(flow.L7Request, flow.VerdictForwarded, &flow.L7DNS{Query: "www.example.com.", QTypes: []string{"A"}}),
		l7(flow.L7Response, flow.VerdictForwarded, &flow.L7DNS{Query: "www.example.com.", QTypes: []string{"A"}, IPs: []string{"198.18.0.7"}, RRTypes: []string{"A"}}),
		trace(flow.ObsToEndpoint, "10.96.0.10", "10.244.1.2", a),
		// Refused by the proxy.
		l7(flow.L7Request, flow.VerdictDropped, &flow.L7DNS{Query: "www.google.com.", QTypes: []string{"A"}}),
		// Not proxied.
		trace(flow.ObsFromEndpoint, "10.244.1.3", "10.244.0.2", q2),
		trace(flow.ObsToEndpoint, "10.96.0.10", "10.244.1.3", a2),
	}
	var buf bytes.Buffer
	if err := MetricsFromFlows(flows).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	s := parseExposition(t, buf.String())
	for k, v := range map[string]float64{
		`hubble_dns_queries_total{ips_returned="0",qtypes="A",rcode=""}`:                      2,
		`hubble_dns_queries_total{ips_returned="0",qtypes="A",rcode="Policy denied"}`:         1,
		`hubble_dns_responses_total{ips_returned="1",qtypes="A",rcode="No Error"}`:            1,
		`hubble_dns_responses_total{ips_returned="0",qtypes="A",rcode="Non-Existent Domain"}`: 1,
		`hubble_dns_response_types_total{qtypes="A",type="A"}`:                                1,
		`hubble_flows_processed_total{subtype="DNS",type="L7",verdict="DROPPED"}`:             1,
	} {
		if s[k] != v {
			t.Errorf("%s = %v, want %v", k, s[k], v)
		}
	}
}
