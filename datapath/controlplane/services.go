package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy/envoyconfig"
	"github.com/podlab/podlab/topo"
)

// Service is a Kubernetes Service as the datapath load-balances it.
type Service struct {
	Namespace, Name string
	// Type is ClusterIP, NodePort or LoadBalancer (NodePort frontends are
	// programmed for every port with a NodePort, whatever the type).
	Type      string
	ClusterIP netip.Addr
	Ports     []ServicePort
	// ExternalTrafficPolicyLocal sends NodePort, LoadBalancer and external
	// IP traffic only to backends on the node that received it (and lets
	// only nodes with such a backend announce the service's addresses).
	ExternalTrafficPolicyLocal bool
	// LoadBalancerIPs are the ingress addresses LB IPAM gave the Service
	// (status.loadBalancer.ingress); ExternalIPs are its spec.externalIPs.
	// Both are frontends on every node for every port, reached from the
	// network through the node that announces them.
	LoadBalancerIPs []netip.Addr
	ExternalIPs     []netip.Addr
	// Announce lists the addresses announced on the underlay (ARP), each
	// with the nodes an L2 announcement policy lets hold its lease.
	Announce []L2Announcement
	// PendingReason says why a LoadBalancer Service has no address
	// (EXTERNAL-IP <pending>).
	PendingReason string
}

// ServicePort is one frontend port of a Service and its backends.
type ServicePort struct {
	Name     string
	Proto    uint8 // 6 TCP, 17 UDP
	Port     uint16
	NodePort uint16
	Backends []Backend
}

// Backend is one endpoint behind a service port.
type Backend struct {
	IP   netip.Addr
	Port uint16
	// Node is the name of the node the backend runs on (needed for
	// externalTrafficPolicy: Local).
	Node string
}

// ErrServicesNotSupported is returned for services the BPF datapath cannot
// load-balance (protocols other than TCP and UDP, IPv6 frontends).
var ErrServicesNotSupported = errors.New("not supported yet: service load-balancing in the BPF datapath")

// lbState is the control plane's view of services: what the user asked
// for, the hostPorts of pods, and what every node's LB maps hold.
type lbState struct {
	services map[string]Service   // by namespace/name
	hostPods map[string]*topo.Pod // pods with a hostPort, by pod key
	applied  map[string]feSet     // by node name
	ids      map[string]int       // frontend -> service ID (cilium service list)
	nextID   int
	// envoy holds the CiliumEnvoyConfigs by key (envoy.go).
	envoy map[string]*envoyconfig.Config
}

// feKey identifies a frontend in one node's maps.
type feKey struct {
	addr  netip.AddrPort
	proto uint8
}

type feSet map[feKey]datapath.Service

func (l *lbState) init() {
	if l.services == nil {
		l.services = map[string]Service{}
		l.hostPods = map[string]*topo.Pod{}
		l.applied = map[string]feSet{}
		l.ids = map[string]int{}
		l.envoy = map[string]*envoyconfig.Config{}
	}
}

func (s *Service) validate() error {
	if s.Namespace == "" || s.Name == "" {
		return fmt.Errorf("service %s/%s: namespace and name are required", s.Namespace, s.Name)
	}
	if s.ClusterIP.IsValid() && !s.ClusterIP.Is4() {
		return fmt.Errorf("service %s/%s: cluster IP %v: %w (IPv6)", s.Namespace, s.Name, s.ClusterIP, ErrServicesNotSupported)
	}
	for _, p := range s.Ports {
		if p.Proto != 6 && p.Proto != 17 {
			return fmt.Errorf("service %s/%s port %d: protocol %d: %w (TCP and UDP only)", s.Namespace, s.Name, p.Port, p.Proto, ErrServicesNotSupported)
		}
		if p.Port == 0 {
			return fmt.Errorf("service %s/%s: port 0", s.Namespace, s.Name)
		}
		for _, b := range p.Backends {
			if !b.IP.Is4() || b.Port == 0 {
				return fmt.Errorf("service %s/%s port %d: backend %v:%d: %w (IPv4 address and port needed)", s.Namespace, s.Name, p.Port, b.IP, b.Port, ErrServicesNotSupported)
			}
		}
	}
	for _, a := range append(slices.Clone(s.LoadBalancerIPs), s.ExternalIPs...) {
		if !a.Is4() {
			return fmt.Errorf("service %s/%s: external address %v: %w (IPv4 only)", s.Namespace, s.Name, a, ErrServicesNotSupported)
		}
	}
	for _, an := range s.Announce {
		if !slices.Contains(s.LoadBalancerIPs, an.IP) && !slices.Contains(s.ExternalIPs, an.IP) {
			return fmt.Errorf("service %s/%s: announced address %v is neither a LoadBalancer nor an external IP of the service", s.Namespace, s.Name, an.IP)
		}
	}
	return nil
}

