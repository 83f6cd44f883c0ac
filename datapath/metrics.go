package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"
)

type metricsValue = fromContainerMetricsValue

// metricsEntries and metricsEventsLost mirror METRICS_ENTRIES and
// METRICS_EVENTS_LOST in bpf/lib/common.h.
const (
	metricsEntries    = 256 * 4
	metricsEventsLost = metricsEntries - 1
)

// Metric is one datapath counter: packets and bytes forwarded (Reason 0) or
// dropped with Reason, in Direction.
type Metric struct {
	Reason    DropReason
	Direction TrafficDirection
	Packets   uint64
	Bytes     uint64
}

// Forwarded reports whether the metric counts forwarded packets.
func (m Metric) Forwarded() bool { return m.Reason == 0 }

// Metrics returns the node's non-zero counters, summed over CPUs.
func (d *Datapath) Metrics() ([]Metric, error) {
	d.mu.Lock()
	m := d.maps[mapMetrics]
	d.mu.Unlock()
	var out []Metric
	var key uint32
	var vals []metricsValue
	it := m.Iterate()
	for it.Next(&key, &vals) {
		if key == metricsEventsLost {
			continue
		}
		var sum Metric
		for _, v := range vals {
			sum.Packets += v.Packets
			sum.Bytes += v.Bytes
		}
		if sum.Packets == 0 {
			continue
		}
		sum.Reason = DropReason(key >> 2)
		sum.Direction = TrafficDirection(key & 3)
		out = append(out, sum)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read metrics of %s: %w", d.cfg.Node, err)
	}
	return out, nil
}

func eventsLost(m *ebpf.Map) (uint64, error) {
	var vals []metricsValue
	if err := m.Lookup(uint32(metricsEventsLost), &vals); err != nil {
		return 0, fmt.Errorf("read lost-event counter: %w", err)
	}
	var n uint64
	for _, v := range vals {
		n += v.Packets
	}
	return n, nil
}
