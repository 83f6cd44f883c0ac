package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// ServiceType is the kind of a service frontend.
type ServiceType uint8

// Service frontend kinds, as `cilium service list` names them.
const (
	// ServiceClusterIP is a ClusterIP frontend, reachable from pods and
	// from the node namespace.
	ServiceClusterIP ServiceType = iota
	// ServiceNodePort is a NodePort frontend on a node's eth0 address.
	ServiceNodePort
	// ServiceHostPort is a pod's hostPort on its node's eth0 address.
	ServiceHostPort
	// ServiceLoadBalancer is a LoadBalancer ingress IP of a Service:
	// served to the network on every node (from-netdev), and reached from
	// outside through the node that announces it.
	ServiceLoadBalancer
	// ServiceExternalIP is one of a Service's spec.externalIPs, served
	// like a LoadBalancer IP.
	ServiceExternalIP
)

// String returns the type as `cilium service list` prints it.
func (t ServiceType) String() string {
	switch t {
	case ServiceNodePort:
		return "NodePort"
	case ServiceHostPort:
		return "HostPort"
	case ServiceLoadBalancer:
		return "LoadBalancer"
	case ServiceExternalIP:
		return "ExternalIPs"
	}
	return "ClusterIP"
}

// External reports whether the frontend is served to traffic entering the
// node from the network on an address of its own (LoadBalancer, external
// IP).
func (t ServiceType) External() bool { return t == ServiceLoadBalancer || t == ServiceExternalIP }

// Flags of lb_service.flags (bpf/lib/common.h LB_F_*).
const (
	lbFlagClusterIP = 1 << 0
	lbFlagNodePort  = 1 << 1
	lbFlagHostPort  = 1 << 2
	lbFlagLocal     = 1 << 3
	lbFlagLB        = 1 << 4
	lbFlagExternal  = 1 << 5
	lbFlagTwoScopes = 1 << 6
)

func (s *Service) flags() uint16 {
	var f uint16
	switch s.Type {
	case ServiceNodePort:
		f = lbFlagNodePort
	case ServiceHostPort:
		f = lbFlagHostPort
	case ServiceLoadBalancer:
		f = lbFlagLB
	case ServiceExternalIP:
		f = lbFlagExternal
	default:
		f = lbFlagClusterIP
	}
	if s.Local {
		f |= lbFlagLocal
	}
	return f
}

func serviceTypeOf(flags uint16) ServiceType {
	switch {
	case flags&lbFlagNodePort != 0:
		return ServiceNodePort
	case flags&lbFlagHostPort != 0:
		return ServiceHostPort
	case flags&lbFlagLB != 0:
		return ServiceLoadBalancer
	case flags&lbFlagExternal != 0:
		return ServiceExternalIP
	}
	return ServiceClusterIP
}

// serviceGateway is the (onlink, permanently resolved) next hop of the
// service route: any address works since from-host rewrites the MACs; one
// that is not the router IP, because a local gateway makes the kernel
// resolve every ClusterIP as a neighbour of cilium_host.
var serviceGateway = netip.AddrFrom4([4]byte{169, 254, 0, 1})

// Map names of the NodePort SNAT tables (bpf/lib/maps.h).
const (
	mapNodePortFwd = "nodeport_fwd"
	mapNodePortRev = "nodeport_rev"
)

// attachServices attaches the service programs of a node: from-netdev on
// eth0 ingress (NodePort, hostPort, replies of SNAT-ed and host-originated
// service connections) and from-host on cilium_host egress with the route
// that sends the service CIDR there (ClusterIP from the node namespace).
func (d *Datapath) attachServices() error {
	if d.cfg.NS == nil {
		return nil
	}
	if d.cfg.Eth0Ifindex > 0 {
		if err := d.attach(roleFromNetdev, d.cfg.Eth0Ifindex, true); err != nil {
			return err
		}
	}
	if d.cfg.HostIfindex > 0 {
		if err := d.attach(roleFromHost, d.cfg.HostIfindex, false); err != nil {
			return err
		}
		if err := d.routeServices(); err != nil {
			return err
		}
		if err := d.routeProxy(); err != nil {
			return err
		}
	}
	return nil
}

