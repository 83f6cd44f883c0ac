package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/podlab/podlab/datapath/identity"
)

// Endpoint is what the compiler needs to know about one endpoint (a pod).
type Endpoint struct {
	Namespace string
	Name      string
	// Labels are the endpoint's identity labels (identity.K8sLabels).
	Labels   identity.Labels
	Identity identity.ID
	// NamedPorts are the pod's named container ports, for ingress rules
	// on named ports.
	NamedPorts []NamedPort
}

// CompileOptions tune compilation.
type CompileOptions struct {
	// PeerPorts holds the named container ports of the endpoints of each
	// identity (union over the endpoints sharing it), used to resolve named
	// ports in egress rules. Without it, egress named ports match nothing.
	PeerPorts map[identity.ID][]NamedPort
	// AllowLocalhost adds an ingress allow from the host identity to every
	// endpoint whose ingress is enforced, as Cilium does by default
	// (allow-localhost) and Kubernetes NetworkPolicy requires (kubelet
	// probes). A deny rule for host still wins.
	AllowLocalhost bool
	// FQDNs are the DNS answers toFQDNs rules select (Repository.Compiler
	// fills it from Repository.DNSNames when nil).
	FQDNs FQDNNames
}

// RuleAllowLocalhost names entries added by CompileOptions.AllowLocalhost.
const RuleAllowLocalhost = "allow-localhost"

// Compiler compiles endpoint policies against one snapshot of the policies
// and of the identity table. Peer sets are computed once per selector and
// shared by every endpoint compiled with the same Compiler. It is safe for
// concurrent use; make a new one when policies or identities change.
type Compiler struct {
	policies []*Policy
	table    *identity.Table
	opts     CompileOptions

	world   []identity.ID
	cluster []identity.ID

	mu    sync.Mutex
	peers map[*PeerRule]resolvedPeers
}

// resolvedPeers caches what a peer rule resolves to.
type resolvedPeers struct {
	ids  []identity.ID
	name string
}

// Compiler returns a compiler over the repository's current policies and
// the identity table t (reserved, workload and CIDR identities; usually
// Allocator.Snapshot()).
func (r *Repository) Compiler(t *identity.Table, opts CompileOptions) *Compiler {
	r.mu.RLock()
	policies := r.sortedLocked()
	if opts.FQDNs == nil {
		opts.FQDNs = r.dnsNamesLocked()
	}
	r.mu.RUnlock()
	return NewCompiler(policies, t, opts)
}

// NewCompiler returns a compiler over policies and the identity table t.
func NewCompiler(policies []*Policy, t *identity.Table, opts CompileOptions) *Compiler {
	if t == nil {
		t = identity.NewTable(identity.Reserved())
	}
	ps := slices.Clone(policies)
	slices.SortFunc(ps, func(a, b *Policy) int { return compareKey(a.Key, b.Key) })
	c := &Compiler{policies: ps, table: t, opts: opts, peers: map[*PeerRule]resolvedPeers{}}
	c.world = []identity.ID{identity.World}
	for _, id := range t.All() {
		switch {
		case id.IsCIDR():
			c.world = append(c.world, id.ID)
		case id.ID != identity.World && id.ID != identity.Unknown:
			c.cluster = append(c.cluster, id.ID)
		}
	}
	for _, id := range identity.Reserved() {
		if _, ok := t.Lookup(id.ID); !ok && id.ID != identity.World {
			c.cluster = append(c.cluster, id.ID)
		}
	}
	slices.Sort(c.world)
	slices.Sort(c.cluster)
	return c
}

// Compile is a shorthand for r.Compiler(t, CompileOptions{}).Compile(ep).
func (r *Repository) Compile(ep Endpoint, t *identity.Table) EndpointPolicy {
	return r.Compiler(t, CompileOptions{}).Compile(ep)
}

// Selects reports which policies select ep, per direction, in key order.
func (c *Compiler) Selects(ep Endpoint) []Key {
	labels := endpointLabels(ep)
	var out []Key
	for _, p := range c.policies {
		for i := range p.Rules {
			if p.Rules[i].Subject.Matches(labels) {
				out = append(out, p.Key)
				break
			}
		}
	}
	return out
}

func endpointLabels(ep Endpoint) identity.Labels {
	if _, ok := ep.Labels.Lookup(identity.SourceK8s, identity.PodNamespaceKey); ok || ep.Namespace == "" {
		return ep.Labels
	}
	ls := append(slices.Clone(ep.Labels), identity.Label{Source: identity.SourceK8s, Key: identity.PodNamespaceKey, Value: ep.Namespace})
	return identity.NewLabels(ls...)
}

type entryKey struct {
	dir    Direction
	id     uint32
	proto  uint8
	lo, hi uint16
}

type l4 struct {
	proto  uint8
	lo, hi uint16
	l7     *L7Rules
}

