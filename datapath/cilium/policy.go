package cilium

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/policy"
)

// Precedences of policy entries: a deny has the highest possible value
// (bpf/lib/policy.h MAX_PRECEDENCE), which makes the datapath stop at it.
const (
	precedenceAllow = 1
	precedenceDeny  = ^uint32(0)
)

// prefix lengths of the policy LPM key (after its 4-byte prefixlen): 32
// bits of identity and 8 of direction are always exact; then 8 of
// protocol and 16 of destination port.
const (
	policyPrefixL3    = 40
	policyPrefixProto = 48
	policyPrefixFull  = 64
)

// IP protocol numbers policy entries may name.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// rule is a normalised entry: one protocol (or any) and one port range.
type rule struct {
	egress   bool
	id       uint32
	anyProto bool
	proto    uint8
	lo, hi   uint16
	anyPort  bool
	deny     bool
}

func normalise(entries []policy.Entry) ([]rule, error) {
	var out []rule
	for i, e := range entries {
		if e.Direction != policy.Ingress && e.Direction != policy.Egress {
			return nil, fmt.Errorf("policy entry %d (%s): invalid direction %d", i, e.Rule, e.Direction)
		}
		lo, hi := e.PortLo, e.PortHi
		if hi == 0 {
			hi = lo
		}
		if hi < lo {
			return nil, fmt.Errorf("policy entry %d (%s): port range %d-%d is reversed", i, e.Rule, e.PortLo, e.PortHi)
		}
		r := rule{egress: e.Direction == policy.Egress, id: e.Identity, deny: e.Deny, lo: lo, hi: hi}
		r.anyPort = lo == 0 && (hi == 0 || hi == 0xffff)
		switch {
		case e.Proto == 0 && r.anyPort:
			r.anyProto = true
			out = append(out, r)
		case e.Proto == 0:
			for _, p := range []uint8{protoTCP, protoUDP, protoSCTP} {
				r.proto = p
				out = append(out, r)
			}
		case e.Proto == protoICMP && hi > 0xff:
			return nil, fmt.Errorf("policy entry %d (%s): ICMP type %d-%d out of range", i, e.Rule, lo, hi)
		case e.Proto == protoTCP || e.Proto == protoUDP || e.Proto == protoSCTP || e.Proto == protoICMP:
			r.proto = e.Proto
			out = append(out, r)
		default:
			return nil, fmt.Errorf("policy entry %d (%s): protocol %d not supported yet (TCP, UDP, SCTP, ICMP)", i, e.Rule, e.Proto)
		}
	}
	return out, nil
}

// meet returns the rule matching exactly what both a and b match.
func meet(a, b rule) (rule, bool) {
	if a.egress != b.egress {
		return rule{}, false
	}
	m := rule{egress: a.egress}
	switch {
	case a.id == b.id || b.id == 0:
		m.id = a.id
	case a.id == 0:
		m.id = b.id
	default:
		return rule{}, false
	}
	switch {
	case a.anyProto:
		m.anyProto, m.proto, m.anyPort, m.lo, m.hi = b.anyProto, b.proto, b.anyPort, b.lo, b.hi
		return m, true
	case b.anyProto:
		m.proto, m.anyPort, m.lo, m.hi = a.proto, a.anyPort, a.lo, a.hi
		return m, true
	case a.proto != b.proto:
		return rule{}, false
	}
	m.proto = a.proto
	switch {
	case a.anyPort:
		m.anyPort, m.lo, m.hi = b.anyPort, b.lo, b.hi
	case b.anyPort:
		m.lo, m.hi = a.lo, a.hi
	default:
		m.lo, m.hi = max(a.lo, b.lo), min(a.hi, b.hi)
		if m.lo > m.hi {
			return rule{}, false
		}
	}
	return m, true
}

