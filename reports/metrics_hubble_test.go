package reports

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/internal/e2e"
)

// hubbleMetricsTool is tools/hubble-metrics built by `make hubble-metrics`
// ($PODLAB_HUBBLE_METRICS, which the Makefile exports).
func hubbleMetricsTool() string { return os.Getenv("PODLAB_HUBBLE_METRICS") }

var needHubbleMetrics = e2e.EnvFile("PODLAB_HUBBLE_METRICS", "Hubble's metric handlers (tools/hubble-metrics: run `make hubble-metrics`, or the tests through `make test`)")

// TestMetricsMatchHubbleHandlers writes flows of every kind podlab emits
// (traces, drops, policy verdicts, ICMP, L7 DNS and HTTP) to a
// flows.jsonl, feeds it to Hubble's own metric handlers and compares
// their series and values with podlab's metrics of the same flows.
func TestMetricsMatchHubbleHandlers(t *testing.T) {
	e2e.Require(t, needHubbleMetrics)
	flows := append(sampleFlows(t), l7DNSFlows()...)
	flows = append(flows, l7HTTPFlows()...)
	dir := t.TempDir()
	var jsonl bytes.Buffer
	if err := WriteFlowsJSON(&jsonl, flows); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, FlowsFile)
	if err := os.WriteFile(file, jsonl.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var ours bytes.Buffer
	if err := MetricsFromFlows(flows).WriteText(&ours); err != nil {
		t.Fatal(err)
	}
	theirs, err := exec.Command(hubbleMetricsTool(), file).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", hubbleMetricsTool(), file, err)
	}
	diff, err := CompareHubbleMetrics(bytes.NewReader(ours.Bytes()), bytes.NewReader(theirs))
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("podlab's metrics differ from Hubble's handlers fed the same flows:\n%s\n\nHubble's:\n%s", strings.Join(diff, "\n"), theirs)
	}
	// The comparison can fail: a changed value is caught.
	broken := strings.Replace(ours.String(), `reason="POLICY_DENIED"} 2`, `reason="POLICY_DENIED"} 3`, 1)
	if diff, _ := CompareHubbleMetrics(strings.NewReader(broken), bytes.NewReader(theirs)); len(diff) != 1 {
		t.Errorf("a changed drop count gave %d differences, want 1: %v", len(diff), diff)
	}
}

// l7HTTPFlows are an HTTP proxy's request and response flows, both
// directions, and a request it refused.
func l7HTTPFlows() []*flow.Flow {
	yes, no := true, false
	l7 := func(dir flow.TrafficDirection, typ flow.L7FlowType, verdict flow.Verdict, reply *bool, h *flow.HTTP, latency uint64) *flow.Flow {
		return &flow.Flow{Verdict: verdict, Type: flow.FlowTypeL7, EventType: &flow.CiliumEventType{Type: int32(flow.EventL7)},
			TrafficDirection: dir, IsReply: reply,
			IP: &flow.IP{Source: "10.244.1.2", Destination: "10.244.2.7", IPVersion: flow.IPv4}, L4: &flow.Layer4{TCP: &flow.TCP{SourcePort: 41000, DestinationPort: 8080}},
			L7: &flow.Layer7{Type: typ, LatencyNs: latency, HTTP: h}}
	}
	get := &flow.HTTP{Method: "GET", URL: "http://echo/public", Protocol: "HTTP/1.1"}
	ok := &flow.HTTP{Method: "GET", URL: "http://echo/public", Protocol: "HTTP/1.1", Code: 200}
	denied := &flow.HTTP{Method: "GET", URL: "http://echo/private", Protocol: "HTTP/1.1", Code: 403}
	return []*flow.Flow{
		l7(flow.Egress, flow.L7Request, flow.VerdictForwarded, &no, get, 0),
		l7(flow.Egress, flow.L7Response, flow.VerdictForwarded, &yes, ok, 2_500_000),
		l7(flow.Ingress, flow.L7Request, flow.VerdictForwarded, &no, get, 0),
		l7(flow.Ingress, flow.L7Response, flow.VerdictForwarded, &yes, ok, 700_000_000),
		l7(flow.Ingress, flow.L7Request, flow.VerdictDropped, &no, &flow.HTTP{Method: "GET", URL: "http://echo/private", Protocol: "HTTP/1.1"}, 0),
		l7(flow.Ingress, flow.L7Response, flow.VerdictDropped, &yes, denied, 100_000),
	}
}
