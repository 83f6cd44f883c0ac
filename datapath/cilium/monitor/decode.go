package monitor

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/podlab/podlab/datapath/flow"
)

// ErrNotFlow is returned (wrapped, naming the record type) for records that
// are counted but give no flow: debug messages, debug captures, captures and
// socket traces.
var ErrNotFlow = errors.New("not a flow record")

// Config tells a Decoder what the records themselves do not carry.
type Config struct {
	// Node names the node whose programs wrote the records.
	Node string
	// Resolver, when set, finds the endpoint of a packet's source address,
	// which decides the direction of drops and traces the way Hubble
	// decides it (the record says which endpoint's program wrote it, not
	// whether that endpoint sent the packet).
	Resolver flow.EndpointResolver
	// InterfaceName, when set, names a device of the node by ifindex.
	InterfaceName func(ifindex uint32) string
	// Now stamps the events (records carry no time); time.Now if nil.
	Now func() time.Time
}

// Stats counts records by outcome. The counters are updated atomically:
// another goroutine may read them while a decoder runs.
type Stats struct {
	Trace, Drop, PolicyVerdict atomic.Uint64
	// Debug counts debug messages and debug captures, Capture the
	// capture and socket-trace records: all skipped.
	Debug, Capture atomic.Uint64
	// UnknownVersion counts records refused for their version,
	// UnknownType records of a type this package does not know, Malformed
	// records too short for their header.
	UnknownVersion, UnknownType, Malformed atomic.Uint64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	Trace, Drop, PolicyVerdict, Debug, Capture uint64
	UnknownVersion, UnknownType, Malformed     uint64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Trace: s.Trace.Load(), Drop: s.Drop.Load(), PolicyVerdict: s.PolicyVerdict.Load(),
		Debug: s.Debug.Load(), Capture: s.Capture.Load(),
		UnknownVersion: s.UnknownVersion.Load(), UnknownType: s.UnknownType.Load(), Malformed: s.Malformed.Load(),
	}
}

// Decoder turns monitor records into flow.Events. It is not safe for
// concurrent use (its Stats are).
type Decoder struct {
	cfg   Config
	stats Stats
	tn    TraceNotify
	dn    DropNotify
	pn    PolicyVerdictNotify
}

// NewDecoder returns a decoder for the records of one node.
func NewDecoder(cfg Config) *Decoder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Decoder{cfg: cfg}
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() *Stats { return &d.stats }

// Decode fills ev from one record. ev.Data aliases sample. It returns an
// error wrapping ErrNotFlow for records that are counted and skipped, a
// *VersionError for a record version it does not know, a *ShortError for a
// truncated record.
func (d *Decoder) Decode(sample []byte, ev *flow.Event) error {
	if len(sample) == 0 {
		d.stats.Malformed.Add(1)
		return errors.New("empty monitor record")
	}
	*ev = flow.Event{Node: d.cfg.Node, Time: d.cfg.Now()}
	var err error
	switch t := MessageType(sample[0]); t {
	case MessageTrace:
		err = d.trace(sample, ev)
		if err == nil {
			d.stats.Trace.Add(1)
		}
	case MessageDrop:
		err = d.drop(sample, ev)
		if err == nil {
			d.stats.Drop.Add(1)
		}
	case MessagePolicyVerdict:
		err = d.verdict(sample, ev)
		if err == nil {
			d.stats.PolicyVerdict.Add(1)
		}
	case MessageDebug, MessageDebugCapture:
		d.stats.Debug.Add(1)
		return fmt.Errorf("%s record: %w", t, ErrNotFlow)
	case MessageCapture, MessageTraceSock:
		d.stats.Capture.Add(1)
		return fmt.Errorf("%s record: %w", t, ErrNotFlow)
	default:
		d.stats.UnknownType.Add(1)
		return fmt.Errorf("monitor record of unknown type %d", sample[0])
	}
	if err != nil {
		var ve *VersionError
		if errors.As(err, &ve) {
			d.stats.UnknownVersion.Add(1)
		} else {
			d.stats.Malformed.Add(1)
		}
		return err
	}
	if ev.Ifindex != 0 && d.cfg.InterfaceName != nil {
		ev.Interface = d.cfg.InterfaceName(ev.Ifindex)
	}
	return nil
}