// externalFrontends returns the service's LoadBalancer and external IPs
// with their frontend kind.
func (s *Service) externalFrontends() []externalAddr {
	var out []externalAddr
	for _, a := range s.LoadBalancerIPs {
		out = append(out, externalAddr{a, datapath.ServiceLoadBalancer})
	}
	for _, a := range s.ExternalIPs {
		if !slices.Contains(s.LoadBalancerIPs, a) {
			out = append(out, externalAddr{a, datapath.ServiceExternalIP})
		}
	}
	return out
}

type externalAddr struct {
	addr netip.Addr
	typ  datapath.ServiceType
}

// UpsertService programs a service's frontends and backends on every node:
// the ClusterIP on every node, each NodePort on every node's address (with
// only that node's backends under externalTrafficPolicy: Local). Backends
// that stay keep their established connections.
func (cp *ControlPlane) UpsertService(s Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	s.Ports = slices.Clone(s.Ports)
	for i := range s.Ports {
		s.Ports[i].Backends = slices.Clone(s.Ports[i].Backends)
	}
	s.LoadBalancerIPs = slices.Clone(s.LoadBalancerIPs)
	s.ExternalIPs = slices.Clone(s.ExternalIPs)
	s.Announce = slices.Clone(s.Announce)
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	cp.lb.services[s.Namespace+"/"+s.Name] = s
	cp.indexServicesLocked()
	return errors.Join(cp.syncServicesLocked(), cp.syncAnnouncementsLocked())
}

// DeleteService removes a service from every node. Deleting an unknown
// service is not an error.
func (cp *ControlPlane) DeleteService(namespace, name string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	key := namespace + "/" + name
	if _, ok := cp.lb.services[key]; !ok {
		return nil
	}
	delete(cp.lb.services, key)
	cp.indexServicesLocked()
	return errors.Join(cp.syncServicesLocked(), cp.syncAnnouncementsLocked())
}

// hostPortsChangedLocked records a pod's hostPorts (added or removed) and
// reprograms the nodes. Call with cp.mu held.
func (cp *ControlPlane) hostPortsChangedLocked(p *topo.Pod, present bool) error {
	cp.lb.init()
	has := false
	for _, port := range p.Ports {
		if port.HostPort != 0 {
			has = true
		}
	}
	if !has || p.HostNetwork {
		return nil
	}
	if present {
		cp.lb.hostPods[p.Key()] = p
	} else {
		delete(cp.lb.hostPods, p.Key())
	}
	return cp.syncServicesLocked()
}

// desiredFrontendsLocked computes the frontends one node's maps must hold.
func (cp *ControlPlane) desiredFrontendsLocked(n *topo.Node) feSet {
	want := feSet{}
	for _, s := range cp.lb.services {
		for _, p := range s.Ports {
			all := backendAddrs(p.Backends, "")
			if s.ClusterIP.IsValid() {
				fe := netip.AddrPortFrom(s.ClusterIP, p.Port)
				want[feKey{fe, p.Proto}] = datapath.Service{Frontend: fe, Proto: p.Proto, Backends: all, Type: datapath.ServiceClusterIP}
			}
			if p.NodePort != 0 {
				bs := all
				if s.ExternalTrafficPolicyLocal {
					bs = backendAddrs(p.Backends, n.Name)
				}
				for _, a := range []netip.Addr{n.IP, netip.IPv4Unspecified()} {
					// 0.0.0.0: other nodes' NodePort for the node's pods
					// (bpf/lib/lb.h lb_lookup_wildcard).
					fe := netip.AddrPortFrom(a, p.NodePort)
					want[feKey{fe, p.Proto}] = datapath.Service{Frontend: fe, Proto: p.Proto, Backends: bs, Type: datapath.ServiceNodePort, Local: s.ExternalTrafficPolicyLocal, ClusterBackends: clusterBackends(s, all)}
				}
			}
			for _, ea := range s.externalFrontends() {
				bs := all
				if s.ExternalTrafficPolicyLocal {
					bs = backendAddrs(p.Backends, n.Name)
				}
				fe := netip.AddrPortFrom(ea.addr, p.Port)
				want[feKey{fe, p.Proto}] = datapath.Service{Frontend: fe, Proto: p.Proto, Backends: bs, Type: ea.typ, Local: s.ExternalTrafficPolicyLocal, ClusterBackends: clusterBackends(s, all)}
			}
		}
	}
	for _, p := range cp.lb.hostPods {
		if p.Node != n {
			continue
		}
		for _, port := range p.Ports {
			if port.HostPort == 0 {
				continue
			}
			proto := policy.PortProto(port.Protocol)
			if proto != 6 && proto != 17 {
				continue
			}
			fe := netip.AddrPortFrom(n.IP, port.HostPort)
			want[feKey{fe, proto}] = datapath.Service{Frontend: fe, Proto: proto, Type: datapath.ServiceHostPort,
				Backends: []netip.AddrPort{netip.AddrPortFrom(p.IP, port.Port)}}
		}
	}
	return want
}

