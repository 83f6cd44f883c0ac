package identity

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Identity ranges.
const (
	// MaxUser is the last identity allocated for workload label sets
	// (Cilium's cluster-scoped range for cluster ID 0).
	MaxUser ID = 1<<16 - 1
	// LocalScope marks node-local identities (CIDR identities): 1<<24 | n.
	// They never leave the node, so they never appear in a VNI.
	LocalScope ID = 1 << 24
	// MaxLocal is the last node-local identity.
	MaxLocal ID = LocalScope | (1<<24 - 1)
)

// IsReserved reports whether id is one of the reserved identities (1..255).
func (id ID) IsReserved() bool { return id > Unknown && id < MinUser }

// IsLocal reports whether id is node-local (a CIDR identity).
func (id ID) IsLocal() bool { return id&LocalScope != 0 }

// String returns the number in decimal.
func (id ID) String() string { return fmt.Sprintf("%d", uint32(id)) }

var reservedNames = map[ID]string{
	Host:          "host",
	World:         "world",
	Unmanaged:     "unmanaged",
	Health:        "health",
	Init:          "init",
	RemoteNode:    "remote-node",
	KubeAPIServer: "kube-apiserver",
}

// ReservedName returns the name of a reserved identity ("host", "world",
// ...) or "" when id is not reserved.
func ReservedName(id ID) string { return reservedNames[id] }

// Reserved returns the reserved identities with their labels
// (reserved:<name>), in ID order.
func Reserved() []Identity {
	out := make([]Identity, 0, len(reservedNames))
	for id := Host; id <= KubeAPIServer; id++ {
		out = append(out, Identity{ID: id, Labels: Labels{{Source: SourceReserved, Key: reservedNames[id]}}})
	}
	return out
}

// Identity is a numeric identity with the labels it stands for. CIDR
// identities also carry their prefix.
type Identity struct {
	ID     ID
	Labels Labels
	// Prefix is set for CIDR identities only.
	Prefix netip.Prefix
}

// IsCIDR reports whether the identity stands for a CIDR prefix.
func (i Identity) IsCIDR() bool { return i.Prefix.IsValid() }

// CIDRLabels returns the labels of the CIDR identity of p: cidr:<prefix>
// and reserved:world (CIDR identities are outside the cluster).
func CIDRLabels(p netip.Prefix) Labels {
	return NewLabels(
		Label{Source: SourceCIDR, Key: p.Masked().String()},
		Label{Source: SourceReserved, Key: reservedNames[World]},
	)
}

type allocation struct {
	id     ID
	labels Labels
	prefix netip.Prefix
	refs   int
}

// Allocator hands out identities: one per distinct label set, numbered from
// MinUser, reference counted (each Allocate needs one Release), and one
// node-local identity per CIDR prefix. A label set that comes back after its
// identity was released gets its old number again unless that number was
// given to another set meanwhile. It is safe for concurrent use.
type Allocator struct {
	mu       sync.Mutex
	byKey    map[string]*allocation
	byID     map[ID]*allocation
	byPrefix map[netip.Prefix]*allocation
	// previous remembers released numbers so that a returning label set
	// gets the same identity.
	previous  map[string]ID
	prevOwner map[ID]string
	nextUser  ID
	nextLocal ID
	gen       uint64
}

// NewAllocator returns an empty allocator.
func NewAllocator() *Allocator {
	return &Allocator{
		byKey:     map[string]*allocation{},
		byID:      map[ID]*allocation{},
		byPrefix:  map[netip.Prefix]*allocation{},
		previous:  map[string]ID{},
		prevOwner: map[ID]string{},
		nextUser:  MinUser,
		nextLocal: LocalScope | 1,
	}
}

// Allocate returns the identity of labels, allocating it on first use, and
// takes one reference on it. Label sets made only of reserved labels map to
// their reserved identity (no reference is counted for those).
func (a *Allocator) Allocate(labels Labels) (ID, error) {
	labels = NewLabels(labels...)
	if len(labels) == 0 {
		return Unknown, fmt.Errorf("allocate identity: empty label set")
	}
	if id, ok := reservedByLabels(labels); ok {
		return id, nil
	}
	if labels.HasSource(SourceCIDR) {
		return Unknown, fmt.Errorf("allocate identity for %s: cidr labels are allocated with AllocateCIDR", labels)
	}
	key := labels.String()
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byKey[key]; ok {
		al.refs++
		return al.id, nil
	}
	id, ok := a.previous[key]
	if !ok || a.byID[id] != nil {
		var err error
		if id, err = a.freeUser(); err != nil {
			return Unknown, fmt.Errorf("allocate identity for %s: %w", key, err)
		}
	}
	al := &allocation{id: id, labels: labels, refs: 1}
	a.byKey[key] = al
	a.byID[id] = al
	if old, ok := a.prevOwner[id]; ok && old != key {
		delete(a.previous, old)
	}
	a.previous[key] = id
	a.prevOwner[id] = key
	a.gen++
	return id, nil
}

func (a *Allocator) freeUser() (ID, error) {
	for range MaxUser - MinUser + 1 {
		id := a.nextUser
		a.nextUser++
		if a.nextUser > MaxUser {
			a.nextUser = MinUser
		}
		if a.byID[id] == nil && !a.claimed(id) {
			return id, nil
		}
	}
	// Every number is taken or remembered: forget the memories and retry.
	if len(a.previous) > len(a.byKey) {
		for k, id := range a.previous {
			if a.byID[id] == nil {
				delete(a.previous, k)
				delete(a.prevOwner, id)
			}
		}
		return a.freeUser()
	}
	return Unknown, fmt.Errorf("identity space %d-%d exhausted", MinUser, MaxUser)
}