// routeServices routes the service CIDR (NodeConfig.ServiceCIDR) to
// cilium_host in the node namespace, with the router IP as source address.
func (d *Datapath) routeServices() error {
	h, err := d.netlinkHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	host, err := h.LinkByIndex(d.cfg.HostIfindex)
	if err != nil {
		return fmt.Errorf("service route: cilium_host (ifindex %d) in %s: %w", d.cfg.HostIfindex, d.nsName(), err)
	}
	gw := net.IP(serviceGateway.AsSlice())
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: d.cfg.HostIfindex, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: gw, HardwareAddr: host.Attrs().HardwareAddr}); err != nil {
		return fmt.Errorf("service route: neighbour %v on %s in %s: %w", serviceGateway, host.Attrs().Name, d.nsName(), err)
	}
	cidr := d.cfg.ServiceCIDR
	if !cidr.IsValid() {
		cidr = topo.DefaultServiceCIDR
	}
	r := &netlink.Route{
		LinkIndex: d.cfg.HostIfindex,
		Dst:       &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)},
		Gw:        gw,
		Src:       net.IP(d.cfg.RouterIP.AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("service route %s via %s in %s: %w", cidr, host.Attrs().Name, d.nsName(), err)
	}
	return nil
}

// Services lists the service frontends of the node, read from its maps,
// sorted by frontend and protocol. Backends are in slot order.
func (d *Datapath) Services() ([]Service, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("services: datapath closed")
	}
	var out []Service
	var k lbServiceKey
	var v lbServiceValue
	it := d.maps[mapServices].Iterate()
	for it.Next(&k, &v) {
		if k.Scope != lbScopeExt {
			continue // read with its external scope
		}
		s := Service{
			Frontend: netip.AddrPortFrom(addrFromBE(k.Addr), be16(k.Port)),
			Proto:    k.Proto, Type: serviceTypeOf(v.Flags), Local: v.Flags&lbFlagLocal != 0,
			L7ProxyPort: be16(v.ProxyPort),
		}
		var err error
		if s.Backends, err = d.scopeBackends(k, v.Count); err != nil {
			return nil, fmt.Errorf("service %v: %w", s.Frontend, err)
		}
		if v.Flags&lbFlagTwoScopes != 0 {
			ik := k
			ik.Scope = lbScopeInt
			var iv lbServiceValue
			if err := d.maps[mapServices].Lookup(&ik, &iv); err != nil {
				return nil, fmt.Errorf("service %v internal scope: %w", s.Frontend, err)
			}
			if s.ClusterBackends, err = d.scopeBackends(ik, iv.Count); err != nil {
				return nil, fmt.Errorf("service %v internal scope: %w", s.Frontend, err)
			}
			if s.ClusterBackends == nil {
				s.ClusterBackends = []netip.AddrPort{}
			}
		}
		out = append(out, s)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read service map: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Frontend.Compare(out[j].Frontend); c != 0 {
			return c < 0
		}
		return out[i].Proto < out[j].Proto
	})
	return out, nil
}

// scopeBackends reads the backends of one scope of a frontend, in slot
// order.
func (d *Datapath) scopeBackends(k lbServiceKey, count uint16) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for slot := uint32(1); slot <= uint32(count); slot++ {
		bk := lbBackendKey{Addr: k.Addr, Port: k.Port, Proto: k.Proto, Scope: k.Scope, Slot: slot}
		var bv lbBackendValue
		if err := d.maps[mapBackends].Lookup(&bk, &bv); err != nil {
			return nil, fmt.Errorf("slot %d: %w", slot, err)
		}
		out = append(out, netip.AddrPortFrom(addrFromBE(bv.Addr), be16(bv.Port)))
	}
	return out, nil
}

type nodePortNAT = fromContainerNodeportNat

// forgetNodePortNAT removes the SNAT entries (both directions) of NodePort
// connections of frontend sk whose backend is not in live, so that a
// client reusing the tuple later is load-balanced again.
func (d *Datapath) forgetNodePortNAT(sk lbServiceKey, live map[lbBackendValue]bool) error {
	var fwd, rev []ctKeyValue
	var k ctKeyValue
	var v nodePortNAT
	it := d.maps[mapNodePortFwd].Iterate()
	for it.Next(&k, &v) {
		if v.FrontendAddr != sk.Addr || v.FrontendPort != sk.Port || k.Proto != sk.Proto {
			continue
		}
		if live[lbBackendValue{Addr: v.BackendAddr, Port: v.BackendPort}] {
			continue
		}
		fwd = append(fwd, k)
		rev = append(rev, ctKeyValue{Saddr: v.BackendAddr, Daddr: ipv4BE(d.cfg.NodeIP), Sport: v.BackendPort, Dport: v.NatPort, Proto: k.Proto})
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read NodePort NAT table: %w", err)
	}
	for i := range fwd {
		for _, del := range []struct {
			m string
			k *ctKeyValue
		}{{mapNodePortFwd, &fwd[i]}, {mapNodePortRev, &rev[i]}} {
			if err := d.maps[del.m].Delete(del.k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("forget NodePort NAT entry: %w", err)
			}
		}
	}
	return nil
}
