package observer

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/podlab/podlab/datapath/flow"
)

// ToProto converts a podlab flow into Hubble's protobuf flow, field by
// field (the enums share Hubble's numbering). The result shares no memory
// with f.
func ToProto(f *flow.Flow) *flowpb.Flow {
	if f == nil {
		return nil
	}
	p := &flowpb.Flow{
		Uuid:                  f.UUID,
		Verdict:               flowpb.Verdict(f.Verdict),
		DropReason:            f.DropReason,
		Type:                  flowpb.FlowType(f.Type),
		NodeName:              f.NodeName,
		SourceNames:           cloneStrings(f.SourceNames),
		DestinationNames:      cloneStrings(f.DestinationNames),
		Reply:                 f.Reply,
		TrafficDirection:      flowpb.TrafficDirection(f.TrafficDirection),
		PolicyMatchType:       f.PolicyMatchType,
		TraceObservationPoint: flowpb.TraceObservationPoint(f.TraceObservationPoint),
		TraceReason:           flowpb.TraceReason(f.TraceReason),
		DropReasonDesc:        flowpb.DropReason(f.DropReasonDesc),
		Summary:               f.Summary,
	}
	if !f.Time.IsZero() {
		p.Time = timestamppb.New(f.Time)
	}
	if e := f.Ethernet; e != nil {
		p.Ethernet = &flowpb.Ethernet{Source: e.Source, Destination: e.Destination}
	}
	if ip := f.IP; ip != nil {
		p.IP = &flowpb.IP{Source: ip.Source, SourceXlated: ip.SourceXlated, Destination: ip.Destination, IpVersion: flowpb.IPVersion(ip.IPVersion), Encrypted: ip.Encrypted}
	}
	if l4 := f.L4; l4 != nil {
		p.L4 = layer4(l4)
	}
	p.Source = endpoint(f.Source)
	p.Destination = endpoint(f.Destination)
	if et := f.EventType; et != nil {
		p.EventType = &flowpb.CiliumEventType{Type: et.Type, SubType: et.SubType}
	}
	p.SourceService = service(f.SourceService)
	p.DestinationService = service(f.DestinationService)
	if fi := f.File; fi != nil {
		p.File = &flowpb.FileInfo{Name: fi.Name, Line: fi.Line}
	}
	if f.IsReply != nil {
		p.IsReply = wrapperspb.Bool(*f.IsReply)
	}
	if i := f.Interface; i != nil {
		p.Interface = &flowpb.NetworkInterface{Index: i.Index, Name: i.Name}
	}
	p.L7 = layer7(f.L7)
	return p
}

// layer7 converts what the L7 proxy saw.
func layer7(l *flow.Layer7) *flowpb.Layer7 {
	if l == nil {
		return nil
	}
	p := &flowpb.Layer7{LatencyNs: l.LatencyNs, Type: l7Type(l.Type)}
	if h := l.HTTP; h != nil {
		ph := &flowpb.HTTP{Code: h.Code, Method: h.Method, Url: h.URL, Protocol: h.Protocol}
		for _, hd := range h.Headers {
			ph.Headers = append(ph.Headers, &flowpb.HTTPHeader{Key: hd.Key, Value: hd.Value})
		}
		p.Record = &flowpb.Layer7_Http{Http: ph}
	}
	if d := l.DNS; d != nil {
		p.Record = &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query: d.Query, Ips: cloneStrings(d.IPs), Ttl: d.TTL, Cnames: cloneStrings(d.CNAMEs),
			ObservationSource: d.ObservationSource, Rcode: d.Rcode, Qtypes: cloneStrings(d.QTypes), Rrtypes: cloneStrings(d.RRTypes),
		}}
	}
	return p
}

func layer4(l4 *flow.Layer4) *flowpb.Layer4 {
	switch {
	case l4.TCP != nil:
		t := &flowpb.TCP{SourcePort: l4.TCP.SourcePort, DestinationPort: l4.TCP.DestinationPort}
		if fl := l4.TCP.Flags; fl != nil {
			t.Flags = &flowpb.TCPFlags{FIN: fl.FIN, SYN: fl.SYN, RST: fl.RST, PSH: fl.PSH, ACK: fl.ACK, URG: fl.URG, ECE: fl.ECE, CWR: fl.CWR, NS: fl.NS}
		}
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: t}}
	case l4.UDP != nil:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: l4.UDP.SourcePort, DestinationPort: l4.UDP.DestinationPort}}}
	case l4.ICMPv4 != nil:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: l4.ICMPv4.Type, Code: l4.ICMPv4.Code}}}
	case l4.ICMPv6 != nil:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv6{ICMPv6: &flowpb.ICMPv6{Type: l4.ICMPv6.Type, Code: l4.ICMPv6.Code}}}
	case l4.SCTP != nil:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_SCTP{SCTP: &flowpb.SCTP{SourcePort: l4.SCTP.SourcePort, DestinationPort: l4.SCTP.DestinationPort}}}
	}
	return &flowpb.Layer4{}
}

func endpoint(e *flow.Endpoint) *flowpb.Endpoint {
	if e == nil {
		return nil
	}
	p := &flowpb.Endpoint{ID: e.ID, Identity: e.Identity, ClusterName: e.ClusterName, Namespace: e.Namespace, Labels: cloneStrings(e.Labels), PodName: e.PodName}
	for _, w := range e.Workloads {
		if w != nil {
			p.Workloads = append(p.Workloads, &flowpb.Workload{Name: w.Name, Kind: w.Kind})
		}
	}
	return p
}

func service(s *flow.Service) *flowpb.Service {
	if s == nil {
		return nil
	}
	return &flowpb.Service{Name: s.Name, Namespace: s.Namespace}
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}
