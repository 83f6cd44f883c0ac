package policy

import (
	"fmt"
	"slices"
	"sort"
)

// namesGroups reports whether any CIDR rule of p names CIDR groups.
func (p *Policy) namesGroups() bool {
	for _, r := range p.Rules {
		for _, pr := range r.Peers {
			for _, c := range pr.CIDRs {
				if c.IsGroup() {
					return true
				}
			}
		}
	}
	return false
}

// expandGroupsLocked returns a copy of p whose group CIDR rules are
// replaced by one rule per IPv4 CIDR of the groups they name, each with the
// exceptions that fall inside it. A rule naming no existing group selects
// nothing, as in Cilium.
func (r *Repository) expandGroupsLocked(p *Policy) *Policy {
	out := *p
	out.Rules = make([]Rule, len(p.Rules))
	for i, rule := range p.Rules {
		rule.Peers = slices.Clone(rule.Peers)
		for j := range rule.Peers {
			pr := &rule.Peers[j]
			var cidrs []CIDRRule
			for _, c := range pr.CIDRs {
				if !c.IsGroup() {
					cidrs = append(cidrs, c)
					continue
				}
				for _, g := range r.groupsOfLocked(c) {
					for _, pfx := range g.CIDRs {
						if !pfx.Addr().Is4() {
							continue
						}
						e := CIDRRule{Prefix: pfx}
						for _, ex := range c.Except {
							if ex.Bits() >= pfx.Bits() && pfx.Contains(ex.Addr()) {
								e.Except = append(e.Except, ex)
							}
						}
						cidrs = append(cidrs, e)
					}
				}
			}
			pr.CIDRs = cidrs
		}
		out.Rules[i] = rule
	}
	return &out
}

// groupsOfLocked returns the groups a group CIDR rule names, by name.
func (r *Repository) groupsOfLocked(c CIDRRule) []CIDRGroup {
	var out []CIDRGroup
	for _, name := range sortedKeys(r.groups) {
		g := r.groups[name]
		if (c.GroupRef != "" && c.GroupRef == g.Name) || (c.GroupSelector != nil && c.GroupSelector.MatchesMap(g.Labels)) {
			out = append(out, g)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SetCIDRGroup adds or replaces a CiliumCIDRGroup and expands the policies
// that name groups again. It reports whether any policy may have changed
// (the caller recompiles endpoints then).
func (r *Repository) SetCIDRGroup(g CIDRGroup) (bool, error) {
	if g.Name == "" {
		return false, fmt.Errorf("CIDR group without a name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups[g.Name] = g
	return r.reexpandLocked()
}

// DeleteCIDRGroup removes a CiliumCIDRGroup; policies naming it stop
// selecting its CIDRs.
func (r *Repository) DeleteCIDRGroup(name string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.groups[name]; !ok {
		return false, nil
	}
	delete(r.groups, name)
	return r.reexpandLocked()
}

// CIDRGroups lists the CIDR groups, by name.
func (r *Repository) CIDRGroups() []CIDRGroup {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]CIDRGroup, 0, len(r.groups))
	for _, name := range sortedKeys(r.groups) {
		out = append(out, r.groups[name])
	}
	return out
}

func (r *Repository) reexpandLocked() (bool, error) {
	if len(r.sources) == 0 {
		return false, nil
	}
	keys := make([]Key, 0, len(r.sources))
	for k := range r.sources {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		if _, err := r.upsertLocked(r.sources[k]); err != nil {
			return true, err
		}
	}
	return true, nil
}