// Compile returns the policy of ep: whether each direction is enforced and
// one entry per peer identity × protocol × port range, sorted. At most one
// entry exists per (direction, identity, protocol, ports); when an allow
// and a deny rule produce the same one, the deny wins. Allow entries that a
// deny entry covers completely are left out, and so are allow entries of a
// direction that is not enforced (everything is allowed there; only deny
// entries matter).
func (c *Compiler) Compile(ep Endpoint) EndpointPolicy {
	labels := endpointLabels(ep)
	var out EndpointPolicy
	// Candidates are sorted by key with denies first, then deduplicated:
	// the first candidate of each key wins (a deny over an allow, else the
	// first policy in key order).
	var cands []candidate
	var names []string
	var l7s []*L7Rules
	add := func(dir Direction, id uint32, t l4, deny bool, name int) {
		k1 := uint64(dir)<<56 | uint64(id)<<24 | uint64(t.proto)<<16 | uint64(t.lo)
		k2 := uint32(t.hi) << 1
		if !deny {
			k2 |= 1
		}
		c := candidate{k1: k1, k2: k2, seq: int32(len(cands)), name: int32(name), l7: -1}
		if t.l7 != nil && !deny {
			c.l7 = int32(len(l7s))
			l7s = append(l7s, t.l7)
		}
		cands = append(cands, c)
	}
	for _, p := range c.policies {
		for ri := range p.Rules {
			rule := &p.Rules[ri]
			if !rule.Subject.Matches(labels) {
				continue
			}
			out.IngressEnforced = out.IngressEnforced || rule.IngressDefaultDeny
			out.EgressEnforced = out.EgressEnforced || rule.EgressDefaultDeny
			for pi := range rule.Peers {
				pr := &rule.Peers[pi]
				rp := c.resolved(p, pr)
				if len(rp.ids) == 0 {
					continue
				}
				names = append(names, rp.name)
				for _, id := range rp.ids {
					for _, t := range c.ports(pr, ep, id) {
						add(pr.Direction, uint32(id), t, pr.Deny, len(names)-1)
					}
				}
			}
		}
	}
	if c.opts.AllowLocalhost && out.IngressEnforced {
		names = append(names, RuleAllowLocalhost)
		add(Ingress, uint32(identity.Host), l4{}, false, len(names)-1)
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		switch {
		case a.k1 != b.k1:
			return cmp.Compare(a.k1, b.k1)
		case a.k2 != b.k2:
			return cmp.Compare(a.k2, b.k2)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	entries := make([]Entry, 0, len(cands))
	var denies []Entry
	for i, cd := range cands {
		if i > 0 && cands[i-1].k1 == cd.k1 && cands[i-1].k2>>1 == cd.k2>>1 {
			// Same key: lost to the previous candidate, unless both
			// allow, when their L7 rules add up.
			if last := &entries[len(entries)-1]; !last.Deny && cd.k2&1 == 1 {
				last.L7 = last.L7.Merge(l7Of(l7s, cd.l7))
			}
			continue
		}
		e := Entry{
			Direction: Direction(cd.k1 >> 56),
			Identity:  uint32(cd.k1 >> 24),
			Proto:     uint8(cd.k1 >> 16),
			PortLo:    uint16(cd.k1),
			PortHi:    uint16(cd.k2 >> 1),
			Deny:      cd.k2&1 == 0,
			L7:        l7Of(l7s, cd.l7),
			Rule:      names[cd.name],
		}
		if e.Deny {
			denies = append(denies, e)
		}
		entries = append(entries, e)
	}
	out.Entries = entries[:0]
	for _, e := range entries {
		if !e.Deny {
			if (e.Direction == Ingress && !out.IngressEnforced) || (e.Direction == Egress && !out.EgressEnforced) {
				continue
			}
			if len(denies) > 0 && shadowed(e, denies) {
				continue
			}
		}
		out.Entries = append(out.Entries, e)
	}
	return out
}

// candidate is an entry before deduplication, packed for sorting: k1 holds
// direction, identity, protocol and first port; k2 the last port and an
// allow bit (so denies sort first).
type candidate struct {
	k1   uint64
	k2   uint32
	seq  int32
	name int32
	l7   int32 // index of the L7 rules of an allow, -1: none
}

func l7Of(l7s []*L7Rules, i int32) *L7Rules {
	if i < 0 {
		return nil
	}
	return l7s[i]
}

// shadowed reports whether a deny entry covers every packet e matches.
func shadowed(e Entry, denies []Entry) bool {
	for _, d := range denies {
		if d.Direction == e.Direction && (d.Identity == 0 || d.Identity == e.Identity) && coversL4(d, e) {
			return true
		}
	}
	return false
}

func hasPorts(e Entry) bool { return e.PortLo != 0 || e.PortHi != 0 }

func isPortProto(p uint8) bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// coversL4 reports whether d's protocol/port set contains e's.
func coversL4(d, e Entry) bool {
	switch {
	case d.Proto == ProtoAny && !hasPorts(d):
		return true
	case d.Proto == ProtoAny:
		return (e.Proto == ProtoAny || isPortProto(e.Proto)) && hasPorts(e) && d.PortLo <= e.PortLo && e.PortHi <= d.PortHi
	case d.Proto != e.Proto:
		return false
	case d.Proto == ProtoICMP:
		return d.PortLo == e.PortLo
	case !hasPorts(d):
		return true
	}
	return hasPorts(e) && d.PortLo <= e.PortLo && e.PortHi <= d.PortHi
}

// SortEntries sorts entries by direction, identity, protocol, ports and
// verdict: the order Compile returns.
func SortEntries(es []Entry) {
	slices.SortFunc(es, compareEntry)
}

func compareEntry(a, b Entry) int {
	switch {
	case a.Direction != b.Direction:
		return cmp.Compare(a.Direction, b.Direction)
	case a.Identity != b.Identity:
		return cmp.Compare(a.Identity, b.Identity)
	case a.Proto != b.Proto:
		return cmp.Compare(a.Proto, b.Proto)
	case a.PortLo != b.PortLo:
		return cmp.Compare(a.PortLo, b.PortLo)
	case a.PortHi != b.PortHi:
		return cmp.Compare(a.PortHi, b.PortHi)
	case a.Deny != b.Deny:
		if b.Deny {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Rule, b.Rule)
}

// resolved returns the sorted peer identities of a peer rule (0 for any)
// and the name of its entries.
func (c *Compiler) resolved(p *Policy, pr *PeerRule) resolvedPeers {
	c.mu.Lock()
	rp, ok := c.peers[pr]
	c.mu.Unlock()
	if ok {
		return rp
	}
	rp = resolvedPeers{ids: c.resolvePeers(pr), name: p.Key.String() + " " + pr.Name}
	c.mu.Lock()
	c.peers[pr] = rp
	c.mu.Unlock()
	return rp
}

func (c *Compiler) resolvePeers(pr *PeerRule) []identity.ID {
	if pr.AnyPeer {
		return []identity.ID{identity.Unknown}
	}
	set := map[identity.ID]bool{}
	for i := range pr.Endpoints {
		sel := &pr.Endpoints[i]
		for _, id := range c.table.All() {
			if sel.Matches(id.Labels) {
				set[id.ID] = true
			}
		}
	}
	for _, e := range pr.Entities {
		switch e {
		case EntityAll:
			return []identity.ID{identity.Unknown}
		case EntityWorld:
			for _, id := range c.world {
				set[id] = true
			}
		case EntityCluster:
			for _, id := range c.cluster {
				set[id] = true
			}
		case EntityHost:
			set[identity.Host] = true
		case EntityRemoteNode:
			set[identity.RemoteNode] = true
		case EntityKubeAPIServer:
			set[identity.KubeAPIServer] = true
		case EntityHealth:
			set[identity.Health] = true
		case EntityInit:
			set[identity.Init] = true
		case EntityUnmanaged:
			set[identity.Unmanaged] = true
		}
	}
	if len(pr.FQDNs) > 0 {
		want := map[netip.Prefix]bool{}
		for _, a := range c.opts.FQDNs.match(pr.FQDNs) {
			want[netip.PrefixFrom(a, 32)] = true
		}
		for _, id := range c.table.All() {
			if id.IsCIDR() && want[id.Prefix] {
				set[id.ID] = true
			}
		}
	}
	for _, cr := range pr.CIDRs {
		if cr.Prefix.Bits() == 0 {
			set[identity.World] = true
		}
		for _, id := range c.table.All() {
			if !id.IsCIDR() || !within(id.Prefix, cr.Prefix) {
				continue
			}
			excluded := false
			for _, ex := range cr.Except {
				if within(id.Prefix, ex) {
					excluded = true
					break
				}
			}
			if !excluded {
				set[id.ID] = true
			}
		}
	}
	out := make([]identity.ID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// ports returns the protocol/port tuples of a peer rule for peer id.
func (c *Compiler) ports(pr *PeerRule, ep Endpoint, id identity.ID) []l4 {
	if len(pr.Ports) == 0 && len(pr.ICMPs) == 0 {
		return []l4{{}}
	}
	out := make([]l4, 0, len(pr.Ports)+len(pr.ICMPs))
	for _, p := range pr.Ports {
		if p.Name == "" {
			out = append(out, l4{p.Proto, p.Port, p.EndPort, p.L7})
			continue
		}
		match := func(np NamedPort) {
			if np.Name == p.Name && (p.Proto == ProtoAny || p.Proto == np.Proto) {
				out = append(out, l4{np.Proto, np.Port, np.Port, p.L7})
			}
		}
		switch {
		case pr.Direction == Ingress:
			for _, np := range ep.NamedPorts {
				match(np)
			}
		case id == identity.Unknown:
			for _, nps := range c.opts.PeerPorts {
				for _, np := range nps {
					match(np)
				}
			}
		default:
			for _, np := range c.opts.PeerPorts[id] {
				match(np)
			}
		}
	}
	for _, t := range pr.ICMPs {
		out = append(out, l4{ProtoICMP, uint16(t.Type), uint16(t.Type), nil})
	}
	return out
}

// within reports whether prefix inner lies inside outer.
func within(inner, outer netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}
