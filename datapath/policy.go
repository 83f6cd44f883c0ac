package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

type policyKey = fromContainerPolicyKey
type policyValue = fromContainerPolicyValue

// Port levels of policy keys (bpf/lib/common.h POLICY_LEVEL_*).
const (
	levelExact = 0 // one port
	levelBlock = 1 // 256 ports: key port = port >> 8
	levelProto = 2 // any port of one protocol
	levelAny   = 3 // any protocol
)

// IP protocol numbers the datapath parses.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// endpointPolicyState is what the policy map holds for one endpoint.
type endpointPolicyState struct {
	flags  uint8
	levels [2][4]uint8
	keys   map[policyKey]policyValue
}

// rule is a policy entry normalised for this datapath's policy map.
type rule struct{ policy.MapRule }

// normaliseEntries normalises entries (policy.NormaliseEntries) and checks
// that their identities fit this datapath's policy key.
func normaliseEntries(entries []policy.Entry) ([]rule, error) {
	for i, e := range entries {
		if id := identity.ID(e.Identity); id > identity.Max && (!id.IsLocal() || id > identity.MaxLocal) {
			return nil, fmt.Errorf("policy entry %d (%s): identity %d exceeds %d", i, e.Rule, e.Identity, identity.Max)
		}
	}
	rs, err := policy.NormaliseEntries(entries)
	if err != nil {
		return nil, err
	}
	out := make([]rule, len(rs))
	for i, r := range rs {
		out[i] = rule{r}
	}
	return out, nil
}

// keyPorts returns the port range a key matches.
func keyPorts(k policyKey) (lo, hi int) {
	switch k.Level {
	case levelExact:
		return int(k.Port), int(k.Port)
	case levelBlock:
		return int(k.Port) << 8, int(k.Port)<<8 | 0xff
	}
	return 0, 0xffff
}

// covers reports whether every packet matching key k also matches r.
func (r rule) covers(k policyKey) bool {
	if uint8(r.Direction) != k.Dir || (r.Identity != 0 && r.Identity != k.Identity) {
		return false
	}
	if r.AnyProto {
		return true
	}
	if k.Level == levelAny || r.Proto != k.Proto {
		return false
	}
	if r.AnyPort {
		return true
	}
	lo, hi := keyPorts(k)
	return int(r.Lo) <= lo && hi <= int(r.Hi)
}

// keys expands a rule into policy map keys.
func (r rule) keys(epID uint16) []policyKey {
	base := policyKey{Identity: r.Identity, EpId: epID, Dir: uint8(r.Direction)}
	switch {
	case r.AnyProto:
		base.Level = levelAny
		return []policyKey{base}
	case r.AnyPort:
		base.Proto, base.Level = r.Proto, levelProto
		return []policyKey{base}
	}
	base.Proto = r.Proto
	var out []policyKey
	for p := int(r.Lo); p <= int(r.Hi); {
		k := base
		if p&0xff == 0 && p+0xff <= int(r.Hi) {
			k.Level, k.Port = levelBlock, uint16(p>>8)
			p += 0x100
		} else {
			k.Level, k.Port = levelExact, uint16(p)
			p++
		}
		out = append(out, k)
	}
	return out
}

func matchType(k policyKey) uint8 {
	if k.Identity != 0 {
		switch k.Level {
		case levelAny:
			return uint8(MatchL3Only)
		case levelProto:
			return uint8(MatchL3Proto)
		}
		return uint8(MatchL3L4)
	}
	switch k.Level {
	case levelAny:
		return uint8(MatchAll)
	case levelProto:
		return uint8(MatchProtoOnly)
	}
	return uint8(MatchL4Only)
}

func levelBit(k policyKey) uint8 {
	b := k.Level
	if k.Identity == 0 {
		b += 4
	}
	return 1 << b
}

// protoClass mirrors proto_class in bpf/lib/policy.h.
func protoClass(proto uint8) int {
	switch proto {
	case protoTCP:
		return 0
	case protoUDP:
		return 1
	case protoSCTP:
		return 2
	}
	return 3
}

// addLevel records that key k exists in levels: keys of any protocol are
// probed for every protocol class.
func addLevel(levels *[2][4]uint8, k policyKey) {
	if k.Level == levelAny {
		for c := range levels[k.Dir&1] {
			levels[k.Dir&1][c] |= levelBit(k)
		}
		return
	}
	levels[k.Dir&1][protoClass(k.Proto)] |= levelBit(k)
}

