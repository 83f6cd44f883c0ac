package observer

import (
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podlab/podlab/datapath/flow"
)

// AppendFlowResponse appends the protobuf wire encoding of the
// GetFlowsResponse that carries f (flow, node_name, time) to b, without
// building the protobuf message first: the bytes are those of
// proto.Marshal of a GetFlowsResponse holding ToProto(f) (field order
// aside), at a fraction of the cost and with no allocation beyond b's
// growth. Field numbers are those of cilium v1.20.2's flow.proto and
// observer.proto; TestAppendFlowResponseMatchesToProto keeps the two
// encodings equal.
func AppendFlowResponse(b []byte, f *flow.Flow) []byte {
	return appendResponse(b, f, func(b []byte) []byte { return appendFlow(b, f) })
}

// appendMaskedResponse appends the GetFlowsResponse carrying the fields
// of f that m keeps; full is scratch space for f's whole encoding, which
// it returns for reuse.
func appendMaskedResponse(b, full []byte, f *flow.Flow, m fieldMask) (out, scratch []byte) {
	full = appendFlow(full[:0], f)
	return appendResponse(b, f, func(b []byte) []byte { return appendMasked(b, full, m.root) }), full
}

// appendResponse appends a GetFlowsResponse whose flow's fields body
// appends, with f's node name and time.
func appendResponse(b []byte, f *flow.Flow, body func([]byte) []byte) []byte {
	b = appendMsg(b, 1, body)
	b = appendString(b, 1000, f.NodeName)
	if !f.Time.IsZero() {
		b = appendMsg(b, 1001, func(b []byte) []byte { return appendTime(b, f.Time) })
	}
	return b
}

// appendFlow appends the fields of Hubble's Flow message, as ToProto
// fills them.
func appendFlow(b []byte, f *flow.Flow) []byte {
	if !f.Time.IsZero() {
		b = appendMsg(b, 1, func(b []byte) []byte { return appendTime(b, f.Time) })
	}
	b = appendVarint(b, 2, uint64(f.Verdict))
	b = appendVarint(b, 3, uint64(f.DropReason))
	if e := f.Ethernet; e != nil {
		b = appendMsg(b, 4, func(b []byte) []byte {
			b = appendString(b, 1, e.Source)
			return appendString(b, 2, e.Destination)
		})
	}
	if ip := f.IP; ip != nil {
		b = appendMsg(b, 5, func(b []byte) []byte {
			b = appendString(b, 1, ip.Source)
			b = appendString(b, 2, ip.Destination)
			b = appendVarint(b, 3, uint64(ip.IPVersion))
			b = appendBool(b, 4, ip.Encrypted)
			return appendString(b, 5, ip.SourceXlated)
		})
	}
	if l4 := f.L4; l4 != nil {
		b = appendMsg(b, 6, func(b []byte) []byte { return appendLayer4(b, l4) })
	}
	b = appendEndpoint(b, 8, f.Source)
	b = appendEndpoint(b, 9, f.Destination)
	b = appendVarint(b, 10, uint64(f.Type))
	b = appendString(b, 11, f.NodeName)
	b = appendStrings(b, 13, f.SourceNames)
	b = appendStrings(b, 14, f.DestinationNames)
	if f.L7 != nil {
		b = appendMsg(b, 15, func(b []byte) []byte { return appendLayer7(b, f.L7) })
	}
	b = appendBool(b, 16, f.Reply)
	if et := f.EventType; et != nil {
		b = appendMsg(b, 19, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(int64(et.Type)))
			return appendVarint(b, 2, uint64(int64(et.SubType)))
		})
	}
	b = appendService(b, 20, f.SourceService)
	b = appendService(b, 21, f.DestinationService)
	b = appendVarint(b, 22, uint64(f.TrafficDirection))
	b = appendVarint(b, 23, uint64(f.PolicyMatchType))
	b = appendVarint(b, 24, uint64(f.TraceObservationPoint))
	b = appendVarint(b, 25, uint64(f.DropReasonDesc))
	if f.IsReply != nil {
		v := *f.IsReply
		b = appendMsg(b, 26, func(b []byte) []byte { return appendBool(b, 1, v) })
	}
	if i := f.Interface; i != nil {
		b = appendMsg(b, 28, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(i.Index))
			return appendString(b, 2, i.Name)
		})
	}
	b = appendString(b, 34, f.UUID)
	b = appendVarint(b, 36, uint64(f.TraceReason))
	if fi := f.File; fi != nil {
		b = appendMsg(b, 38, func(b []byte) []byte {
			b = appendString(b, 1, fi.Name)
			return appendVarint(b, 2, uint64(fi.Line))
		})
	}
	return appendString(b, 100000, f.Summary)
}

