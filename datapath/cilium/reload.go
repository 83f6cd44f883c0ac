package cilium

import (
	"errors"
	"fmt"
	"time"
)

// Reload loads Cilium's objects again over the node's live maps, as the
// agent does on an upgrade or a configuration change: bpf_overlay,
// bpf_host and every endpoint's bpf_lxc are loaded and verified anew,
// their programs swapped in on each hook atomically (tcx link update, netlink
// filter replace), the call-policy tables and tail-call maps pointed at
// the new programs. Every map pinned by name is reused: conntrack, NAT,
// ipcache, services and each endpoint's policy map keep their entries, so
// established connections go on. Endpoints, policies and services are
// blocked while it runs. It returns how long it took.
func (n *Node) Reload() (time.Duration, error) {
	start := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.overlay == nil {
		return 0, errors.New("reload: node closed")
	}
	coll, spec, manual, err := n.loadOverlayObjects()
	if err != nil {
		return 0, fmt.Errorf("reload %s: %w", n.cfg.Node, err)
	}
	if err := n.hookOverlay(coll, spec, manual); err != nil {
		coll.Close()
		return 0, fmt.Errorf("reload %s: %w", n.cfg.Node, err)
	}
	n.overlay.Close()
	n.overlay = coll

	hostMAC, netMAC, eth0MAC, err := n.hostMACs()
	if err != nil {
		return 0, err
	}
	oldHost := n.hostColls
	n.hostColls = nil
	for _, ha := range n.hostAttachments(hostMAC, netMAC, eth0MAC) {
		if err := n.loadHostAttachment(ha); err != nil {
			return 0, fmt.Errorf("reload %s: %w", n.cfg.Node, err)
		}
	}
	for _, c := range oldHost {
		c.Close()
	}

	for id, st := range n.eps {
		if err := n.reloadEndpoint(st); err != nil {
			return 0, fmt.Errorf("reload %s endpoint %d: %w", n.cfg.Node, id, err)
		}
	}
	return time.Since(start), nil
}

// reloadEndpoint loads an endpoint's bpf_lxc again and swaps it in; its
// policy map (pinned cilium_policy_v3_<id>) is the same map.
func (n *Node) reloadEndpoint(st *endpointState) error {
	coll, spec, manual, err := n.loadEndpointObjects(st.ep)
	if err != nil {
		return err
	}
	if err := n.hookEndpoint(st, coll, spec, manual); err != nil {
		coll.Close()
		return err
	}
	if st.coll != nil {
		// No namespace: programs are kept for PROG_TEST_RUN; the new
		// collection's policy map is the endpoint's handle from now on.
		st.coll.Close()
		st.coll, st.policy = coll, coll.Maps[mapPolicy]
		return nil
	}
	n.releaseEndpointObjects(coll, false)
	return nil
}
