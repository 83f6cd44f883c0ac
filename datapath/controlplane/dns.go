package controlplane

import (
	"net/netip"
	"strings"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy/dnsproxy"
)

// newDNSProxy builds the DNS proxy of a node: queries are judged by the
// DNS rules of the client's egress policy, answers feed toFQDNs policy
// (ObserveDNS) before they are released, and every query and answer
// becomes an L7 flow.
func (cp *ControlPlane) newDNSProxy(node string, np *nodeProxy) *dnsproxy.Server {
	return dnsproxy.NewServer(np.reg, dnsproxy.Config{
		Allowed: func(q dnsproxy.Query, name string) bool {
			ep, ok := (*np.local.Load())[q.Source.Addr()]
			if !ok {
				return true // not a local endpoint: no egress DNS rules apply
			}
			proto := policy.ProtoUDP
			if q.TCP {
				proto = policy.ProtoTCP
			}
			return dnsAllowed(ep.Policy, np.reg.Identity(q.OrigDst.Addr()), proto, q.OrigDst.Port(), name)
		},
		Observe: cp.ObserveDNS,
		Report:  func(r dnsproxy.Record) { cp.reportDNS(node, r) },
	}, cp.log.With("node", node, "proxy", "dns"))
}

// dnsAllowed applies the DNS rules of pol's egress entries that allow peer
// on proto/port: a name passes when one rule matches it, or when an entry
// without DNS rules (an L4 allow) covers the same traffic.
func dnsAllowed(pol policy.EndpointPolicy, peer uint32, proto uint8, port uint16, name string) bool {
	if !pol.EgressEnforced {
		return true
	}
	found := false
	for i := range pol.Entries {
		e := &pol.Entries[i]
		if e.Direction != policy.Egress || e.Deny || (e.Identity != 0 && e.Identity != peer) {
			continue
		}
		if e.Proto != 0 && e.Proto != proto {
			continue
		}
		hi := e.PortHi
		if hi == 0 {
			hi = e.PortLo
		}
		if !(e.PortLo == 0 && hi == 0) && (port < e.PortLo || port > hi) {
			continue
		}
		if e.L7 == nil || e.L7.Wildcard || len(e.L7.DNS) == 0 {
			return true
		}
		found = true
		if e.L7.DNS.Allows(name) {
			return true
		}
	}
	return !found
}

// reportDNS turns a DNS proxy record into a Hubble L7 flow (queries from
// client to server, answers back).
func (cp *ControlPlane) reportDNS(node string, r dnsproxy.Record) {
	store := cp.l7store.Load()
	if store == nil {
		return
	}
	store.Add(cp.dnsFlow(node, r))
}

func (cp *ControlPlane) dnsFlow(node string, r dnsproxy.Record) *flow.Flow {
	src, dst := r.Query.Source, r.Query.OrigDst
	srcID, dstID := r.Query.SourceIdentity, cp.identityOfAddr(r.Query.OrigDst.Addr())
	typ := flow.L7Request
	if r.Response {
		src, dst, srcID, dstID = dst, src, dstID, srcID
		typ = flow.L7Response
	}
	d := &flow.L7DNS{Query: r.Name, QTypes: r.QTypes, RRTypes: r.RRTypes, CNAMEs: r.CNAMEs, ObservationSource: "proxy"}
	if r.Response {
		d.Rcode = uint32(r.RCode)
		d.TTL = r.TTL
		for _, ip := range r.IPs {
			d.IPs = append(d.IPs, ip.String())
		}
	}
	l7 := &flow.Layer7{Type: typ, DNS: d}
	if r.Response {
		l7.LatencyNs = uint64(r.Latency.Nanoseconds())
	}
	l4 := &flow.Layer4{UDP: &flow.UDP{SourcePort: uint32(src.Port()), DestinationPort: uint32(dst.Port())}}
	if r.Query.TCP {
		l4 = &flow.Layer4{TCP: &flow.TCP{SourcePort: uint32(src.Port()), DestinationPort: uint32(dst.Port())}}
	}
	f := &flow.Flow{
		Time:             r.Time,
		Verdict:          flow.VerdictForwarded,
		IP:               &flow.IP{Source: src.Addr().String(), Destination: dst.Addr().String(), IPVersion: flow.IPv4},
		L4:               l4,
		Source:           cp.l7Endpoint(src.Addr(), srcID, node),
		Destination:      cp.l7Endpoint(dst.Addr(), dstID, node),
		Type:             flow.FlowTypeL7,
		NodeName:         node,
		EventType:        &flow.CiliumEventType{Type: int32(flow.EventL7)},
		TrafficDirection: flow.Egress,
		L7:               l7,
	}
	if r.Denied {
		f.Verdict = flow.VerdictDropped
	}
	reply := r.Response
	f.IsReply = &reply
	f.Reply = reply
	f.Summary = flow.L7Summary(l7)
	if r.Denied {
		f.Summary = "DNS Query " + r.Name + " " + strings.Join(r.QTypes, ",") + " (denied: REFUSED)"
	}
	return f
}

// identityOfAddr is the security identity of an address as the control
// plane knows it (endpoints, CIDR and FQDN identities), world otherwise.
func (cp *ControlPlane) identityOfAddr(a netip.Addr) uint32 {
	if info, ok := cp.EndpointByIP(a); ok {
		return info.Identity
	}
	return 2
}
