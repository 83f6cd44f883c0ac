package cilium

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Metric is one counter of cilium_metrics, summed over CPUs: Reason 0 is
// forwarded, others are drop reasons; Dir is 1 (ingress) or 2 (egress).
type Metric struct {
	Reason, Dir    uint8
	Packets, Bytes uint64
}

// Metrics returns the node's non-zero counters (summed over source lines).
func (n *Node) Metrics() ([]Metric, error) {
	sums := map[[2]uint8]*Metric{}
	var order [][2]uint8
	var k metricsKey
	var vals []metricsValue
	it := n.metrics.Iterate()
	for it.Next(&k, &vals) {
		key := [2]uint8{k.Reason, k.Dir & 3}
		m := sums[key]
		if m == nil {
			m = &Metric{Reason: k.Reason, Dir: k.Dir & 3}
			sums[key] = m
			order = append(order, key)
		}
		for _, v := range vals {
			m.Packets += v.Count
			m.Bytes += v.Bytes
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", mapMetrics, n.cfg.Node, err)
	}
	var out []Metric
	for _, key := range order {
		if m := sums[key]; m.Packets > 0 {
			out = append(out, *m)
		}
	}
	return out, nil
}

// Conn is one entry of Cilium's IPv4 conntrack tables.
type Conn struct {
	// Src and Dst of the original direction.
	Src, Dst netip.AddrPort
	Proto    uint8
	// Flags are the tuple flags (TUPLE_F_IN 1, TUPLE_F_RELATED 2,
	// TUPLE_F_SERVICE 4; 0 is an outgoing entry).
	Flags            uint8
	SrcIdentity      uint32
	TxFlags, RxFlags uint8
	Packets, Bytes   uint64
	Closing          bool
	Expires          time.Time
}

// Connections lists the live entries of cilium_ct4_global and
// cilium_ct_any4_global.
func (n *Node) Connections() ([]Conn, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, fmt.Errorf("read monotonic clock: %w", err)
	}
	now := uint32(ts.Sec)
	var out []Conn
	for _, m := range []*ebpf.Map{n.ct4, n.ctAny4} {
		var k ct4Key
		var v ct4Value
		it := m.Iterate()
		for it.Next(&k, &v) {
			if v.Lifetime < now {
				continue
			}
			// Addresses are stored reversed (named for the reply), ports
			// in the original direction.
			out = append(out, Conn{
				Src:   netip.AddrPortFrom(netip.AddrFrom4(k.DAddr), be16(k.SPort)),
				Dst:   netip.AddrPortFrom(netip.AddrFrom4(k.SAddr), be16(k.DPort)),
				Proto: k.NextHdr, Flags: k.Flags, SrcIdentity: v.SrcSecID,
				TxFlags: v.TxFlags, RxFlags: v.RxFlags, Packets: v.Packets, Bytes: v.Bytes,
				Closing: v.Flags&3 != 0,
				Expires: time.Now().Add(time.Duration(v.Lifetime-now) * time.Second),
			})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read conntrack of %s: %w", n.cfg.Node, err)
		}
	}
	return out, nil
}

// EventsMap returns the node's cilium_events perf event array (Cilium's
// monitor records).
func (n *Node) EventsMap() *ebpf.Map { return n.events }