// clusterBackends returns all of a Local service's backends (nil for a
// Cluster one).
func clusterBackends(s Service, all []netip.AddrPort) []netip.AddrPort {
	if !s.ExternalTrafficPolicyLocal {
		return nil
	}
	return all
}

// backendAddrs returns the backends (those on node when node is set),
// sorted.
func backendAddrs(bs []Backend, node string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, b := range bs {
		if node != "" && b.Node != node {
			continue
		}
		out = append(out, netip.AddrPortFrom(b.IP, b.Port))
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}

// syncServicesLocked brings every node's LB maps to the desired state,
// writing only frontends that changed.
func (cp *ControlPlane) syncServicesLocked() error {
	cp.lb.init()
	var errs []error
	for _, name := range cp.order {
		nd := cp.nodes[name]
		want := cp.desiredFrontendsLocked(nd.n)
		if err := cp.l7FrontendsLocked(nd, want); err != nil {
			errs = append(errs, err)
		}
		have := cp.lb.applied[name]
		if have == nil {
			// A node seen for the first time may hold frontends of an
			// earlier control plane (pinned maps): start from them, so
			// that stale ones are removed.
			have = feSet{}
			existing, err := nd.dp.Services()
			if err != nil {
				errs = append(errs, fmt.Errorf("services on %s: %w", name, err))
				continue
			}
			for _, s := range existing {
				have[feKey{s.Frontend, s.Proto}] = s
			}
			cp.lb.applied[name] = have
		}
		for k, s := range want {
			if old, ok := have[k]; ok && sameService(old, s) {
				continue
			}
			if err := nd.dp.UpsertService(s); err != nil {
				errs = append(errs, fmt.Errorf("service %v on %s: %w", s.Frontend, name, err))
				continue
			}
			have[k] = s
		}
		for k := range have {
			if _, ok := want[k]; ok {
				continue
			}
			if err := nd.dp.DeleteService(k.addr, k.proto); err != nil {
				errs = append(errs, fmt.Errorf("delete service %v on %s: %w", k.addr, name, err))
				continue
			}
			delete(have, k)
		}
	}
	return errors.Join(errs...)
}

func sameService(a, b datapath.Service) bool {
	return a.Frontend == b.Frontend && a.Proto == b.Proto && a.Type == b.Type && a.Local == b.Local &&
		a.L7ProxyPort == b.L7ProxyPort && slices.Equal(a.Backends, b.Backends) && slices.Equal(a.ClusterBackends, b.ClusterBackends)
}

// Services lists the services the control plane programs, by namespace
// and name.
func (cp *ControlPlane) Services() []Service {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []Service
	for _, s := range cp.lb.services {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// ServiceRow is one frontend in `cilium service list` form.
type ServiceRow struct {
	ID       int
	Frontend string // address:port/PROTO
	Type     string // ClusterIP, NodePort, HostPort, LoadBalancer, ExternalIPs
	// Backends are rendered "address:port/PROTO (active)" in slot order.
	Backends []string
}

// rowLocked builds a row and gives its frontend a stable ID.
func (cp *ControlPlane) rowLocked(fe netip.AddrPort, proto uint8, typ string, backends []netip.AddrPort) ServiceRow {
	name := fmt.Sprintf("%s/%s", fe, policy.ProtoName(proto))
	id, ok := cp.lb.ids[name]
	if !ok {
		cp.lb.nextID++
		id = cp.lb.nextID
		cp.lb.ids[name] = id
	}
	r := ServiceRow{ID: id, Frontend: name, Type: typ}
	for _, b := range backends {
		// Cilium prints backends with their protocol too (L3n4Addr).
		r.Backends = append(r.Backends, fmt.Sprintf("%s/%s (active)", b, policy.ProtoName(proto)))
	}
	return r
}

// ServiceTable lists every frontend of the lab as `cilium service list`
// does: the ClusterIP of each service port, its LoadBalancer and external
// IPs (types LoadBalancer and ExternalIPs), its NodePort on each node's
// address and on 0.0.0.0, and every pod's hostPort (node address and
// 0.0.0.0). Rows are sorted by ID; IDs stay stable for the control plane's
// life.
//
// On --datapath cilium the rows are read from every node's Cilium LB maps
// (cilium_lb4_services_v2 and _backends_v3), as `cilium service list`
// reads its node's: see ciliumServiceTableLocked.
func (cp *ControlPlane) ServiceTable() ([]ServiceRow, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.lb.init()
	if cp.opts.Datapath == "cilium" {
		return cp.ciliumServiceTableLocked()
	}
	keys := make([]string, 0, len(cp.lb.services))
	for k := range cp.lb.services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	any4 := netip.IPv4Unspecified()
	var rows []ServiceRow
	for _, k := range keys {
		s := cp.lb.services[k]
		for _, p := range s.Ports {
			all := backendAddrs(p.Backends, "")
			if s.ClusterIP.IsValid() {
				rows = append(rows, cp.rowLocked(netip.AddrPortFrom(s.ClusterIP, p.Port), p.Proto, "ClusterIP", all))
			}
			for _, ea := range s.externalFrontends() {
				// Under externalTrafficPolicy Local the backends of the
				// node that serves the address from outside (its
				// announcer) are listed.
				bs := all
				if s.ExternalTrafficPolicyLocal {
					bs = backendAddrs(p.Backends, cp.l2.holders[ea.addr])
				}
				rows = append(rows, cp.rowLocked(netip.AddrPortFrom(ea.addr, p.Port), p.Proto, ea.typ.String(), bs))
			}
			if p.NodePort == 0 {
				continue
			}
			for _, name := range cp.order {
				n := cp.nodes[name].n
				bs := all
				if s.ExternalTrafficPolicyLocal {
					bs = backendAddrs(p.Backends, n.Name)
				}
				rows = append(rows, cp.rowLocked(netip.AddrPortFrom(n.IP, p.NodePort), p.Proto, "NodePort", bs))
			}
			rows = append(rows, cp.rowLocked(netip.AddrPortFrom(any4, p.NodePort), p.Proto, "NodePort", all))
		}
	}
	pods := make([]*topo.Pod, 0, len(cp.lb.hostPods))
	for _, p := range cp.lb.hostPods {
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	for _, p := range pods {
		for _, port := range p.Ports {
			proto := policy.PortProto(port.Protocol)
			if port.HostPort == 0 || (proto != 6 && proto != 17) {
				continue
			}
			b := []netip.AddrPort{netip.AddrPortFrom(p.IP, port.Port)}
			rows = append(rows, cp.rowLocked(netip.AddrPortFrom(p.Node.IP, port.HostPort), proto, "HostPort", b))
			rows = append(rows, cp.rowLocked(netip.AddrPortFrom(any4, port.HostPort), proto, "HostPort", b))
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows, nil
}

// WriteServiceTable renders rows as `cilium service list` prints them:
//
//	ID   Frontend            Service Type   Backend
//	1    10.96.0.10:53/UDP   ClusterIP      1 => 10.244.1.5:53 (active)
//	                                        2 => 10.244.2.7:53 (active)
func WriteServiceTable(w io.Writer, rows []ServiceRow) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tFrontend\tService Type\tBackend")
	for _, r := range rows {
		first := ""
		if len(r.Backends) > 0 {
			first = "1 => " + r.Backends[0]
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.ID, r.Frontend, r.Type, first)
		for i, b := range r.Backends[min(1, len(r.Backends)):] {
			fmt.Fprintf(tw, "\t\t\t%d => %s\n", i+2, b)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write service table: %w", err)
	}
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return fmt.Errorf("write service table: %w", err)
		}
	}
	return nil
}
