package controlplane

import (
	"context"

	"github.com/podlab/podlab/datapath/cilium"
)

// startCilium starts the reader of a Cilium node's monitor events.
func (p *EventPump) startCilium(ctx context.Context, node string, n *cilium.Node) error {
	p.cp.log.Warn("flows of --datapath cilium are not read yet (cilium_events decoder pending)", "node", node)
	return nil
}