// compilePolicy turns an endpoint's policy into policy map contents. Deny
// precedence is resolved here: every key that some deny rule covers is a
// deny, and the intersection of each allow with each deny is written as a
// deny key, so that the datapath's first hit in most-specific-first order
// is always the right verdict.
func compilePolicy(epID uint16, p policy.EndpointPolicy) (map[policyKey]policyValue, uint8, [2][4]uint8, error) {
	var flags uint8
	var levels [2][4]uint8
	if p.IngressEnforced {
		flags |= epIngressEnforced
	}
	if p.EgressEnforced {
		flags |= epEgressEnforced
	}
	rules, err := normaliseEntries(p.Entries)
	if err != nil {
		return nil, 0, levels, err
	}
	var denies, allows []rule
	for _, r := range rules {
		if r.Deny {
			denies = append(denies, r)
		} else {
			allows = append(allows, r)
		}
	}
	for _, a := range allows {
		for _, d := range denies {
			if m, ok := policy.Meet(a.MapRule, d.MapRule); ok {
				m.Deny = true
				rules = append(rules, rule{m})
				denies = append(denies, rule{m})
			}
		}
	}
	out := map[policyKey]policyValue{}
	for _, r := range rules {
		for _, k := range r.keys(epID) {
			old, seen := out[k]
			if seen && old.Deny == 1 {
				continue
			}
			v := policyValue{MatchType: matchType(k)}
			// An allowed port with L7 rules goes through the proxy even
			// when another rule allows it at L4 (the proxy then lets
			// that rule's peers do anything).
			if r.ProxyPort != 0 {
				v.ProxyPort = be16(r.ProxyPort)
			} else if seen {
				v.ProxyPort = old.ProxyPort
			}
			if r.Deny {
				v.Deny = 1
			} else {
				for _, d := range denies {
					if d.covers(k) {
						v.Deny = 1
						break
					}
				}
			}
			out[k] = v
			addLevel(&levels, k)
		}
	}
	return out, flags, levels, nil
}

// SetPolicy replaces the policy of endpoint epID incrementally: new and
// changed entries are written first, then the enforcement flags, then stale
// entries are deleted. No program is reloaded and conntrack is untouched, so
// established connections that the new policy still allows never see a
// drop. The endpoint may be added before or after its policy is set.
func (d *Datapath) SetPolicy(epID uint16, p policy.EndpointPolicy) error {
	desired, flags, levels, err := compilePolicy(epID, p)
	if err != nil {
		return fmt.Errorf("policy of endpoint %d: %w", epID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("set policy: datapath closed")
	}
	pm := d.maps[mapPolicy]
	st := d.policies[epID]
	if st == nil {
		st = &endpointPolicyState{keys: map[policyKey]policyValue{}}
	}
	total := 0
	for id, s := range d.policies {
		if id != epID {
			total += len(s.keys)
		}
	}
	if total+len(desired) > int(pm.MaxEntries()) {
		return fmt.Errorf("policy of endpoint %d: %d entries exceed the policy map's capacity (%d in use of %d)",
			epID, len(desired), total, pm.MaxEntries())
	}

	var upK []policyKey
	var upV []policyValue
	for k, v := range desired {
		if old, ok := st.keys[k]; !ok || old != v {
			upK = append(upK, k)
			upV = append(upV, v)
		}
	}
	var delK []policyKey
	for k := range st.keys {
		if _, ok := desired[k]; !ok {
			delK = append(delK, k)
		}
	}
	if err := putPolicy(pm, upK, upV); err != nil {
		return fmt.Errorf("policy of endpoint %d: %w", epID, err)
	}
	// From here on the map holds both sets; the endpoint probes the union
	// of their levels until the stale keys are gone.
	newSt := &endpointPolicyState{flags: flags, levels: levels, keys: desired}
	union := &endpointPolicyState{flags: flags, levels: levels}
	for dir := range union.levels {
		for c := range union.levels[dir] {
			union.levels[dir][c] |= st.levels[dir][c]
		}
	}
	d.policies[epID] = union
	if err := d.syncEndpoint(epID); err != nil {
		return err
	}
	if err := deletePolicy(pm, delK); err != nil {
		d.policies[epID] = &endpointPolicyState{flags: flags, levels: union.levels, keys: mergeKeys(st.keys, desired)}
		return fmt.Errorf("policy of endpoint %d: %w", epID, err)
	}
	d.policies[epID] = newSt
	return d.syncEndpoint(epID)
}

func mergeKeys(a, b map[policyKey]policyValue) map[policyKey]policyValue {
	out := make(map[policyKey]policyValue, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// syncEndpoint rewrites the endpoint map entry of epID (flags and levels)
// if the endpoint is known.
func (d *Datapath) syncEndpoint(epID uint16) error {
	ep, ok := d.endpoints[epID]
	if !ok {
		return nil
	}
	v := d.endpointValue(ep)
	if err := d.maps[mapEndpoints].Put(ipv4BE(ep.IP), &v); err != nil {
		return fmt.Errorf("endpoint %d: update policy flags: %w", epID, err)
	}
	return nil
}

const batchThreshold = 64

func putPolicy(m *ebpf.Map, keys []policyKey, vals []policyValue) error {
	if len(keys) >= batchThreshold {
		if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
			return nil
		} else if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("write %d policy entries: %w", len(keys), err)
		}
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return fmt.Errorf("write policy entry %+v: %w", keys[i], err)
		}
	}
	return nil
}

func deletePolicy(m *ebpf.Map, keys []policyKey) error {
	if len(keys) >= batchThreshold {
		if _, err := m.BatchDelete(keys, nil); err == nil {
			return nil
		} else if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %d policy entries: %w", len(keys), err)
		}
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete policy entry %+v: %w", keys[i], err)
		}
	}
	return nil
}
