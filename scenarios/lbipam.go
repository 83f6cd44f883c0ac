package scenarios

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/podlab/podlab/internal/yamldiag"
)

// DefaultLBPool is the lab-wide pool LoadBalancer Services get their
// addresses from when the scenario defines no CiliumLoadBalancerIPPool: the
// top of the underlay (172.18.0.0/16), where kind users usually put
// MetalLB/Cilium pools, far from node addresses (172.18.0.2 and up) and
// below the world's 172.18.255.254.
var DefaultLBPool = &LBIPPool{
	APIVersion: "cilium.io/v2",
	Meta:       ObjectMeta{Name: "podlab-default"},
	Blocks: []LBIPBlock{{Start: netip.MustParseAddr("172.18.255.200"), Stop: netip.MustParseAddr("172.18.255.250"),
		Path: "spec.blocks[0]"}},
	AllowFirstLastIPs: true,
	Source:            Source{File: "(default LoadBalancer pool)"},
}

// LBIPAMError is an LB IPAM failure: the Service stays <pending>. Path is
// the field of the object it comes from (Object) that causes it.
type LBIPAMError struct {
	Object Object
	Path   string
	Msg    string
}

func (e *LBIPAMError) Error() string {
	src := e.Object.Origin()
	return fmt.Sprintf("%s: %s: %s", Source{File: src.File, Line: lineAt(e.Object, e.Path)}, e.Path, e.Msg)
}

type lbUse struct {
	ref        ObjectRef
	sharingKey string
	ports      []string // "80/TCP"
}

// LBIPAM hands out LoadBalancer IPs as Cilium's LB IPAM does: from the
// pools whose serviceSelector selects the Service (every pool in name order,
// the first free address), the addresses a Service asks for when a
// selecting pool holds them and nobody else uses them (or only Services
// with the same sharing key and other ports). A Service it cannot serve
// gets no address (it stays <pending>) and an error saying why. It is not
// safe for concurrent use.
type LBIPAM struct {
	pools []*LBIPPool
	used  map[netip.Addr][]lbUse
	given map[ObjectRef][]netip.Addr
}

// NewLBIPAM returns an allocator over pools (DefaultLBPool when empty). It
// refuses overlapping pools, naming both.
func NewLBIPAM(pools []*LBIPPool) (*LBIPAM, error) {
	if len(pools) == 0 {
		pools = []*LBIPPool{DefaultLBPool}
	}
	pools = slices.Clone(pools)
	sort.SliceStable(pools, func(i, j int) bool { return pools[i].Meta.Name < pools[j].Meta.Name })
	if err := checkPoolOverlaps(pools); err != nil {
		return nil, err
	}
	return &LBIPAM{pools: pools, used: map[netip.Addr][]lbUse{}, given: map[ObjectRef][]netip.Addr{}}, nil
}

// checkPoolOverlaps reports the first two blocks (of any pools) that share
// an address.
func checkPoolOverlaps(pools []*LBIPPool) error {
	type blk struct {
		p *LBIPPool
		b LBIPBlock
	}
	var all []blk
	for _, p := range pools {
		for _, b := range p.Blocks {
			all = append(all, blk{p, b})
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if !a.b.Last().Less(b.b.First()) && !b.b.Last().Less(a.b.First()) {
				what := fmt.Sprintf("%s overlaps %s of CiliumLoadBalancerIPPool %s (%s)", blockString(a.b), blockString(b.b), b.p.Meta.Name, b.p.Source)
				if a.p == b.p {
					what = fmt.Sprintf("%s overlaps %s of the same pool", blockString(a.b), blockString(b.b))
				}
				return &LBIPAMError{Object: a.p, Path: a.b.Path, Msg: what + "; overlapping pools are marked conflicting and give no address"}
			}
		}
	}
	return nil
}

func blockString(b LBIPBlock) string {
	if b.CIDR.IsValid() {
		return b.CIDR.String()
	}
	return b.Start.String() + "-" + b.Stop.String()
}

