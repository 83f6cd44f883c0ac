package cilium

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/policy"
)

// Flags of a service's master entry (bpf/lib/lb.h, enum
// lb_svc_flags / lb_svc_flags2).
const (
	svcFlagExternalIP    = 1 << 0
	svcFlagNodePort      = 1 << 1
	svcFlagExtLocalScope = 1 << 2
	svcFlagHostPort      = 1 << 3
	svcFlagLoadBalancer  = 1 << 5
	svcFlagRoutable      = 1 << 6

	svcFlag2TwoScopes = 1 << 5
)

// Lookup scopes of a frontend (lb4_key.scope): external traffic, and
// in-cluster traffic of a frontend with two sets of backends.
const (
	scopeExternal = 0
	scopeInternal = 1
)

// FrontendKind is what a frontend is, as Cilium's service flags say.
type FrontendKind uint8

// Frontend kinds.
const (
	ClusterIP FrontendKind = iota
	NodePort
	HostPort
	LoadBalancer
	ExternalIP
)

// Frontend is one service frontend written into Cilium's LB maps.
type Frontend struct {
	Addr  netip.AddrPort
	Proto uint8
	Kind  FrontendKind
	// Backends serve the frontend; with LocalBackends set
	// (externalTrafficPolicy: Local) they serve in-cluster traffic only
	// and LocalBackends, the node's own, serve traffic from outside
	// (Cilium's two scopes).
	Backends      []netip.AddrPort
	Local         bool
	LocalBackends []netip.AddrPort
}

func (f *Frontend) flags() (uint8, uint8) {
	var fl, fl2 uint8 = svcFlagRoutable, 0
	switch f.Kind {
	case NodePort:
		fl |= svcFlagNodePort
	case HostPort:
		fl |= svcFlagHostPort
	case LoadBalancer:
		fl |= svcFlagLoadBalancer
	case ExternalIP:
		fl |= svcFlagExternalIP
	}
	if f.Local && f.Kind != ClusterIP {
		fl |= svcFlagExtLocalScope
		fl2 |= svcFlag2TwoScopes
	}
	return fl, fl2
}

// surrogate is the 0.0.0.0:port entry Cilium writes beside a NodePort or
// hostPort frontend: bpf_lxc's wildcard lookup (a pod connecting to any
// node's address on the port) finds it.
func (f *Frontend) surrogate() (netip.AddrPort, bool) {
	if f.Kind != NodePort && f.Kind != HostPort {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), f.Addr.Port()), true
}

type frontendKey struct {
	addr  netip.AddrPort
	proto uint8
}

// frontendState is what the node wrote for one frontend: its entries
// (keys by address and scope) and the backend IDs each holds.
type frontendState struct {
	fe     Frontend
	revNat uint16
	// slots are the backend IDs of each written entry, by entry.
	slots map[entryKey][]uint32
}

// entryKey is one master entry of the services map: address and scope.
type entryKey struct {
	addr  netip.AddrPort
	scope uint8
}

// lbTables is the node's service bookkeeping: frontends with their reverse
// NAT index and backend IDs (backend IDs are shared by frontends with the
// same backend address).
type lbTables struct {
	frontends  map[frontendKey]*frontendState
	backendIDs map[frontendKey]uint32 // backend address+proto → ID
	backendRef map[uint32]int
	nextRevNat uint16
	nextBE     uint32
}

func (l *lbTables) init() {
	l.frontends = map[frontendKey]*frontendState{}
	l.backendIDs = map[frontendKey]uint32{}
	l.backendRef = map[uint32]int{}
}