// claimed reports whether a released label set remembers id. Remembered
// numbers are skipped while fresh ones remain, so that returning label sets
// get their old identity back.
func (a *Allocator) claimed(id ID) bool {
	_, ok := a.prevOwner[id]
	return ok
}

func reservedByLabels(ls Labels) (ID, bool) {
	if len(ls) != 1 || ls[0].Source != SourceReserved {
		return Unknown, false
	}
	for id, n := range reservedNames {
		if n == ls[0].Key {
			return id, true
		}
	}
	return Unknown, false
}

// Release drops one reference on id. It reports whether that was the last
// one, in which case the identity is gone. Releasing a reserved identity is
// a no-op; releasing an unknown one is an error.
func (a *Allocator) Release(id ID) (bool, error) {
	if id.IsReserved() {
		return false, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.byID[id]
	if !ok {
		return false, fmt.Errorf("release identity %d: not allocated", id)
	}
	al.refs--
	if al.refs > 0 {
		return false, nil
	}
	delete(a.byID, id)
	if al.prefix.IsValid() {
		delete(a.byPrefix, al.prefix)
	} else {
		delete(a.byKey, al.labels.String())
	}
	a.gen++
	return true, nil
}

// AllocateCIDR returns the node-local identity of prefix p (1<<24 | n),
// allocating it on first use, and takes one reference on it. Only IPv4
// prefixes are supported. The prefix 0.0.0.0/0 is the world identity.
func (a *Allocator) AllocateCIDR(p netip.Prefix) (ID, error) {
	if !p.IsValid() || !p.Addr().Is4() {
		return Unknown, fmt.Errorf("allocate CIDR identity for %s: not supported yet: only IPv4 prefixes", p)
	}
	p = p.Masked()
	if p.Bits() == 0 {
		return World, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byPrefix[p]; ok {
		al.refs++
		return al.id, nil
	}
	var id ID
	for range MaxLocal - LocalScope {
		cand := a.nextLocal
		a.nextLocal++
		if a.nextLocal > MaxLocal {
			a.nextLocal = LocalScope | 1
		}
		if a.byID[cand] == nil {
			id = cand
			break
		}
	}
	if id == Unknown {
		return Unknown, fmt.Errorf("allocate CIDR identity for %s: local identity space exhausted", p)
	}
	al := &allocation{id: id, labels: CIDRLabels(p), prefix: p, refs: 1}
	a.byPrefix[p] = al
	a.byID[id] = al
	a.gen++
	return id, nil
}

// ReleaseCIDR drops one reference on the identity of p; see Release.
func (a *Allocator) ReleaseCIDR(p netip.Prefix) (bool, error) {
	p = p.Masked()
	if p.Bits() == 0 {
		return false, nil
	}
	a.mu.Lock()
	al, ok := a.byPrefix[p]
	a.mu.Unlock()
	if !ok {
		return false, fmt.Errorf("release CIDR identity for %s: not allocated", p)
	}
	return a.Release(al.id)
}

// Lookup returns the identity id with its labels; reserved identities are
// always known.
func (a *Allocator) Lookup(id ID) (Identity, bool) {
	if n, ok := reservedNames[id]; ok {
		return Identity{ID: id, Labels: Labels{{Source: SourceReserved, Key: n}}}, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.byID[id]
	if !ok {
		return Identity{}, false
	}
	return Identity{ID: al.id, Labels: al.labels, Prefix: al.prefix}, true
}

// LookupLabels returns the identity currently allocated for labels.
func (a *Allocator) LookupLabels(labels Labels) (ID, bool) {
	labels = NewLabels(labels...)
	if id, ok := reservedByLabels(labels); ok {
		return id, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.byKey[labels.String()]
	if !ok {
		return Unknown, false
	}
	return al.id, true
}

// References returns how many references id holds (0 when not allocated).
func (a *Allocator) References(id ID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byID[id]; ok {
		return al.refs
	}
	return 0
}

// Snapshot returns the current identity table: the reserved identities and
// every allocated one.
func (a *Allocator) Snapshot() *Table {
	a.mu.Lock()
	ids := Reserved()
	for _, al := range a.byID {
		ids = append(ids, Identity{ID: al.id, Labels: al.labels, Prefix: al.prefix})
	}
	gen := a.gen
	a.mu.Unlock()
	t := NewTable(ids)
	t.gen = gen
	return t
}

// Table is an immutable list of identities, sorted by ID, as the policy
// compiler and `podlab identity list` consume it.
type Table struct {
	ids  []Identity
	byID map[ID]int
	gen  uint64
}

// NewTable builds a table of ids (later duplicates of an ID win).
func NewTable(ids []Identity) *Table {
	t := &Table{byID: make(map[ID]int, len(ids))}
	for _, id := range ids {
		if i, ok := t.byID[id.ID]; ok {
			t.ids[i] = id
			continue
		}
		t.byID[id.ID] = len(t.ids)
		t.ids = append(t.ids, id)
	}
	slices.SortFunc(t.ids, func(a, b Identity) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for i, id := range t.ids {
		t.byID[id.ID] = i
	}
	return t
}

// All returns the identities sorted by ID. The slice must not be modified.
func (t *Table) All() []Identity { return t.ids }

// Lookup returns the identity id.
func (t *Table) Lookup(id ID) (Identity, bool) {
	i, ok := t.byID[id]
	if !ok {
		return Identity{}, false
	}
	return t.ids[i], true
}

// Generation is the allocator's change counter when the snapshot was taken
// (0 for tables built with NewTable): equal generations mean equal tables.
func (t *Table) Generation() uint64 { return t.gen }
