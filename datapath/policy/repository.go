package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/podlab/podlab/datapath/identity"
)

// Repository holds the policies of a lab, keyed by kind, namespace and name,
// and the CIDR identities their CIDR rules need. It is safe for concurrent
// use.
type Repository struct {
	mu       sync.RWMutex
	alloc    *identity.Allocator
	policies map[Key]*Policy
	// prefixes counts the policies referencing each prefix; each policy
	// holds one allocator reference per distinct prefix it names.
	prefixes map[netip.Prefix]int
	cidrIDs  map[netip.Prefix]identity.ID
	// fqdn holds the addresses DNS answers gave names that toFQDNs rules
	// select (canonical name -> address -> identity and expiry).
	fqdn map[string]map[netip.Addr]fqdnAddr
	// groups are the CiliumCIDRGroups by name; sources keep, for policies
	// that name groups, the policy as written (policies holds it expanded).
	groups   map[string]CIDRGroup
	sources  map[Key]*Policy
	revision uint64
}

// NewRepository returns an empty repository allocating CIDR identities from
// alloc (the lab's identity allocator).
func NewRepository(alloc *identity.Allocator) *Repository {
	if alloc == nil {
		alloc = identity.NewAllocator()
	}
	return &Repository{
		alloc:    alloc,
		policies: map[Key]*Policy{},
		prefixes: map[netip.Prefix]int{},
		cidrIDs:  map[netip.Prefix]identity.ID{},
		groups:   map[string]CIDRGroup{},
		sources:  map[Key]*Policy{},
	}
}

// Prefixes returns the distinct CIDR prefixes (rules and their exceptions)
// a policy names, sorted; 0.0.0.0/0 is left out (it is the world identity).
func (p *Policy) Prefixes() []netip.Prefix {
	set := map[netip.Prefix]bool{}
	for _, r := range p.Rules {
		for _, pr := range r.Peers {
			for _, c := range pr.CIDRs {
				if c.Prefix.Bits() > 0 {
					set[c.Prefix] = true
				}
				for _, e := range c.Except {
					if e.Bits() > 0 {
						set[e] = true
					}
				}
			}
		}
	}
	return slices.SortedFunc(maps.Keys(set), comparePrefix)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Upsert adds p, or replaces the policy with the same key. It reports
// whether p was new. On error (CIDR identity allocation) the repository is
// unchanged.
func (r *Repository) Upsert(p *Policy) (bool, error) {
	if p == nil || p.Name == "" {
		return false, fmt.Errorf("upsert policy: no name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.upsertLocked(p)
}

// upsertLocked stores p with its CIDR groups expanded.
func (r *Repository) upsertLocked(p *Policy) (bool, error) {
	written := p
	if p.namesGroups() {
		p = r.expandGroupsLocked(p)
	}
	newPfx := p.Prefixes()
	var got []netip.Prefix
	for _, pfx := range newPfx {
		id, err := r.alloc.AllocateCIDR(pfx)
		if err != nil {
			for _, g := range got {
				_, _ = r.alloc.ReleaseCIDR(g)
			}
			return false, fmt.Errorf("upsert %s: %w", p.Key, err)
		}
		got = append(got, pfx)
		r.cidrIDs[pfx] = id
		r.prefixes[pfx]++
	}
	old, existed := r.policies[p.Key]
	if existed {
		if err := r.releasePrefixes(old); err != nil {
			return false, fmt.Errorf("upsert %s: %w", p.Key, err)
		}
	}
	r.policies[p.Key] = p
	if written != p {
		r.sources[p.Key] = written
	} else {
		delete(r.sources, p.Key)
	}
	r.revision++
	return !existed, nil
}

func (r *Repository) releasePrefixes(p *Policy) error {
	var errs []error
	for _, pfx := range p.Prefixes() {
		if _, err := r.alloc.ReleaseCIDR(pfx); err != nil {
			errs = append(errs, err)
		}
		r.prefixes[pfx]--
		if r.prefixes[pfx] <= 0 {
			delete(r.prefixes, pfx)
			delete(r.cidrIDs, pfx)
		}
	}
	return errors.Join(errs...)
}

// Delete removes the policy k. It reports whether it existed.
func (r *Repository) Delete(k Key) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.policies[k]
	if !ok {
		return false, nil
	}
	delete(r.policies, k)
	delete(r.sources, k)
	r.revision++
	if err := r.releasePrefixes(old); err != nil {
		return true, fmt.Errorf("delete %s: %w", k, err)
	}
	return true, nil
}

// Get returns the policy k.
func (r *Repository) Get(k Key) (*Policy, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.policies[k]
	return p, ok
}

// List returns every policy, sorted by kind, namespace and name.
func (r *Repository) List() []*Policy {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sortedLocked()
}

func (r *Repository) sortedLocked() []*Policy {
	out := slices.Collect(maps.Values(r.policies))
	slices.SortFunc(out, func(a, b *Policy) int { return compareKey(a.Key, b.Key) })
	return out
}

// Revision counts changes; it grows with every Upsert and Delete.
func (r *Repository) Revision() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revision
}

// CIDRPrefixes returns the prefixes the policies name with their CIDR
// identity, and the /32 of every address learned from DNS for a toFQDNs
// rule: what must be in every node's ipcache.
func (r *Repository) CIDRPrefixes() map[netip.Prefix]identity.ID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := maps.Clone(r.cidrIDs)
	for _, known := range r.fqdn {
		for a, e := range known {
			out[netip.PrefixFrom(a, 32)] = e.id
		}
	}
	return out
}
