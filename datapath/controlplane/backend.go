package controlplane

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/cilium"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// NodeDatapath is one node's datapath as the control plane drives it: endpoints,
// ipcache, policy entries, services, and what status commands read back.
// podlab's own datapath (*datapath.Datapath) is one implementation; Cilium's
// production programs (package cilium) are the other.
type NodeDatapath interface {
	AddEndpoint(datapath.Endpoint) error
	RemoveEndpoint(datapath.Endpoint) error
	Endpoints() []datapath.Endpoint
	UpsertIPCache(p netip.Prefix, id identity.ID, tunnel netip.Addr) error
	DeleteIPCache(p netip.Prefix) error
	SetPolicy(epID uint16, p policy.EndpointPolicy) error
	UpsertService(datapath.Service) error
	DeleteService(frontend netip.AddrPort, proto uint8) error
	// Services lists the frontends the node's maps hold (for a control
	// plane that takes over pinned maps).
	Services() ([]datapath.Service, error)
	Metrics() ([]datapath.Metric, error)
	Connections() ([]datapath.Connection, error)
	// Announce answers ARP for addr on the node's device dev (L2
	// announcements of LoadBalancer IPs); Withdraw stops it.
	Announce(addr netip.Addr, dev string) error
	Withdraw(addr netip.Addr) error
	// Reload reloads the programs keeping the maps.
	Reload() error
	Close() error
}

var _ NodeDatapath = (*datapath.Datapath)(nil)

// Datapaths are the values Options.Datapath accepts ("" is "bpf").
var Datapaths = []string{"bpf", "cilium"}

// loadBackend loads the configured datapath into a node.
func (cp *ControlPlane) loadBackend(ctx context.Context, n *topo.Node, phases *topo.Phases) (NodeDatapath, error) {
	switch cp.opts.Datapath {
	case "", "bpf":
		return datapath.Load(datapath.NodeConfig{
			Lab: cp.lab, Node: n.Name, NS: n.NS,
			NodeIP: n.IP, RouterIP: n.RouterIP,
			VXLANIfindex: n.VXLANIfindex, Eth0Ifindex: n.Eth0Ifindex, HostIfindex: n.HostIfindex,
			ConntrackSize: cp.opts.ConntrackSize, Logger: cp.log,
			ForceNetlink: cp.opts.Attach != "tcx", MonitorAggregation: cp.opts.MonitorAggregation,
			ServiceCIDR: cp.opts.ServiceCIDR, Phases: phases,
		})
	case "cilium":
		b, err := cp.ciliumBuilder(ctx)
		if err != nil {
			return nil, err
		}
		node, err := cilium.LoadNode(ctx, b, cilium.NodeConfig{
			Lab: cp.lab, Node: n.Name, NS: n.NS, NodeIP: n.IP, RouterIP: n.RouterIP, HostMAC: n.HostMAC,
			VXLANIfindex: n.VXLANIfindex, HostIfindex: n.HostIfindex, NetIfindex: n.NetIfindex, Eth0Ifindex: n.Eth0Ifindex,
			Netlink: cp.opts.Attach != "tcx", MonitorAggregation: cp.opts.MonitorAggregation, Log: cp.log,
		})
		if err != nil {
			return nil, err
		}
		return &ciliumBackend{n: node}, nil
	}
	return nil, fmt.Errorf("datapath %q: want one of %v", cp.opts.Datapath, Datapaths)
}

// ciliumBuilder resolves and compiles Cilium's sources once per control
// plane.
func (cp *ControlPlane) ciliumBuilder(ctx context.Context) (*cilium.Builder, error) {
	cp.builderMu.Lock()
	defer cp.builderMu.Unlock()
	if cp.builder == nil {
		b, err := cilium.NewBuilder(ctx, cp.opts.CiliumVersion, cp.opts.CiliumSrc)
		if err != nil {
			return nil, err
		}
		cp.builder = b
	}
	return cp.builder, nil
}

// ciliumBackend adapts a node of Cilium's datapath to NodeDatapath.
type ciliumBackend struct{ n *cilium.Node }

func ciliumEndpoint(ep datapath.Endpoint) cilium.Endpoint {
	return cilium.Endpoint{ID: ep.ID, IP: ep.IP, Ifindex: ep.Ifindex, MAC: ep.MAC, HostMAC: ep.HostMAC, Identity: uint32(ep.Identity)}
}

func (b *ciliumBackend) AddEndpoint(ep datapath.Endpoint) error {
	return b.n.AddEndpoint(ciliumEndpoint(ep))
}

func (b *ciliumBackend) RemoveEndpoint(ep datapath.Endpoint) error { return b.n.RemoveEndpoint(ep.ID) }

func (b *ciliumBackend) Endpoints() []datapath.Endpoint {
	var out []datapath.Endpoint
	for _, ep := range b.n.Endpoints() {
		out = append(out, datapath.Endpoint{ID: ep.ID, IP: ep.IP, Ifindex: ep.Ifindex, MAC: ep.MAC, HostMAC: ep.HostMAC, Identity: identity.ID(ep.Identity)})
	}
	return out
}