func (d *Decoder) trace(b []byte, ev *flow.Event) error {
	tn := &d.tn
	data, err := ParseTrace(b, tn)
	if err != nil {
		return err
	}
	ev.Type = flow.EventTrace
	ev.ObsPoint = flow.ObsPoint(tn.Subtype)
	ev.Ifindex = tn.Ifindex
	ev.SrcIdentity, ev.DstIdentity = tn.SrcLabel, tn.DstLabel
	ev.OrigLen = tn.OrigLen
	ev.EndpointID = tn.Source
	if tn.Subtype == TraceToLxc && tn.DstID != 0 {
		ev.EndpointID = tn.DstID
	}
	ev.Data, ev.L3 = payload(data, tn.Flags)

	reason := tn.Reason &^ ReasonEncryptedMask
	known := reason != ReasonUnknown
	ev.TraceReason = traceReason(reason)
	switch {
	case !known || reason == ReasonSRv6Encap || reason == ReasonSRv6Decap:
		ev.ReplyUnknown = true
	default:
		ev.IsReply = reason == ReasonCtReply
	}
	// Direction as Hubble derives it: a packet the writing endpoint sent
	// (or a reply to it) leaves it; with no resolver the flow decoder
	// falls back to the observation point.
	if tn.Source != 0 && known && d.cfg.Resolver != nil {
		if src, ok := sourceAddr(ev.Data, ev.L3); ok {
			isSourceEP := d.endpointID(src) == uint32(tn.Source)
			snat := tn.Version >= 1 && origIPSet(tn)
			switch {
			case isSourceEP != ev.IsReply, snat:
				ev.Direction = flow.Egress
			default:
				ev.Direction = flow.Ingress
			}
		}
	}
	return nil
}

func (d *Decoder) drop(b []byte, ev *flow.Event) error {
	dn := &d.dn
	data, err := ParseDrop(b, dn)
	if err != nil {
		return err
	}
	ev.Type = flow.EventDrop
	ev.DropReason = dn.Subtype
	ev.DropFile, ev.DropLine = FileName(dn.File), uint32(dn.Line)
	ev.Ifindex = dn.Ifindex
	ev.SrcIdentity, ev.DstIdentity = dn.SrcLabel, dn.DstLabel
	ev.OrigLen = dn.OrigLen
	ev.EndpointID = dn.Source
	ev.ReplyUnknown = true
	ev.Data, ev.L3 = payload(data, dn.Flags)
	if dn.Source == 0 {
		return nil
	}
	// The writing endpoint sent the packet: egress; otherwise ingress.
	// Without a resolver, bpf_lxc's convention decides: dst_id is the
	// endpoint on ingress and 0 on egress.
	if src, ok := sourceAddr(ev.Data, ev.L3); ok && d.cfg.Resolver != nil {
		if d.endpointID(src) == uint32(dn.Source) {
			ev.Direction = flow.Egress
		} else {
			ev.Direction = flow.Ingress
		}
	} else if dn.DstID != 0 {
		ev.Direction = flow.Ingress
	} else {
		ev.Direction = flow.Egress
	}
	return nil
}

func (d *Decoder) verdict(b []byte, ev *flow.Event) error {
	pn := &d.pn
	data, err := ParsePolicyVerdict(b, pn)
	if err != nil {
		return err
	}
	ev.Type = flow.EventPolicyVerdict
	ev.OrigLen = pn.OrigLen
	ev.EndpointID = pn.Source
	ev.PolicyMatch = flow.PolicyMatch(pn.MatchType())
	ev.Audit = pn.Audited()
	ev.Data = data
	ev.L3 = pn.L3Device()
	if pn.Verdict < 0 {
		// A denied verdict carries minus the drop reason.
		ev.DropReason = uint8(-pn.Verdict)
		ev.ReplyUnknown = true
	}
	if pn.Direction() == PolicyIngress {
		ev.Direction = flow.Ingress
		ev.SrcIdentity = pn.RemoteLabel
	} else {
		ev.Direction = flow.Egress
		ev.DstIdentity = pn.RemoteLabel
	}
	return nil
}