// keys expands a rule into Cilium policy LPM keys: a port range becomes
// the aligned power-of-two blocks that cover it exactly.
func (r rule) keys() []policyKey {
	base := policyKey{SecLabel: r.id}
	if r.egress {
		base.Egress = 1
	}
	switch {
	case r.anyProto:
		base.Prefixlen = policyPrefixL3
		return []policyKey{base}
	case r.anyPort:
		base.Prefixlen, base.Protocol = policyPrefixProto, r.proto
		return []policyKey{base}
	}
	base.Protocol = r.proto
	var out []policyKey
	for p := uint32(r.lo); p <= uint32(r.hi); {
		// Largest aligned block starting at p that stays inside the range.
		size := uint32(1) << bits.TrailingZeros32(p|1<<16)
		for p+size-1 > uint32(r.hi) {
			size >>= 1
		}
		k := base
		k.Dport = be16(uint16(p))
		k.Prefixlen = uint32(policyPrefixFull - bits.TrailingZeros32(size))
		out = append(out, k)
		p += size
	}
	return out
}

func be16(v uint16) uint16 { return v<<8 | v>>8 }

// CompilePolicy turns an endpoint's policy into Cilium policy-map entries.
// Deny precedence is resolved here as Cilium's agent does: the meet of each
// allow with each deny is written as a deny under the allow's identity, so
// the datapath's specific-identity lookup can never pick an allow that a
// wildcard deny should override. A direction without enforcement gets
// Cilium's allow-all entry.
func CompilePolicy(p policy.EndpointPolicy) (map[policyKey]policyEntry, error) {
	rules, err := normalise(p.Entries)
	if err != nil {
		return nil, err
	}
	var allows, denies []rule
	for _, r := range rules {
		if r.deny {
			denies = append(denies, r)
		} else {
			allows = append(allows, r)
		}
	}
	var pushed []rule
	for _, a := range allows {
		for _, d := range denies {
			if m, ok := meet(a, d); ok {
				m.deny = true
				pushed = append(pushed, m)
			}
		}
	}
	if !p.IngressEnforced {
		allows = append(allows, rule{anyProto: true})
	}
	if !p.EgressEnforced {
		allows = append(allows, rule{egress: true, anyProto: true})
	}
	out := map[policyKey]policyEntry{}
	for _, r := range allows {
		for _, k := range r.keys() {
			if _, ok := out[k]; !ok {
				out[k] = policyEntry{Flags: uint8(k.Prefixlen-policyPrefixL3) << lpmPrefixShift, Precedence: precedenceAllow}
			}
		}
	}
	for _, r := range append(denies, pushed...) {
		for _, k := range r.keys() {
			out[k] = policyEntry{Flags: 1 | uint8(k.Prefixlen-policyPrefixL3)<<lpmPrefixShift, Precedence: precedenceDeny}
		}
	}
	return out, nil
}

// SetPolicy replaces an endpoint's policy incrementally: new and changed
// entries first, then stale ones are deleted; programs are not reloaded. For
// an endpoint not loaded yet the entries are kept and written by
// AddEndpoint before it attaches.
func (n *Node) SetPolicy(id uint16, p policy.EndpointPolicy) error {
	want, err := CompilePolicy(p)
	if err != nil {
		return fmt.Errorf("policy of endpoint %d: %w", id, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.eps[id]
	if st == nil {
		n.pending[id] = want
		return nil
	}
	return n.writePolicy(st, want)
}

func (n *Node) pendingPolicy(id uint16) map[policyKey]policyEntry {
	p := n.pending[id]
	delete(n.pending, id)
	return p
}

// writePolicy brings an endpoint's policy map from st.keys to want.
func (n *Node) writePolicy(st *endpointState, want map[policyKey]policyEntry) error {
	var errs []error
	for k, v := range want {
		if old, ok := st.keys[k]; ok && old == v {
			continue
		}
		if err := st.policy.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", PolicyMapName(st.ep.ID), err))
		}
	}
	for k := range st.keys {
		if _, ok := want[k]; ok {
			continue
		}
		if err := st.policy.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", PolicyMapName(st.ep.ID), err))
		}
	}
	st.keys = want
	return errors.Join(errs...)
}
