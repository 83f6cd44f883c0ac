package cilium

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/topo"
)

// HostEndpointID is the endpoint ID of every node's host endpoint (the
// ID bpf_host runs as: cilium_policy_v3_<id>, cilium_call_policy[id],
// cilium_calls_hostns_<id>). Cilium's agent takes it from its endpoint ID
// pool (1..4095); podlab keeps the last one for it so pods never collide.
const HostEndpointID uint16 = 4095

// Reserved identities bpf_host is loaded with (Cilium's numbers).
const (
	identityHost = 1
)

// hostAttachment is one instance of bpf_host: the device it serves, its
// load-time constants and the programs it puts on the device's hooks.
type hostAttachment struct {
	dev     string
	ifindex int
	calls   string
	hooks   []hostHook
	consts  map[string]any
	// policyProg registers cil_host_policy in cilium_call_policy.
	policyProg bool
}

type hostHook struct {
	prog    string
	ingress bool
}

// hostAttachments are the instances of bpf_host as Cilium's loader makes
// them (reloadHostEndpoint): cilium_host gets cil_to_host on ingress and
// cil_from_host on egress, cilium_net cil_to_host on ingress, the native
// device (eth0) cil_from_netdev on ingress and cil_to_netdev on egress.
func (n *Node) hostAttachments(hostMAC, netMAC, eth0MAC net.HardwareAddr) []hostAttachment {
	base := func(ifindex int, mac net.HardwareAddr) map[string]any {
		c := n.nodeConstants()
		c["interface_ifindex"] = uint32(ifindex)
		c["interface_mac"] = mac8(mac)
		c["security_label"] = uint32(identityHost)
		c["host_ep_id"] = HostEndpointID
		return c
	}
	netdev := base(n.cfg.Eth0Ifindex, eth0MAC)
	// L2 announcements of LoadBalancer and external IPs (answered from
	// cilium_l2_responder_v4 while the agent's liveness stamp in
	// cilium_runtime_config is fresh: Cilium's lease duration, 15 s).
	netdev["enable_l2_announcements"] = true
	netdev["l2_announcements_max_liveness"] = uint64(l2LeaseDuration.Nanoseconds())
	return []hostAttachment{
		{dev: topo.NodeHost, ifindex: n.cfg.HostIfindex, calls: fmt.Sprintf("cilium_calls_hostns_%05d", HostEndpointID),
			hooks: []hostHook{{"cil_to_host", true}, {"cil_from_host", false}}, consts: base(n.cfg.HostIfindex, hostMAC), policyProg: true},
		{dev: topo.NodeNet, ifindex: n.cfg.NetIfindex, calls: fmt.Sprintf("cilium_calls_netdev_%05d", n.cfg.NetIfindex),
			hooks: []hostHook{{"cil_to_host", true}}, consts: base(n.cfg.NetIfindex, netMAC)},
		{dev: topo.NodeEth0, ifindex: n.cfg.Eth0Ifindex, calls: fmt.Sprintf("cilium_calls_netdev_%05d", n.cfg.Eth0Ifindex),
			hooks: []hostHook{{"cil_from_netdev", true}, {"cil_to_netdev", false}}, consts: netdev},
	}
}

