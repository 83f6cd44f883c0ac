package reports

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/podlab/podlab/datapath/flow"
)

// MetricValue computes Hubble's metrics from flows and returns the sum of
// the series of metric name whose labels include labels; found is false
// when no series matches. Scenario metric assertions use it.
func MetricValue(flows []*flow.Flow, name string, labels map[string]string) (float64, bool, error) {
	fams, err := MetricsFromFlows(flows).Registry().Gather()
	if err != nil {
		return 0, false, err
	}
	v, found := 0.0, false
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			found = true
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Untyped != nil:
				v += m.Untyped.GetValue()
			}
		}
	}
	return v, found, nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