func (b *ciliumBackend) UpsertIPCache(p netip.Prefix, id identity.ID, tunnel netip.Addr) error {
	return b.n.UpsertIPCache(p, uint32(id), tunnel)
}

func (b *ciliumBackend) DeleteIPCache(p netip.Prefix) error { return b.n.DeleteIPCache(p) }

func (b *ciliumBackend) SetPolicy(epID uint16, p policy.EndpointPolicy) error {
	return b.n.SetPolicy(epID, p)
}

// ciliumKinds maps podlab's frontend types to Cilium's.
var ciliumKinds = map[datapath.ServiceType]cilium.FrontendKind{
	datapath.ServiceClusterIP: cilium.ClusterIP, datapath.ServiceNodePort: cilium.NodePort,
	datapath.ServiceHostPort: cilium.HostPort, datapath.ServiceLoadBalancer: cilium.LoadBalancer,
	datapath.ServiceExternalIP: cilium.ExternalIP,
}

func (b *ciliumBackend) UpsertService(s datapath.Service) error {
	kind, ok := ciliumKinds[s.Type]
	if !ok {
		return fmt.Errorf("service %v: frontend type %s not supported yet on --datapath cilium", s.Frontend, s.Type)
	}
	if s.L7ProxyPort != 0 {
		return fmt.Errorf("service %v: L7 load-balancing (CiliumEnvoyConfig) not supported yet on --datapath cilium", s.Frontend)
	}
	fe := cilium.Frontend{Addr: s.Frontend, Proto: s.Proto, Kind: kind, Backends: s.Backends}
	if s.Local {
		fe.Local, fe.LocalBackends, fe.Backends = true, s.Backends, s.ClusterBackends
	}
	return b.n.UpsertService(fe)
}

func (b *ciliumBackend) DeleteService(fe netip.AddrPort, proto uint8) error {
	return b.n.DeleteService(fe, proto)
}

// Services returns nothing: a Cilium node's LB maps are created fresh with
// the node.
func (b *ciliumBackend) Services() ([]datapath.Service, error) { return nil, nil }

func (b *ciliumBackend) Metrics() ([]datapath.Metric, error) {
	ms, err := b.n.Metrics()
	if err != nil {
		return nil, err
	}
	out := make([]datapath.Metric, 0, len(ms))
	for _, m := range ms {
		out = append(out, datapath.Metric{Reason: datapath.DropReason(m.Reason), Direction: datapath.TrafficDirection(m.Dir), Packets: m.Packets, Bytes: m.Bytes})
	}
	return out, nil
}

func (b *ciliumBackend) Connections() ([]datapath.Connection, error) {
	cs, err := b.n.Connections()
	if err != nil {
		return nil, err
	}
	out := make([]datapath.Connection, 0, len(cs))
	for _, c := range cs {
		out = append(out, datapath.Connection{
			Src: c.Src, Dst: c.Dst, Proto: c.Proto, SrcIdentity: identity.ID(c.SrcIdentity),
			TxFlags: c.TxFlags, RxFlags: c.RxFlags, Closing: c.Closing, SeenReply: c.RxFlags != 0, Expires: c.Expires,
		})
	}
	return out, nil
}

func (b *ciliumBackend) Announce(addr netip.Addr, dev string) error { return b.n.Announce(addr, dev) }

func (b *ciliumBackend) Withdraw(addr netip.Addr) error { return b.n.Withdraw(addr) }

// Reload loads Cilium's programs again over the node's live maps
// (conntrack, policy, services kept).
func (b *ciliumBackend) Reload() error {
	took, err := b.n.Reload()
	if err != nil {
		return err
	}
	b.n.Config().Log.Info("cilium datapath reloaded", "node", b.n.Config().Node, "took", took)
	return nil
}

func (b *ciliumBackend) Close() error { return b.n.Close() }

// CiliumNode returns a node's Cilium datapath (nil on other datapaths).
func (cp *ControlPlane) CiliumNode(nodeName string) *cilium.Node {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if nd := cp.nodes[nodeName]; nd != nil {
		if b, ok := nd.dp.(*ciliumBackend); ok {
			return b.n
		}
	}
	return nil
}

// Prepare checks what the configured datapath needs before a lab is
// built: for "cilium", the sources (version valid and available, or the
// checkout) and clang-19. It changes nothing on failure.
func (cp *ControlPlane) Prepare(ctx context.Context) error {
	switch cp.opts.Datapath {
	case "", "bpf":
		return nil
	case "cilium":
		_, err := cp.ciliumBuilder(ctx)
		return err
	}
	return fmt.Errorf("datapath %q: want one of %v", cp.opts.Datapath, Datapaths)
}

// IdentityOf answers the L7 proxies' source-identity lookups from the
// node's cilium_ipcache_v2.
func (b *ciliumBackend) IdentityOf(a netip.Addr) uint32 { return b.n.IdentityOf(a) }
