package pcap

import (
	"fmt"
	"time"
)

// Direction says whether a packet was received by or sent from the captured
// device.
type Direction uint8

// Directions of a captured packet. The values are those of the pcapng
// epb_flags inbound/outbound bits.
const (
	DirectionUnknown  Direction = 0
	DirectionInbound  Direction = 1
	DirectionOutbound Direction = 2
)

// String returns "in", "out" or "unknown".
func (d Direction) String() string {
	switch d {
	case DirectionInbound:
		return "in"
	case DirectionOutbound:
		return "out"
	default:
		return "unknown"
	}
}

// ParseDirection accepts in/ingress/inbound and out/egress/outbound.
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "in", "ingress", "inbound", "rx":
		return DirectionInbound, nil
	case "out", "egress", "outbound", "tx":
		return DirectionOutbound, nil
	}
	return DirectionUnknown, fmt.Errorf("unknown direction %q (want in or out)", s)
}

// Reception says how the device received an inbound packet, as the pcapng
// epb_flags reception-type field does.
type Reception uint8

// Reception types (pcapng epb_flags bits 2-4).
const (
	ReceptionUnspecified Reception = 0
	ReceptionUnicast     Reception = 1
	ReceptionMulticast   Reception = 2
	ReceptionBroadcast   Reception = 3
	ReceptionPromiscuous Reception = 4
)

// LinkType is a pcap LINKTYPE_ value: what the first byte of a packet is.
type LinkType uint16

// Link types podlab writes. The zero value is treated as Ethernet.
const (
	LinkTypeEthernet LinkType = 1   // LINKTYPE_ETHERNET
	LinkTypeRaw      LinkType = 101 // LINKTYPE_RAW: starts with the IPv4/IPv6 header
)

func (l LinkType) orEthernet() LinkType {
	if l == 0 {
		return LinkTypeEthernet
	}
	return l
}

// Packet is one captured (or reported) frame.
type Packet struct {
	// Time is when the kernel saw the packet, with nanosecond resolution.
	Time time.Time
	// Data holds the captured bytes (at most the snap length).
	Data []byte
	// OrigLen is the length of the packet on the wire; 0 means len(Data).
	OrigLen int
	// Direction says whether the device received or sent the packet.
	Direction Direction
	// Reception says how an inbound packet was addressed.
	Reception Reception
	// InterfaceName names the device: "<node>/<device>" or "<pod>/eth0".
	InterfaceName string
	// LinkType says how Data starts; zero means Ethernet.
	LinkType LinkType
	// Comment is written as the pcapng packet comment (opt_comment), e.g.
	// "DROPPED: Policy denied, kind-worker lxc3f2a egress".
	Comment string
}

// WireLen returns the packet's length on the wire.
func (p *Packet) WireLen() int {
	if p.OrigLen > 0 {
		return p.OrigLen
	}
	return len(p.Data)
}
