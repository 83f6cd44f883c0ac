package policy

import "github.com/podlab/podlab/datapath/identity"

// Matches reports whether entry e matches a packet of direction dir from/to
// peer identity peer, protocol proto and destination port (the ICMP type
// for ICMP). Identity 0 matches any peer; protocol 0 with no ports matches
// everything, protocol 0 with ports matches TCP, UDP and SCTP on those
// ports; an ICMP entry matches exactly its type (PortLo).
func (e Entry) Matches(dir Direction, peer identity.ID, proto uint8, port uint16) bool {
	if e.Direction != dir || (e.Identity != 0 && e.Identity != uint32(peer)) {
		return false
	}
	switch {
	case e.Proto == ProtoAny && !hasPorts(e):
		return true
	case e.Proto == ProtoAny:
		return isPortProto(proto) && e.PortLo <= port && port <= e.PortHi
	case e.Proto != proto:
		return false
	case e.Proto == ProtoICMP:
		return port == e.PortLo
	case !hasPorts(e):
		return true
	}
	return e.PortLo <= port && port <= e.PortHi
}

// Verdict is the reference evaluation of an endpoint policy, the semantics
// the datapath implements: a matching Deny entry drops the packet whatever
// else matches; otherwise a direction that is not enforced allows
// everything, and an enforced one allows only what an allow entry matches.
// It returns the verdict and the deciding entry (nil when the default
// decided).
func (p *EndpointPolicy) Verdict(dir Direction, peer identity.ID, proto uint8, port uint16) (bool, *Entry) {
	var allow *Entry
	for i := range p.Entries {
		e := &p.Entries[i]
		if !e.Matches(dir, peer, proto, port) {
			continue
		}
		if e.Deny {
			return false, e
		}
		if allow == nil {
			allow = e
		}
	}
	enforced := p.IngressEnforced
	if dir == Egress {
		enforced = p.EgressEnforced
	}
	if !enforced {
		return true, nil
	}
	return allow != nil, allow
}

// Diff returns what turns old entries into new ones in a policy map keyed
// by (direction, identity, protocol, ports): entries to insert or update
// (new, or their verdict changed) and entries to delete. Rule names are not
// compared: they are not loaded into the datapath. Both results are sorted.
func Diff(old, new []Entry) (upsert, remove []Entry) {
	key := func(e Entry) entryKey { return entryKey{e.Direction, e.Identity, e.Proto, e.PortLo, e.PortHi} }
	before := make(map[entryKey]Entry, len(old))
	for _, e := range old {
		before[key(e)] = e
	}
	after := make(map[entryKey]bool, len(new))
	for _, e := range new {
		k := key(e)
		after[k] = true
		if o, ok := before[k]; !ok || o.Deny != e.Deny {
			upsert = append(upsert, e)
		}
	}
	for _, e := range old {
		if !after[key(e)] {
			remove = append(remove, e)
		}
	}
	SortEntries(upsert)
	SortEntries(remove)
	return upsert, remove
}
