package cilium

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// l2LeaseDuration is how long bpf_host keeps answering ARP for announced
// addresses after the agent's last liveness stamp (Cilium's
// l2-announcements-lease-duration default).
const l2LeaseDuration = 15 * time.Second

// livenessInterval is how often the node stamps its liveness into
// cilium_runtime_config, as Cilium's agent does.
const livenessInterval = time.Second

// runtimeConfigAgentLiveness is RUNTIME_CONFIG_AGENT_LIVENESS, the index of
// the agent's last liveness stamp (monotonic ns) in cilium_runtime_config.
const runtimeConfigAgentLiveness = 1

// startLiveness stamps the node's liveness now and every livenessInterval
// until stopLiveness.
func (n *Node) startLiveness() {
	n.stopLive, n.liveDone = make(chan struct{}), make(chan struct{})
	n.stampLiveness()
	go func() {
		defer close(n.liveDone)
		t := time.NewTicker(livenessInterval)
		defer t.Stop()
		for {
			select {
			case <-n.stopLive:
				return
			case <-t.C:
				n.stampLiveness()
			}
		}
	}()
}

func (n *Node) stopLiveness() {
	if n.stopLive == nil {
		return
	}
	close(n.stopLive)
	<-n.liveDone
	n.stopLive = nil
}

func (n *Node) stampLiveness() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		n.log.Warn("cilium liveness stamp", "node", n.cfg.Node, "err", err)
		return
	}
	if err := n.runtimeCfg.Put(uint32(runtimeConfigAgentLiveness), uint64(ts.Nano())); err != nil {
		n.log.Warn("cilium liveness stamp", "node", n.cfg.Node, "err", err)
	}
}

// Announce makes bpf_host on dev answer ARP requests for addr
// (cilium_l2_responder_v4, Cilium's L2 announcements) and sends a
// gratuitous ARP for it, as Cilium's L2 announcer does when it takes a
// lease.
func (n *Node) Announce(addr netip.Addr, dev string) error {
	if !addr.Is4() {
		return fmt.Errorf("announce %v: not supported yet: only IPv4 addresses are announced (ARP)", addr)
	}
	if n.cfg.NS == nil {
		return fmt.Errorf("announce %v: node %s has no namespace", addr, n.cfg.Node)
	}
	if dev != topo.NodeEth0 {
		return fmt.Errorf("announce %v on %s of %s: bpf_host answers ARP on %s only", addr, dev, n.cfg.Node, topo.NodeEth0)
	}
	k := l2ResponderKey{IP: addr.As4(), Ifindex: uint32(n.cfg.Eth0Ifindex)}
	var v l2ResponderStats
	if err := n.l2resp.Lookup(&k, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
		if err := n.l2resp.Put(&k, &v); err != nil {
			return fmt.Errorf("%s %v: %w", mapL2Resp, addr, err)
		}
	} else if err != nil {
		return fmt.Errorf("%s %v: %w", mapL2Resp, addr, err)
	}
	mac, err := n.linkMAC(n.cfg.Eth0Ifindex)
	if err != nil {
		return err
	}
	return topo.SendGratuitousARP(n.cfg.NS, n.cfg.Eth0Ifindex, mac, addr)
}

// Withdraw stops answering ARP for addr. Withdrawing an address that is not
// announced is not an error.
func (n *Node) Withdraw(addr netip.Addr) error {
	if !addr.Is4() {
		return nil
	}
	k := l2ResponderKey{IP: addr.As4(), Ifindex: uint32(n.cfg.Eth0Ifindex)}
	if err := n.l2resp.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("%s %v: %w", mapL2Resp, addr, err)
	}
	return nil
}
