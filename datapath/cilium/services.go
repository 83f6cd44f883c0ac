package cilium

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/policy"
)

// Flags of a service's master entry (bpf/lib/lb.h).
const svcFlagRoutable = 1 << 6

type frontendKey struct {
	addr  netip.AddrPort
	proto uint8
}

type frontendState struct {
	revNat   uint16
	backends []uint32 // backend IDs by slot-1
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

// UpsertService writes a ClusterIP frontend (TCP or UDP) with its backends
// into Cilium's LB maps (cilium_lb4_services_v2, _backends_v3,
// _reverse_nat). bpf_lxc translates per packet (no socket LB in a lab).
func (n *Node) UpsertService(fe netip.AddrPort, proto uint8, backends []netip.AddrPort) error {
	if !fe.Addr().Is4() || fe.Port() == 0 {
		return fmt.Errorf("service %v: frontend must be an IPv4 address and a port", fe)
	}
	if proto != policy.ProtoTCP && proto != policy.ProtoUDP {
		return fmt.Errorf("service %v: protocol %d not supported yet (TCP, UDP)", fe, proto)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	key := frontendKey{fe, proto}
	st := n.lb.frontends[key]
	if st == nil {
		n.lb.nextRevNat++
		st = &frontendState{revNat: n.lb.nextRevNat}
	}
	var ids []uint32
	for _, b := range backends {
		bk := frontendKey{b, proto}
		id, ok := n.lb.backendIDs[bk]
		if !ok {
			n.lb.nextBE++
			id = n.lb.nextBE
			v := lb4Backend{Address: b.Addr().As4(), Port: be16(b.Port()), Proto: proto}
			if err := n.backends.Put(id, v); err != nil {
				return fmt.Errorf("%s %v: %w", mapBackends, b, err)
			}
			n.lb.backendIDs[bk] = id
		}
		n.lb.backendRef[id]++
		ids = append(ids, id)
	}
	sk := lb4Key{Address: fe.Addr().As4(), Dport: be16(fe.Port()), Proto: proto}
	if err := n.revNat.Put(st.revNat, lb4RevNat{Address: fe.Addr().As4(), Port: be16(fe.Port())}); err != nil {
		return fmt.Errorf("%s %v: %w", mapRevNat, fe, err)
	}
	// Slots first, then the master entry that exposes them, then stale
	// slots.
	for i, id := range ids {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Put(k, lb4Service{BackendID: id, RevNatIndex: st.revNat}); err != nil {
			return fmt.Errorf("%s %v slot %d: %w", mapServices, fe, i+1, err)
		}
	}
	if err := n.services.Put(sk, lb4Service{Count: uint16(len(ids)), RevNatIndex: st.revNat, Flags: svcFlagRoutable}); err != nil {
		return fmt.Errorf("%s %v: %w", mapServices, fe, err)
	}
	var errs []error
	for i := len(ids); i < len(st.backends); i++ {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, n.releaseBackendsLocked(proto, st.backends))
	st.backends = ids
	n.lb.frontends[key] = st
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

// DeleteService removes a frontend and its slots.
func (n *Node) DeleteService(fe netip.AddrPort, proto uint8) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := frontendKey{fe, proto}
	st := n.lb.frontends[key]
	if st == nil {
		return nil
	}
	sk := lb4Key{Address: fe.Addr().As4(), Dport: be16(fe.Port()), Proto: proto}
	var errs []error
	if err := n.services.Delete(sk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	for i := range st.backends {
		k := sk
		k.BackendSlot = uint16(i + 1)
		if err := n.services.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if err := n.revNat.Delete(st.revNat); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	errs = append(errs, n.releaseBackendsLocked(proto, st.backends))
	delete(n.lb.frontends, key)
	return errors.Join(errs...)
}
