package policy

import "fmt"

// MapRule is a policy Entry normalised for a datapath's policy map: one
// direction, one peer identity (0: any), one protocol (or any) and one port
// range (or any; an ICMP rule's range holds ICMP types). Both datapath
// backends turn MapRules into their own map keys.
type MapRule struct {
	Direction Direction
	Identity  uint32
	AnyProto  bool
	Proto     uint8
	AnyPort   bool
	Lo, Hi    uint16
	Deny      bool
	// ProxyPort is the L7 proxy port of an allow rule (0: none).
	ProxyPort uint16
}

// NormaliseEntries turns entries into MapRules: a port without a protocol
// becomes that port of TCP, UDP and SCTP; a reversed range, an ICMP type
// above 255, an unknown direction or protocol is an error naming the entry.
func NormaliseEntries(entries []Entry) ([]MapRule, error) {
	var out []MapRule
	for i, e := range entries {
		if e.Direction != Ingress && e.Direction != Egress {
			return nil, fmt.Errorf("policy entry %d (%s): invalid direction %d", i, e.Rule, e.Direction)
		}
		lo, hi := e.PortLo, e.PortHi
		if hi == 0 {
			hi = lo
		}
		if hi < lo {
			return nil, fmt.Errorf("policy entry %d (%s): port range %d-%d is reversed", i, e.Rule, e.PortLo, e.PortHi)
		}
		r := MapRule{Direction: e.Direction, Identity: e.Identity, Deny: e.Deny, Lo: lo, Hi: hi}
		if !e.Deny {
			r.ProxyPort = e.ProxyPort
		}
		r.AnyPort = lo == 0 && (hi == 0 || hi == 0xffff)
		if e.Proto == ProtoICMP && hi > 0xff {
			return nil, fmt.Errorf("policy entry %d (%s): ICMP type %d-%d out of range", i, e.Rule, lo, hi)
		}
		switch {
		case e.Proto == 0 && r.AnyPort:
			r.AnyProto = true
			out = append(out, r)
		case e.Proto == 0:
			for _, p := range []uint8{ProtoTCP, ProtoUDP, ProtoSCTP} {
				r.Proto = p
				out = append(out, r)
			}
		case e.Proto == ProtoTCP || e.Proto == ProtoUDP || e.Proto == ProtoSCTP || e.Proto == ProtoICMP:
			r.Proto = e.Proto
			out = append(out, r)
		default:
			return nil, fmt.Errorf("policy entry %d (%s): protocol %d not supported yet (TCP, UDP, SCTP, ICMP)", i, e.Rule, e.Proto)
		}
	}
	return out, nil
}

// Meet returns the rule matching exactly the traffic both a and b match
// (without a proxy port or deny flag), and false when they share none.
func Meet(a, b MapRule) (MapRule, bool) {
	if a.Direction != b.Direction {
		return MapRule{}, false
	}
	m := MapRule{Direction: a.Direction}
	switch {
	case a.Identity == b.Identity || b.Identity == 0:
		m.Identity = a.Identity
	case a.Identity == 0:
		m.Identity = b.Identity
	default:
		return MapRule{}, false
	}
	switch {
	case a.AnyProto:
		m.AnyProto, m.Proto, m.AnyPort, m.Lo, m.Hi = b.AnyProto, b.Proto, b.AnyPort, b.Lo, b.Hi
		return m, true
	case b.AnyProto:
		m.Proto, m.AnyPort, m.Lo, m.Hi = a.Proto, a.AnyPort, a.Lo, a.Hi
		return m, true
	case a.Proto != b.Proto:
		return MapRule{}, false
	}
	m.Proto = a.Proto
	switch {
	case a.AnyPort:
		m.AnyPort, m.Lo, m.Hi = b.AnyPort, b.Lo, b.Hi
	case b.AnyPort:
		m.Lo, m.Hi = a.Lo, a.Hi
	default:
		m.Lo, m.Hi = max(a.Lo, b.Lo), min(a.Hi, b.Hi)
		if m.Lo > m.Hi {
			return MapRule{}, false
		}
	}
	return m, true
}