// Pools returns the pools in use (the default pool when none was given).
func (a *LBIPAM) Pools() []*LBIPPool { return a.pools }

func (p *LBIPPool) selects(s *Service) bool {
	return p.ServiceSelector == nil || p.ServiceSelector.Matches(serviceLabels(s))
}

// holds reports whether addr is an address the pool gives out.
func (p *LBIPPool) holds(addr netip.Addr) bool {
	for _, b := range p.Blocks {
		if addr.Less(b.First()) || b.Last().Less(addr) {
			continue
		}
		if b.CIDR.IsValid() && !p.AllowFirstLastIPs && b.CIDR.Bits() < 31 && (addr == b.First() || addr == b.Last()) {
			continue
		}
		return true
	}
	return false
}

func servicePorts(s *Service) []string {
	out := make([]string, 0, len(s.Ports))
	for _, p := range s.Ports {
		out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return out
}

// conflict says why svc may not use addr, or "".
func (a *LBIPAM) conflict(svc *Service, addr netip.Addr) string {
	ref := svc.Ref()
	for _, u := range a.used[addr] {
		if u.ref == ref {
			continue
		}
		if svc.SharingKey == "" || u.sharingKey != svc.SharingKey {
			return fmt.Sprintf("%s is already used by %s", addr, u.ref)
		}
		for _, p := range servicePorts(svc) {
			if slices.Contains(u.ports, p) {
				return fmt.Sprintf("%s is shared with %s (sharing key %q), which already uses port %s", addr, u.ref, svc.SharingKey, p)
			}
		}
	}
	return ""
}

// Assign gives a LoadBalancer Service its ingress addresses. Assigning
// again returns what it has.
func (a *LBIPAM) Assign(svc *Service) ([]netip.Addr, error) {
	ref := svc.Ref()
	if got, ok := a.given[ref]; ok {
		return got, nil
	}
	if svc.Type != ServiceLoadBalancer {
		return nil, nil
	}
	var selecting []*LBIPPool
	for _, p := range a.pools {
		if p.selects(svc) {
			selecting = append(selecting, p)
		}
	}
	var out []netip.Addr
	if len(svc.LoadBalancerIPs) > 0 {
		for _, ip := range svc.LoadBalancerIPs {
			var pool *LBIPPool
			for _, p := range selecting {
				if p.holds(ip) {
					pool = p
					break
				}
			}
			if pool == nil {
				return nil, &LBIPAMError{Object: svc, Path: svc.LoadBalancerIPsPath,
					Msg: fmt.Sprintf("%s is in no pool that selects this Service (%s); the Service stays <pending>", ip, a.poolList(selecting))}
			}
			if pool.Disabled && len(a.used[ip]) == 0 {
				return nil, &LBIPAMError{Object: svc, Path: svc.LoadBalancerIPsPath,
					Msg: fmt.Sprintf("%s is in CiliumLoadBalancerIPPool %s, which is disabled; the Service stays <pending>", ip, pool.Meta.Name)}
			}
			if why := a.conflict(svc, ip); why != "" {
				return nil, &LBIPAMError{Object: svc, Path: svc.LoadBalancerIPsPath, Msg: why + "; the Service stays <pending>"}
			}
			out = append(out, ip)
		}
	} else {
		ip, ok := a.free(svc, selecting)
		if !ok {
			return nil, &LBIPAMError{Object: svc, Path: "spec.type",
				Msg: fmt.Sprintf("no free address in the pools that select this Service (%s); the Service stays <pending>", a.poolList(selecting))}
		}
		out = append(out, ip)
	}
	for _, ip := range out {
		a.used[ip] = append(a.used[ip], lbUse{ref: ref, sharingKey: svc.SharingKey, ports: servicePorts(svc)})
	}
	a.given[ref] = out
	return out, nil
}

// free returns the first address a selecting, enabled pool can give svc:
// a shared address of its sharing key first, else an unused one.
func (a *LBIPAM) free(svc *Service, pools []*LBIPPool) (netip.Addr, bool) {
	if svc.SharingKey != "" {
		var shared []netip.Addr
		for ip, us := range a.used {
			for _, u := range us {
				if u.sharingKey == svc.SharingKey {
					shared = append(shared, ip)
				}
			}
		}
		slices.SortFunc(shared, netip.Addr.Compare)
		for _, ip := range shared {
			for _, p := range pools {
				if p.holds(ip) && a.conflict(svc, ip) == "" {
					return ip, true
				}
			}
		}
	}
	for _, p := range pools {
		if p.Disabled {
			continue
		}
		for _, b := range p.Blocks {
			for ip := b.First(); !b.Last().Less(ip); ip = ip.Next() {
				if p.holds(ip) && len(a.used[ip]) == 0 {
					return ip, true
				}
				if ip == b.Last() {
					break
				}
			}
		}
	}
	return netip.Addr{}, false
}

func (a *LBIPAM) poolList(pools []*LBIPPool) string {
	if len(pools) == 0 {
		return "no pool selects it"
	}
	var parts []string
	for _, p := range pools {
		var bs []string
		for _, b := range p.Blocks {
			bs = append(bs, blockString(b))
		}
		s := p.Meta.Name + " " + strings.Join(bs, ",")
		if p.Disabled {
			s += " (disabled)"
		}
		parts = append(parts, s)
	}
	return "pools: " + strings.Join(parts, "; ")
}

// Release frees a Service's addresses.
func (a *LBIPAM) Release(ref ObjectRef) {
	for _, ip := range a.given[ref] {
		us := a.used[ip]
		us = slices.DeleteFunc(us, func(u lbUse) bool { return u.ref == ref })
		if len(us) == 0 {
			delete(a.used, ip)
		} else {
			a.used[ip] = us
		}
	}
	delete(a.given, ref)
}

// L2Announcements returns, for a Service with addresses lbIPs, every
// address some policy announces, with the nodes (in nodes' order) and
// devices of the policies that select it. A Service no policy selects is
// not announced: as with Cilium, its addresses are then unreachable from
// the underlay.
func L2Announcements(policies []*L2AnnouncementPolicy, nodes []NodeInfo, svc *Service, lbIPs []netip.Addr) []L2AnnouncementOf {
	var out []L2AnnouncementOf
	add := func(ip netip.Addr, pol *L2AnnouncementPolicy) {
		devs := pol.DevicesOf(UnderlayDevices)
		if len(devs) == 0 {
			return
		}
		var ns []string
		for _, n := range nodes {
			if pol.NodeSelector == nil || pol.NodeSelector.Matches(n.Labels) {
				ns = append(ns, n.Name)
			}
		}
		if len(ns) == 0 {
			return
		}
		for i := range out {
			if out[i].IP == ip {
				for _, n := range ns {
					if !slices.Contains(out[i].Nodes, n) {
						out[i].Nodes = append(out[i].Nodes, n)
					}
				}
				return
			}
		}
		out = append(out, L2AnnouncementOf{IP: ip, Nodes: ns, Devices: devs, Policy: pol.Meta.Name})
	}
	for _, pol := range policies {
		if pol.ServiceSelector != nil && !pol.ServiceSelector.Matches(serviceLabels(svc)) {
			continue
		}
		if pol.LoadBalancerIPs {
			for _, ip := range lbIPs {
				add(ip, pol)
			}
		}
		if pol.ExternalIPs {
			for _, ip := range svc.ExternalIPs {
				add(ip, pol)
			}
		}
	}
	// Keep node order as the cluster lists nodes.
	for i := range out {
		var ordered []string
		for _, n := range nodes {
			if slices.Contains(out[i].Nodes, n.Name) {
				ordered = append(ordered, n.Name)
			}
		}
		out[i].Nodes = ordered
	}
	return out
}

// L2AnnouncementOf is one announced address of a Service.
type L2AnnouncementOf struct {
	IP      netip.Addr
	Nodes   []string
	Devices []string
	// Policy is the first policy that selects it.
	Policy string
}

// validateLB checks LoadBalancer IPAM and L2 announcements before anything
// runs: overlapping pools, addresses a Service asks for that no selecting
// pool holds or another Service already uses, pools that run out, external
// IPs used twice; and warns about Services no L2 announcement policy
// selects (unreachable from outside, as with Cilium).
func validateLB(s *Scenario, ds *diagnostics) {
	diag := func(e *LBIPAMError) Diagnostic {
		src := e.Object.Origin()
		return Diagnostic{File: src.File, Line: lineAt(e.Object, e.Path), Path: e.Path, Msg: e.Msg}
	}
	ipam, err := NewLBIPAM(s.LBIPPools)
	if err != nil {
		if le, ok := err.(*LBIPAMError); ok {
			ds.add(diag(le))
		} else {
			ds.add(Diagnostic{File: s.Name, Msg: err.Error()})
		}
		return
	}
	for _, st := range s.Steps {
		if st.Apply == nil {
			continue
		}
		for _, o := range st.Apply.Objects {
			switch o.(type) {
			case *LBIPPool, *L2AnnouncementPolicy:
				ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: "apply",
					Msg: fmt.Sprintf("not supported yet: %s in an apply step; put it among the scenario's documents", o.Ref())})
			}
		}
	}
	externals := map[netip.Addr]ObjectRef{}
	seen := map[ObjectRef]bool{}
	var services []*Service
	collect := func(objs []Object) {
		for _, o := range objs {
			if svc, ok := o.(*Service); ok && !seen[svc.Ref()] {
				seen[svc.Ref()] = true
				services = append(services, svc)
			}
		}
	}
	collect(s.Objects)
	for _, st := range s.Steps {
		if st.Apply != nil {
			collect(st.Apply.Objects)
		}
	}
	for _, svc := range services {
		for i, ip := range svc.ExternalIPs {
			if prev, dup := externals[ip]; dup {
				ds.add(Diagnostic{File: svc.Source.File, Line: lineAt(svc, "spec.externalIPs"), Path: yamldiag.Index("spec.externalIPs", i),
					Msg: fmt.Sprintf("%s is already an external IP of %s", ip, prev)})
			}
			externals[ip] = svc.Ref()
			if DefaultUnderlay.Contains(ip) && ip.As4()[2] == 0 {
				ds.warn(Diagnostic{File: svc.Source.File, Line: lineAt(svc, "spec.externalIPs"), Path: yamldiag.Index("spec.externalIPs", i),
					Msg: fmt.Sprintf("%s is in the node address range of the underlay; a node may own it", ip)})
			}
		}
		if len(s.LBIPPools) == 0 && len(s.L2Policies) == 0 && len(s.Steps) == 0 && len(svc.LoadBalancerIPs) > 0 {
			// Objects alone (`podlab apply -f`): the pools and the
			// addresses already given are the running lab's, which
			// checks the request when the Service is applied.
			continue
		}
		ips, err := ipam.Assign(svc)
		if err != nil {
			if le, ok := err.(*LBIPAMError); ok {
				ds.add(diag(le))
			} else {
				ds.add(Diagnostic{File: svc.Source.File, Line: svc.Source.Line, Msg: err.Error()})
			}
			continue
		}
		if svc.Type != ServiceLoadBalancer && len(svc.ExternalIPs) == 0 {
			continue
		}
		if len(L2Announcements(s.L2Policies, s.Nodes(), svc, ips)) == 0 {
			ds.warn(Diagnostic{File: svc.Source.File, Line: svc.Source.Line, Path: "metadata.name",
				Msg: "no CiliumL2AnnouncementPolicy announces this Service's addresses: as with Cilium, nodes and pods reach them, the world does not"})
		}
	}
}

// DefaultUnderlay is the underlay network of cluster labs (topo's).
var DefaultUnderlay = netip.MustParsePrefix("172.18.0.0/16")
