package controlplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/cilium"
	"github.com/podlab/podlab/datapath/cilium/monitor"
	"github.com/podlab/podlab/datapath/flow"
)

// maxPumpErrors bounds the read errors a pump keeps (a stream of records of
// an unknown version would otherwise grow the list without end; the
// decoder's counters keep the full count).
const maxPumpErrors = 100

// startCilium starts the reader of a Cilium node's monitor events
// (cilium_events, one perf ring per CPU, read with a wakeup watermark).
func (p *EventPump) startCilium(ctx context.Context, node string, n *cilium.Node) error {
	dec := monitor.NewDecoder(monitor.Config{
		Node: node, Resolver: p.cp,
		InterfaceName: func(ifindex uint32) string { return p.cp.ifName(node, int(ifindex)) },
	})
	rd, err := monitor.NewReader(n.EventsMap(), dec, monitor.ReaderOptions{})
	if err != nil {
		return fmt.Errorf("cilium events of %s: %w", node, err)
	}
	p.mu.Lock()
	p.closers = append(p.closers, rd.Close)
	p.mu.Unlock()
	p.wg.Add(1)
	go p.readCilium(ctx, node, rd)
	return nil
}

func (p *EventPump) readCilium(ctx context.Context, node string, rd *monitor.Reader) {
	defer p.wg.Done()
	dec := flow.NewDecoder(p.cp)
	var lastLost uint64
	for ctx.Err() == nil {
		var ev flow.Event
		err := rd.Read(&ev)
		if lost := rd.Lost(); lost > lastLost {
			p.store.AddLost(flow.LostRingBuffer, lost-lastLost)
			lastLost = lost
		}
		if err != nil {
			if errors.Is(err, monitor.ErrClosed) || ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			if len(p.errs) < maxPumpErrors {
				p.errs = append(p.errs, fmt.Errorf("cilium events of %s: %w", node, err))
			}
			p.mu.Unlock()
			continue
		}
		if ev.Type == flow.EventDrop {
			p.keepFlowDrop(&ev)
		}
		f, err := dec.Decode(&ev)
		if err != nil {
			continue // an event without a parsable packet: nothing to show
		}
		p.store.Add(f)
	}
}

// keepFlowDrop keeps a drop for the report, as keepDrop does for podlab's
// own datapath (Cilium's drop reason codes are the same).
func (p *EventPump) keepFlowDrop(ev *flow.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.drops) >= maxDrops {
		p.dropped++
		return
	}
	dir := "unknown"
	switch ev.Direction {
	case flow.Ingress:
		dir = "ingress"
	case flow.Egress:
		dir = "egress"
	}
	p.drops = append(p.drops, Drop{Time: ev.Time, Node: ev.Node, Interface: ev.Interface, Direction: dir, Reason: datapath.DropReason(ev.DropReason), Data: ev.Data, OrigLen: ev.OrigLen})
}
