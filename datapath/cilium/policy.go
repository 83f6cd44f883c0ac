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

// rule is a policy entry normalised for Cilium's policy map.
type rule struct{ policy.MapRule }

// keys expands a rule into Cilium policy LPM keys: a port range becomes
// the aligned power-of-two blocks that cover it exactly.
func (r rule) keys() []policyKey {
	base := policyKey{SecLabel: r.Identity}
	if r.Direction == policy.Egress {
		base.Egress = 1
	}
	switch {
	case r.AnyProto:
		base.Prefixlen = policyPrefixL3
		return []policyKey{base}
	case r.AnyPort:
		base.Prefixlen, base.Protocol = policyPrefixProto, r.Proto
		return []policyKey{base}
	}
	base.Protocol = r.Proto
	var out []policyKey
	for p := uint32(r.Lo); p <= uint32(r.Hi); {
		// Largest aligned block starting at p that stays inside the range.
		size := uint32(1) << bits.TrailingZeros32(p|1<<16)
		for p+size-1 > uint32(r.Hi) {
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
	normal, err := policy.NormaliseEntries(p.Entries)
	if err != nil {
		return nil, err
	}
	rules := make([]rule, len(normal))
	for i, r := range normal {
		rules[i] = rule{r}
	}
	var allows, denies []rule
	for _, r := range rules {
		if r.Deny {
			denies = append(denies, r)
		} else {
			allows = append(allows, r)
		}
	}
	var pushed []rule
	for _, a := range allows {
		for _, d := range denies {
			if m, ok := policy.Meet(a.MapRule, d.MapRule); ok {
				m.Deny = true
				pushed = append(pushed, rule{m})
			}
		}
	}
	if !p.IngressEnforced {
		allows = append(allows, rule{policy.MapRule{Direction: policy.Ingress, AnyProto: true}})
	}
	if !p.EgressEnforced {
		allows = append(allows, rule{policy.MapRule{Direction: policy.Egress, AnyProto: true}})
	}
	out := map[policyKey]policyEntry{}
	for _, r := range allows {
		for _, k := range r.keys() {
			e, ok := out[k]
			if !ok {
				e = policyEntry{Flags: uint8(k.Prefixlen-policyPrefixL3) << lpmPrefixShift, Precedence: precedenceAllow}
			}
			// An allowed port with L7 rules goes through the proxy even
			// when another rule allows it at L4 (the proxy then lets that
			// rule's peers do anything), as on podlab's datapath.
			if r.ProxyPort != 0 {
				e.ProxyPort = be16(r.ProxyPort)
			}
			out[k] = e
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