func (d *Decoder) endpointID(ip netip.Addr) uint32 {
	info, ok := d.cfg.Resolver.EndpointByIP(ip)
	if !ok {
		return 0
	}
	return info.ID
}

func origIPSet(tn *TraceNotify) bool {
	n := 16
	if tn.Flags&FlagIPv6 == 0 {
		n = 4
	}
	for _, c := range tn.OrigIP[:n] {
		if c != 0 {
			return true
		}
	}
	return false
}

// payload returns the packet to decode: for an encapsulated packet
// (FlagVXLAN, FlagGeneve) the inner Ethernet frame when the outer headers
// are complete, otherwise the bytes as captured.
func payload(data []byte, flags uint8) ([]byte, bool) {
	l3 := flags&FlagL3Device != 0
	if flags&(FlagVXLAN|FlagGeneve) == 0 {
		return data, l3
	}
	off := 0
	if !l3 {
		if len(data) < 14 {
			return data, l3
		}
		off = 14
	}
	if len(data) < off+1 {
		return data, l3
	}
	switch data[off] >> 4 {
	case 4:
		if len(data) < off+20 {
			return data, l3
		}
		off += int(data[off]&0x0f) * 4
	case 6:
		off += 40 // the tunnel's outer IPv6 header carries no extension headers
	default:
		return data, l3
	}
	off += 8 // UDP
	if len(data) < off+8 {
		return data, l3
	}
	if flags&FlagGeneve != 0 {
		off += 8 + int(data[off]&0x3f)*4
	} else {
		off += 8
	}
	if len(data) < off+14 {
		return data, l3
	}
	return data[off:], false
}

// sourceAddr returns the source IP address of a captured packet.
func sourceAddr(data []byte, l3 bool) (netip.Addr, bool) {
	if !l3 {
		if len(data) < 14 {
			return netip.Addr{}, false
		}
		switch ne16be(data[12:14]) {
		case 0x0800, 0x86dd:
		default:
			return netip.Addr{}, false
		}
		data = data[14:]
	}
	if len(data) < 1 {
		return netip.Addr{}, false
	}
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(data[12:16])), true
	case 6:
		if len(data) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(data[8:24])), true
	}
	return netip.Addr{}, false
}

func ne16be(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// traceReason maps a datapath TRACE_REASON_* (encryption bit cleared) to
// Hubble's TraceReason: the values below TRACE_REASON_UNKNOWN shift up by
// one (Hubble keeps 0 for unknown), the ones above map as they are.
func traceReason(r uint8) flow.TraceReason {
	switch {
	case r == ReasonUnknown:
		return flow.TraceReasonUnknown
	case r < ReasonUnknown:
		return flow.TraceReason(r) + 1
	}
	return flow.TraceReason(r)
}

// FileName names the Cilium source file of a drop notification's file
// number, as Hubble prints it (the numbering of bpf/lib/source_info.h of
// the pinned release); "unknown(N)" for a number it does not know.
func FileName(id uint8) string {
	if n, ok := sourceFiles[id]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%d)", id)
}

// sourceFiles are the file numbers Cilium's programs report drops with.
var sourceFiles = map[uint8]string{
	1: "bpf_host.c", 2: "bpf_lxc.c", 3: "bpf_overlay.c", 4: "bpf_xdp.c", 5: "bpf_sock.c", 7: "bpf_wireguard.c",
	101: "drop.h", 102: "srv6.h", 103: "icmp6.h", 104: "nodeport.h", 105: "lb.h", 106: "mcast.h", 107: "ipv4.h",
	108: "conntrack.h", 109: "local_delivery.h", 110: "trace.h", 111: "encap.h", 112: "host_firewall.h",
	113: "nodeport_egress.h", 114: "ipv6.h", 115: "classifiers.h",
}
