package reports

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
)

func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	samples := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			samples[name+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return samples
}

func TestMetricsExposition(t *testing.T) {
	m := MetricsFromFlows(sampleFlows(t))
	m.AddLost(flow.LostRingBuffer, 4)
	counters := map[DatapathCounterKey]DatapathCounter{
		{Reason: 0, Direction: flow.Egress}:   {Packets: 10, Bytes: 1000},
		{Reason: 0, Direction: flow.Ingress}:  {Packets: 7, Bytes: 700},
		{Reason: 133, Direction: flow.Egress}: {Packets: 2, Bytes: 148},
	}
	if err := m.RegisterDatapathCounters("kind-worker", func() (map[DatapathCounterKey]DatapathCounter, error) { return counters, nil }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	s := parseExposition(t, buf.String())
	want := map[string]float64{
		`hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"}`:                                            2,
		`hubble_drop_total{protocol="ICMPv4",reason="STALE_OR_UNROUTABLE_IP"}`:                                1,
		`hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"}`:               2,
		`hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"}`: 3,
		`hubble_flows_processed_total{protocol="TCP",subtype="",type="PolicyVerdict",verdict="FORWARDED"}`:    1,
		`hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4"}`:                  1,
		// Hubble counts TCP flags of forwarded flows only (not the drops).
		`hubble_tcp_flags_total{family="IPv4",flag="SYN"}`:     3,
		`hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"}`: 1,
		// The forwarded policy verdict counts, as in Hubble.
		`hubble_port_distribution_total{port="80",protocol="TCP"}`:                              4,
		`hubble_port_distribution_total{port="53",protocol="UDP"}`:                              1,
		`hubble_icmp_total{family="IPv4",type="EchoRequest"}`:                                   2,
		`hubble_lost_events_total{source="perf_event_ring_buffer"}`:                             4,
		`cilium_drop_count_total{direction="EGRESS",node="kind-worker",reason="Policy denied"}`: 2,
		`cilium_drop_bytes_total{direction="EGRESS",node="kind-worker",reason="Policy denied"}`: 148,
		`cilium_forward_count_total{direction="INGRESS",node="kind-worker"}`:                    7,
		`cilium_forward_bytes_total{direction="EGRESS",node="kind-worker"}`:                     1000,
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "# HELP hubble_drop_total Number of drops\n# TYPE hubble_drop_total counter\n") {
		t.Error("HELP/TYPE lines missing")
	}

	// HTTP handler serves the same registry.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(body), `hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2`) {
		t.Errorf("handler: %d\n%s", rec.Code, body)
	}
}

func TestMetricsDatapathReadError(t *testing.T) {
	m := NewMetrics()
	if err := m.RegisterDatapathCounters("", func() (map[DatapathCounterKey]DatapathCounter, error) {
		return nil, errors.New("map gone")
	}); err != nil {
		t.Fatal(err)
	}
	m.AddLost(flow.LostObserverQueue, 1)
	var buf bytes.Buffer
	err := m.WriteText(&buf)
	if err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(buf.String(), `hubble_lost_events_total{source="observer_events_queue"} 1`) {
		t.Errorf("metrics not written despite collector error:\n%s", buf.String())
	}
}

func TestMetricsRegistriesAreIndependent(t *testing.T) {
	a, b := NewMetrics(), NewMetrics()
	a.AddLost(flow.LostRingBuffer, 1)
	var buf bytes.Buffer
	if err := b.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "hubble_lost_events_total{") {
		t.Error("metrics leak between registries")
	}
}

func TestDatapathMetricsAdapter(t *testing.T) {
	read := DatapathMetrics(func() ([]datapath.Metric, error) {
		return []datapath.Metric{{Reason: 133, Direction: datapath.DirectionEgress, Packets: 2, Bytes: 148}, {Reason: 0, Direction: datapath.DirectionIngress, Packets: 5, Bytes: 500}}, nil
	})
	got, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if got[DatapathCounterKey{Reason: 133, Direction: flow.Egress}].Bytes != 148 || got[DatapathCounterKey{Reason: 0, Direction: flow.Ingress}].Packets != 5 {
		t.Errorf("counters = %v", got)
	}
}