// UpsertService writes a frontend (TCP or UDP) with its backends into
// Cilium's LB maps (cilium_lb4_services_v2, _backends_v3, _reverse_nat)
// as the agent does: NodePort and hostPort frontends on the node's address
// and a surrogate 0.0.0.0 entry for bpf_lxc's wildcard lookup; under
// externalTrafficPolicy: Local an external scope with the node's backends
// and an internal scope with all. bpf_lxc translates per packet from pods
// (no socket LB in a lab), bpf_host and bpf_overlay for traffic from the
// network. Backends that stay keep their IDs (and connections).
func (n *Node) UpsertService(fe Frontend) error {
	if !fe.Addr.Addr().Is4() || fe.Addr.Port() == 0 {
		return fmt.Errorf("service %v: frontend must be an IPv4 address and a port", fe.Addr)
	}
	if fe.Proto != policy.ProtoTCP && fe.Proto != policy.ProtoUDP {
		return fmt.Errorf("service %v: protocol %d not supported yet (TCP, UDP)", fe.Addr, fe.Proto)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	key := frontendKey{fe.Addr, fe.Proto}
	st := n.lb.frontends[key]
	if st == nil {
		n.lb.nextRevNat++
		st = &frontendState{revNat: n.lb.nextRevNat, slots: map[entryKey][]uint32{}}
	}
	if err := n.revNat.Put(st.revNat, lb4RevNat{Address: fe.Addr.Addr().As4(), Port: be16(fe.Addr.Port())}); err != nil {
		return fmt.Errorf("%s %v: %w", mapRevNat, fe.Addr, err)
	}
	fl, fl2 := fe.flags()
	want := map[entryKey][]netip.AddrPort{}
	addrs := []netip.AddrPort{fe.Addr}
	if sur, ok := fe.surrogate(); ok {
		addrs = append(addrs, sur)
	}
	for _, a := range addrs {
		if fe.Local && fe.Kind != ClusterIP {
			want[entryKey{a, scopeExternal}] = fe.LocalBackends
			want[entryKey{a, scopeInternal}] = fe.Backends
		} else {
			want[entryKey{a, scopeExternal}] = fe.Backends
		}
	}
	var errs []error
	newSlots := map[entryKey][]uint32{}
	for ek, bes := range want {
		flags := fl
		if ek.addr != fe.Addr {
			flags &^= svcFlagRoutable // the surrogate
		}
		ids, err := n.writeEntryLocked(ek, fe.Proto, bes, flags, fl2, st.revNat, st.slots[ek])
		if err != nil {
			return fmt.Errorf("%s %v: %w", mapServices, ek.addr, err)
		}
		newSlots[ek] = ids
	}
	for ek, ids := range st.slots {
		if _, ok := want[ek]; !ok {
			errs = append(errs, n.deleteEntryLocked(ek, fe.Proto, ids))
		}
	}
	st.fe, st.slots = fe, newSlots
	n.lb.frontends[key] = st
	return errors.Join(errs...)
}

// writeEntryLocked writes one master entry with its backend slots (slots
// first, then the master entry that exposes them, then stale slots) and
// releases the backend IDs old held.
func (n *Node) writeEntryLocked(ek entryKey, proto uint8, backends []netip.AddrPort, flags, flags2 uint8, revNat uint16, old []uint32) ([]uint32, error) {
	var ids []uint32
	for _, b := range backends {
		bk := frontendKey{b, proto}
		id, ok := n.lb.backendIDs[bk]
		if !ok {
			n.lb.nextBE++
			id = n.lb.nextBE
			v := lb4Backend{Address: b.Addr().As4(), Port: be16(b.Port()), Proto: proto}
			if err := n.backends.Put(id, v); err != nil {
				return nil, fmt.Errorf("%s %v: %w", mapBackends, b, err)
			}
			n.lb.backendIDs[bk] = id
		}
		n.lb.backendRef[id]++
		ids = append(ids, id)
	}
	sk := lb4Key{Address: ek.addr.Addr().As4(), Dport: be16(ek.addr.Port()), Proto: proto, Scope: ek.scope}
	for i, id := range ids {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Put(k, lb4Service{BackendID: id, RevNatIndex: revNat}); err != nil {
			return nil, fmt.Errorf("slot %d: %w", i+1, err)
		}
	}
	if err := n.services.Put(sk, lb4Service{Count: uint16(len(ids)), RevNatIndex: revNat, Flags: flags, Flags2: flags2}); err != nil {
		return nil, err
	}
	var errs []error
	for i := len(ids); i < len(old); i++ {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, n.releaseBackendsLocked(proto, old))
	return ids, errors.Join(errs...)
}

// deleteEntryLocked removes one master entry, its slots and its backends'
// references.
func (n *Node) deleteEntryLocked(ek entryKey, proto uint8, ids []uint32) error {
	sk := lb4Key{Address: ek.addr.Addr().As4(), Dport: be16(ek.addr.Port()), Proto: proto, Scope: ek.scope}
	var errs []error
	if err := n.services.Delete(sk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	for i := range ids {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, n.releaseBackendsLocked(proto, ids))
	return errors.Join(errs...)
}

func (n *Node) releaseBackendsLocked(proto uint8, ids []uint32) error {
	var errs []error
	for _, id := range ids {
		n.lb.backendRef[id]--
		if n.lb.backendRef[id] > 0 {
			continue
		}
		delete(n.lb.backendRef, id)
		for k, v := range n.lb.backendIDs {
			if v == id {
				delete(n.lb.backendIDs, k)
			}
		}
		if err := n.backends.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("%s %d: %w", mapBackends, id, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteService removes a frontend, its surrogate and scopes, and their
// slots.
func (n *Node) DeleteService(fe netip.AddrPort, proto uint8) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := frontendKey{fe, proto}
	st := n.lb.frontends[key]
	if st == nil {
		return nil
	}
	var errs []error
	for ek, ids := range st.slots {
		errs = append(errs, n.deleteEntryLocked(ek, proto, ids))
	}
	if err := n.revNat.Delete(st.revNat); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	delete(n.lb.frontends, key)
	return errors.Join(errs...)
}

// Frontends reads the node's frontends back from Cilium's LB maps (master
// entries and their backend slots), sorted by address and protocol. A
// frontend with two scopes has its internal scope's backends in Backends
// and the external scope's in LocalBackends.
func (n *Node) Frontends() ([]Frontend, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	type entry struct {
		key lb4Key
		val lb4Service
	}
	var masters []entry
	var k lb4Key
	var v lb4Service
	it := n.services.Iterate()
	for it.Next(&k, &v) {
		if k.BackendSlot == 0 {
			masters = append(masters, entry{k, v})
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", mapServices, err)
	}
	byKey := map[frontendKey]*Frontend{}
	for _, m := range masters {
		fe := netip.AddrPortFrom(netip.AddrFrom4(m.key.Address), be16(m.key.Dport))
		var bes []netip.AddrPort
		for slot := uint16(1); slot <= m.val.Count; slot++ {
			sk := m.key
			sk.BackendSlot = slot
			var sv lb4Service
			if err := n.services.Lookup(&sk, &sv); err != nil {
				return nil, fmt.Errorf("%s %v slot %d: %w", mapServices, fe, slot, err)
			}
			var b lb4Backend
			if err := n.backends.Lookup(sv.BackendID, &b); err != nil {
				return nil, fmt.Errorf("%s %d (of %v): %w", mapBackends, sv.BackendID, fe, err)
			}
			bes = append(bes, netip.AddrPortFrom(netip.AddrFrom4(b.Address), be16(b.Port)))
		}
		key := frontendKey{fe, m.key.Proto}
		f := byKey[key]
		if f == nil {
			f = &Frontend{Addr: fe, Proto: m.key.Proto, Kind: kindOf(m.val.Flags)}
			byKey[key] = f
		}
		switch {
		case m.val.Flags2&svcFlag2TwoScopes == 0:
			f.Backends = bes
		case m.key.Scope == scopeInternal:
			f.Local, f.Backends = true, bes
		default:
			f.Local, f.LocalBackends = true, bes
		}
	}
	out := make([]Frontend, 0, len(byKey))
	for _, f := range byKey {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Frontend) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Proto) - int(b.Proto)
	})
	return out, nil
}

func kindOf(flags uint8) FrontendKind {
	switch {
	case flags&svcFlagNodePort != 0:
		return NodePort
	case flags&svcFlagHostPort != 0:
		return HostPort
	case flags&svcFlagLoadBalancer != 0:
		return LoadBalancer
	case flags&svcFlagExternalIP != 0:
		return ExternalIP
	}
	return ClusterIP
}