// loadHost loads bpf_host for each of the node's host devices and
// attaches it, registers the host endpoint's policy program, and writes
// the node's own addresses into cilium_lxc as the host endpoint and the
// devices into cilium_devices.
func (n *Node) loadHost() error {
	hostMAC, netMAC, eth0MAC, err := n.hostMACs()
	if err != nil {
		return err
	}
	if n.hostMark, err = loadHostMark(); err != nil {
		return err
	}
	for _, ha := range n.hostAttachments(hostMAC, netMAC, eth0MAC) {
		if err := n.loadHostAttachment(ha); err != nil {
			return err
		}
	}
	// The node's own packets leave through cilium_host, eth0 or a pod's
	// lxc (AddEndpoint): mark them as the agent's iptables OUTPUT rule
	// does.
	for _, ifindex := range []int{n.cfg.HostIfindex, n.cfg.Eth0Ifindex} {
		at, err := n.attach("podlab_hostmark", n.hostMark, ifindex, false, true)
		if err != nil {
			return err
		}
		if at != nil {
			n.attached = append(n.attached, at)
		}
	}
	for _, d := range []struct {
		ifindex int
		mac     net.HardwareAddr
	}{{n.cfg.Eth0Ifindex, eth0MAC}, {n.cfg.HostIfindex, hostMAC}, {n.cfg.NetIfindex, netMAC}} {
		if d.ifindex == 0 {
			continue
		}
		if err := n.devices.Put(uint32(d.ifindex), deviceState{MAC: mac8(d.mac)}); err != nil {
			return fmt.Errorf("%s[%d]: %w", mapDevices, d.ifindex, err)
		}
	}
	for _, a := range []netip.Addr{n.cfg.NodeIP, n.cfg.RouterIP} {
		if !a.Is4() {
			continue
		}
		if err := n.lxc.Put(lxcKeyOf(a), lxcValue{Flags: endpointFlagHost}); err != nil {
			return fmt.Errorf("%s host entry %v: %w", mapLxc, a, err)
		}
	}
	return nil
}

// hostMACs returns the MAC addresses of cilium_host, cilium_net and eth0
// (none on a node without a namespace).
func (n *Node) hostMACs() (hostMAC, netMAC, eth0MAC net.HardwareAddr, err error) {
	if n.cfg.NS == nil {
		return nil, nil, nil, nil
	}
	if hostMAC, err = n.linkMAC(n.cfg.HostIfindex); err != nil {
		return nil, nil, nil, err
	}
	if netMAC, err = n.linkMAC(n.cfg.NetIfindex); err != nil {
		return nil, nil, nil, err
	}
	if eth0MAC, err = n.linkMAC(n.cfg.Eth0Ifindex); err != nil {
		return nil, nil, nil, err
	}
	return hostMAC, netMAC, eth0MAC, nil
}

// endpointFlagHost marks cilium_lxc entries of the node's own addresses
// (ENDPOINT_F_HOST).
const endpointFlagHost = 1

func (n *Node) loadHostAttachment(ha hostAttachment) error {
	spec, manual, err := prepare(loadRequest{
		spec: n.objs.host, constants: ha.consts, pinDir: n.pinDir,
		renames: map[string]string{mapCalls: ha.calls, mapPolicy: PolicyMapName(HostEndpointID)},
	})
	if err != nil {
		return fmt.Errorf("bpf_host for %s on %s: %w", ha.dev, n.cfg.Node, err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: n.pinDir}})
	if err != nil {
		return verifierError(fmt.Sprintf("load bpf_host for %s on %s", ha.dev, n.cfg.Node), err)
	}
	if n.cfg.NS == nil {
		// Programs stay loaded for BPF_PROG_TEST_RUN.
		n.hostColls = append(n.hostColls, coll)
	} else {
		defer coll.Close()
	}
	if ha.policyProg {
		if err := n.callPolicy.Put(uint32(HostEndpointID), coll.Programs["cil_host_policy"]); err != nil {
			return fmt.Errorf("%s[%d]: %w", mapCallPolicy, HostEndpointID, err)
		}
	}
	for _, h := range ha.hooks {
		p := coll.Programs[h.prog]
		if p == nil {
			return fmt.Errorf("bpf_host has no program %s", h.prog)
		}
		if err := n.hookUp(&n.attached, h.prog, p, ha.ifindex, h.ingress); err != nil {
			return err
		}
	}
	for _, name := range manual {
		if err := pinMap(coll.Maps[name], filepath.Join(n.pinDir, spec.Maps[name].Name)); err != nil {
			return err
		}
	}
	return nil
}
