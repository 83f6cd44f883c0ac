package reports

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// HubbleOnlyFamilies are the hubble_* families podlab writes that Hubble's
// metric handlers do not compute (Hubble's observer counts lost events
// itself), left out when comparing with them.
var HubbleOnlyFamilies = []string{"hubble_lost_events_total"}

// CompareHubbleMetrics compares podlab's metrics (a metrics.prom) with the
// metrics Hubble's own handlers computed from the same flows (the output
// of tools/hubble-metrics), both in the text exposition format. Every
// hubble_* series on either side must be on the other with the same value
// (counters; histograms: count, sum and every bucket), families in
// HubbleOnlyFamilies aside. It returns one line per difference, sorted.
func CompareHubbleMetrics(podlab, hubble io.Reader) ([]string, error) {
	ours, err := hubbleSeries(podlab)
	if err != nil {
		return nil, fmt.Errorf("podlab metrics: %w", err)
	}
	theirs, err := hubbleSeries(hubble)
	if err != nil {
		return nil, fmt.Errorf("hubble metrics: %w", err)
	}
	var diff []string
	for k, v := range theirs {
		o, ok := ours[k]
		switch {
		case !ok:
			diff = append(diff, fmt.Sprintf("missing in podlab: %s %s", k, fmtValue(v)))
		case !sameValue(o, v):
			diff = append(diff, fmt.Sprintf("%s: podlab %s, hubble %s", k, fmtValue(o), fmtValue(v)))
		}
	}
	for k, v := range ours {
		if _, ok := theirs[k]; !ok {
			diff = append(diff, fmt.Sprintf("not in hubble: %s %s", k, fmtValue(v)))
		}
	}
	sort.Strings(diff)
	return diff, nil
}

func sameValue(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// hubbleSeries reads an exposition into one value per series of the
// hubble_* families (name{label="value",...} with labels sorted).
func hubbleSeries(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, name := range slices.Sorted(maps.Keys(mfs)) {
		if !strings.HasPrefix(name, "hubble_") || slices.Contains(HubbleOnlyFamilies, name) {
			continue
		}
		for _, m := range mfs[name].GetMetric() {
			key := func(suffix string, extra ...string) string {
				var l []string
				for _, lp := range m.GetLabel() {
					l = append(l, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
				}
				l = append(l, extra...)
				sort.Strings(l)
				return name + suffix + "{" + strings.Join(l, ",") + "}"
			}
			switch mfs[name].GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[key("_count")] = float64(h.GetSampleCount())
				out[key("_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[key("_bucket", "le="+strconv.Quote(fmtValue(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
			default:
				out[key("")] = m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}