// appendLayer4 appends a Layer4 message's one protocol (none: empty).
func appendLayer4(b []byte, l4 *flow.Layer4) []byte {
	switch {
	case l4.TCP != nil:
		t := l4.TCP
		return appendMsg(b, 1, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(t.SourcePort))
			b = appendVarint(b, 2, uint64(t.DestinationPort))
			if fl := t.Flags; fl != nil {
				b = appendMsg(b, 3, func(b []byte) []byte {
					for i, set := range [...]bool{fl.FIN, fl.SYN, fl.RST, fl.PSH, fl.ACK, fl.URG, fl.ECE, fl.CWR, fl.NS} {
						b = appendBool(b, protowire.Number(i+1), set)
					}
					return b
				})
			}
			return b
		})
	case l4.UDP != nil:
		return appendPair(b, 2, l4.UDP.SourcePort, l4.UDP.DestinationPort)
	case l4.ICMPv4 != nil:
		return appendPair(b, 3, l4.ICMPv4.Type, l4.ICMPv4.Code)
	case l4.ICMPv6 != nil:
		return appendPair(b, 4, l4.ICMPv6.Type, l4.ICMPv6.Code)
	case l4.SCTP != nil:
		return appendPair(b, 5, l4.SCTP.SourcePort, l4.SCTP.DestinationPort)
	}
	return b
}

// appendLayer7 appends a Layer7 message (HTTP or DNS record).
func appendLayer7(b []byte, l *flow.Layer7) []byte {
	b = appendVarint(b, 1, uint64(l7Type(l.Type)))
	b = appendVarint(b, 2, l.LatencyNs)
	if d := l.DNS; d != nil {
		b = appendMsg(b, 100, func(b []byte) []byte {
			b = appendString(b, 1, d.Query)
			b = appendStrings(b, 2, d.IPs)
			b = appendVarint(b, 3, uint64(d.TTL))
			b = appendStrings(b, 4, d.CNAMEs)
			b = appendString(b, 5, d.ObservationSource)
			b = appendVarint(b, 6, uint64(d.Rcode))
			b = appendStrings(b, 7, d.QTypes)
			return appendStrings(b, 8, d.RRTypes)
		})
	}
	if h := l.HTTP; h != nil && l.DNS == nil {
		b = appendMsg(b, 101, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(h.Code))
			b = appendString(b, 2, h.Method)
			b = appendString(b, 3, h.URL)
			b = appendString(b, 4, h.Protocol)
			for _, hd := range h.Headers {
				b = appendMsg(b, 5, func(b []byte) []byte {
					b = appendString(b, 1, hd.Key)
					return appendString(b, 2, hd.Value)
				})
			}
			return b
		})
	}
	return b
}

// appendPair appends field num as a message of two uint32 fields (ports,
// ICMP type and code).
func appendPair(b []byte, num protowire.Number, first, second uint32) []byte {
	return appendMsg(b, num, func(b []byte) []byte {
		b = appendVarint(b, 1, uint64(first))
		return appendVarint(b, 2, uint64(second))
	})
}

func appendEndpoint(b []byte, num protowire.Number, e *flow.Endpoint) []byte {
	if e == nil {
		return b
	}
	return appendMsg(b, num, func(b []byte) []byte {
		b = appendVarint(b, 1, uint64(e.ID))
		b = appendVarint(b, 2, uint64(e.Identity))
		b = appendString(b, 3, e.Namespace)
		b = appendStrings(b, 4, e.Labels)
		b = appendString(b, 5, e.PodName)
		for _, w := range e.Workloads {
			if w != nil {
				b = appendMsg(b, 6, func(b []byte) []byte {
					b = appendString(b, 1, w.Name)
					return appendString(b, 2, w.Kind)
				})
			}
		}
		return appendString(b, 7, e.ClusterName)
	})
}

func appendService(b []byte, num protowire.Number, s *flow.Service) []byte {
	if s == nil {
		return b
	}
	return appendMsg(b, num, func(b []byte) []byte {
		b = appendString(b, 1, s.Name)
		return appendString(b, 2, s.Namespace)
	})
}

// appendTime appends a google.protobuf.Timestamp's fields.
func appendTime(b []byte, t time.Time) []byte {
	b = appendVarint(b, 1, uint64(t.Unix()))
	return appendVarint(b, 2, uint64(t.Nanosecond()))
}

// appendMsg appends field num as an embedded message whose fields body
// appends. The length goes in front once known: one byte is reserved and
// the body moved when it needs more.
func appendMsg(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[at+1+extra:], b[at+1:at+1+n])
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

// appendVarint appends a varint field unless v is 0 (proto3 omits zero
// scalars).
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendVarint(b, num, 1)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendStrings appends a repeated string field (every element, empty
// ones included, as proto does).
func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

// l7Type maps podlab's L7 flow type to Hubble's enum.
func l7Type(t flow.L7FlowType) flowpb.L7FlowType {
	switch t {
	case flow.L7Request:
		return flowpb.L7FlowType_REQUEST
	case flow.L7Response:
		return flowpb.L7FlowType_RESPONSE
	}
	return flowpb.L7FlowType(flowpb.L7FlowType_value[string(t)])
}
