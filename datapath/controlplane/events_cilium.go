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

// startCilium starts the reader of a Cilium node's monitor records
// (cilium_events): trace, drop and policy-verdict notifications become the
// same flows podlab's own datapath produces.
func (p *EventPump) startCilium(ctx context.Context, node string, n *cilium.Node) error {
	dec := monitor.NewDecoder(monitor.Config{
		Node:          node,
		Resolver:      p.cp,
		InterfaceName: func(ifindex uint32) string { return p.cp.ifName(node, int(ifindex)) },
	})
	rd, err := monitor.NewReader(n.EventsMap(), dec, monitor.ReaderOptions{})
	if err != nil {
		return fmt.Errorf("events of %s: %w", node, err)
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
	n := 0
	for ctx.Err() == nil {
		fe := &flow.Event{}
		if err := rd.Read(fe); err != nil {
			if errors.Is(err, monitor.ErrClosed) || ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Errorf("events of %s: %w", node, err))
			p.mu.Unlock()
			continue
		}
		if n++; n%256 == 1 {
			if lost := rd.Lost(); lost > lastLost {
				p.store.AddLost(flow.LostRingBuffer, lost-lastLost)
				lastLost = lost
			}
		}
		if fe.Type == flow.EventDrop {
			p.keepFlowDrop(fe)
		}
		f, err := dec.Decode(fe)
		if err != nil {
			continue // no parsable packet: nothing to show
		}
		p.store.Add(f)
	}
}

// keepFlowDrop records a drop given as a flow event (Cilium's records).
func (p *EventPump) keepFlowDrop(fe *flow.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.drops) >= maxDrops {
		p.dropped++
		return
	}
	dir := "unknown"
	switch fe.Direction {
	case flow.Ingress:
		dir = "ingress"
	case flow.Egress:
		dir = "egress"
	}
	p.drops = append(p.drops, Drop{Time: fe.Time, Node: fe.Node, Interface: fe.Interface, Direction: dir,
		Reason: datapath.DropReason(fe.DropReason), Data: append([]byte(nil), fe.Data...), OrigLen: fe.OrigLen})
}
