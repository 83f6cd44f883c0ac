package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/topo"
)

// EventPump reads every node's event ring buffer, decodes the records into
// Hubble-shaped flows and adds them to a flow store.
type EventPump struct {
	cp      *ControlPlane
	store   *flow.Store
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	readers []*datapath.EventReader
	// closers stop readers of other backends (Cilium's monitor readers).
	closers []func() error
	errs    []error
	drops   []Drop
	dropped uint64 // drops not kept (over maxDrops)
}

// maxDrops bounds the dropped packets an EventPump keeps for the report.
const maxDrops = 20000

// Drop is one packet the datapath dropped, as its drop event carried it.
type Drop struct {
	Time      time.Time
	Node      string
	Interface string
	// Direction is "ingress" or "egress" seen from the endpoint.
	Direction string
	Reason    datapath.DropReason
	// Data is the packet's first bytes, from the Ethernet header.
	Data    []byte
	OrigLen uint32
}

// StartEvents starts one reader per node feeding store. Stop it before
// closing the control plane.
func (cp *ControlPlane) StartEvents(ctx context.Context, store *flow.Store) (*EventPump, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &EventPump{cp: cp, store: store, cancel: cancel}
	cp.l7store.Store(store)
	for _, name := range cp.Nodes() {
		dp := cp.Datapath(name)
		if dp == nil {
			if cn := cp.CiliumNode(name); cn != nil {
				if err := p.startCilium(ctx, name, cn); err != nil {
					p.Stop()
					return nil, err
				}
			}
			continue
		}
		rd, err := dp.Events()
		if err != nil {
			p.Stop()
			return nil, err
		}
		p.readers = append(p.readers, rd)
		p.wg.Add(1)
		go p.read(ctx, name, rd)
	}
	return p, nil
}

func (p *EventPump) read(ctx context.Context, node string, rd *datapath.EventReader) {
	defer p.wg.Done()
	dec := flow.NewDecoder(p.cp)
	var lastLost uint64
	n := 0
	for ctx.Err() == nil {
		ev, err := rd.Read()
		if err != nil {
			if errors.Is(err, datapath.ErrClosed) || ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Errorf("events of %s: %w", node, err))
			p.mu.Unlock()
			continue
		}
		// Lost() is a syscall: check it every 256 records, not per record.
		if n++; n%256 == 1 {
			if lost, err := rd.Lost(); err == nil && lost > lastLost {
				p.store.AddLost(flow.LostRingBuffer, lost-lastLost)
				lastLost = lost
			}
		}
		fe := p.cp.flowEvent(node, ev)
		if d, ok := ev.(*datapath.DropEvent); ok {
			p.keepDrop(fe, d)
		}
		f, err := dec.Decode(fe)
		if err != nil {
			continue // an event without a parsable packet: nothing to show
		}
		p.store.Add(f)
	}
}

func (p *EventPump) keepDrop(fe *flow.Event, d *datapath.DropEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.drops) >= maxDrops {
		p.dropped++
		return
	}
	dir := "unknown"
	switch d.Direction {
	case datapath.DirectionIngress:
		dir = "ingress"
	case datapath.DirectionEgress:
		dir = "egress"
	}
	p.drops = append(p.drops, Drop{Time: fe.Time, Node: fe.Node, Interface: fe.Interface, Direction: dir, Reason: d.Reason, Data: append([]byte(nil), d.Data...), OrigLen: d.OrigLen})
}

// Drops returns the dropped packets seen so far (at most 20,000) and how
// many more were not kept.
func (p *EventPump) Drops() ([]Drop, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Drop(nil), p.drops...), p.dropped
}

// Drain waits until the datapath's queued events have been read (the ring
// buffers are empty for a short quiet period), so a flow assertion made
// right after traffic sees that traffic.
func (p *EventPump) Drain(quiet time.Duration) {
	last := p.store.Total()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(quiet)
		now := p.store.Total()
		if now == last {
			return
		}
		last = now
	}
}

// Stop ends the readers.
func (p *EventPump) Stop() error {
	p.cp.l7store.CompareAndSwap(p.store, nil)
	p.cancel()
	for _, rd := range p.readers {
		_ = rd.Close()
	}
	p.mu.Lock()
	closers := p.closers
	p.mu.Unlock()
	for _, c := range closers {
		_ = c()
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// flowEvent converts a datapath event into the decoder's input.
func (cp *ControlPlane) flowEvent(node string, ev datapath.Event) *flow.Event {
	h := ev.Header()
	fe := &flow.Event{
		Time: h.Time, Node: node, Ifindex: h.Ifindex, Interface: cp.ifName(node, int(h.Ifindex)),
		Direction: flow.TrafficDirection(h.Direction), IsReply: h.IsReply, EndpointID: h.EndpointID,
		SrcIdentity: uint32(h.SrcIdentity), DstIdentity: uint32(h.DstIdentity),
		OrigLen: h.OrigLen, Data: h.Data,
		Xlate: flow.Xlate(h.Xlate), XlateAddr: h.XlateAddr,
	}
	switch e := ev.(type) {
	case *datapath.DropEvent:
		fe.Type, fe.DropReason = flow.EventDrop, uint8(e.Reason)
	case *datapath.TraceEvent:
		fe.Type, fe.ObsPoint, fe.BeforeXlate = flow.EventTrace, flow.ObsPoint(e.ObsPoint), e.Entry
		fe.TraceReason = traceReason(e)
	case *datapath.PolicyVerdictEvent:
		fe.Type, fe.PolicyMatch = flow.EventPolicyVerdict, flow.PolicyMatch(e.Match)
		if !e.Allowed {
			fe.DropReason = uint8(e.Reason)
		}
	}
	return fe
}

// traceReason is the connection-tracking state podlab's datapath traced
// a packet with: first packet, reply, or any later one. A packet that is
// not IP (ARP) had no conntrack lookup; Cilium says TRACE_REASON_UNKNOWN
// there, and so does podlab.
func traceReason(e *datapath.TraceEvent) flow.TraceReason {
	switch {
	case !isIPFrame(e.Data):
		return flow.TraceReasonUnknown
	case e.IsNew:
		return flow.TraceReasonNew
	case e.IsReply:
		return flow.TraceReasonReply
	}
	return flow.TraceReasonEstablished
}

// isIPFrame reports whether an Ethernet frame carries IPv4 or IPv6.
func isIPFrame(b []byte) bool {
	if len(b) < 14 {
		return false
	}
	et := uint16(b[12])<<8 | uint16(b[13])
	return et == 0x0800 || et == 0x86dd
}

// resolverIndex answers the flow decoder's lookups without taking the
// control plane's lock: per-IP endpoint info, per-node device names and
// per-identity label strings, rebuilt when endpoints or nodes change.
type resolverIndex struct {
	mu       sync.RWMutex
	byIP     map[netip.Addr]flow.EndpointInfo
	ifNames  map[string]map[int]string
	idLabels map[uint32][]string
	// services maps ClusterIP frontends to their service (namespace, name).
	services map[netip.AddrPort][2]string
}

// reindexLocked rebuilds the index; cp.mu is held.
func (cp *ControlPlane) reindexLocked() {
	byIP := map[netip.Addr]flow.EndpointInfo{}
	ifNames := map[string]map[int]string{}
	for _, name := range cp.order {
		n := cp.nodes[name].n
		info := flow.EndpointInfo{Identity: uint32(identity.RemoteNode), Labels: []string{"reserved:remote-node"}, Node: n.Name}
		byIP[n.IP], byIP[n.RouterIP] = info, info
		ifNames[name] = map[int]string{n.Eth0Ifindex: topo.NodeEth0, n.VXLANIfindex: topo.NodeVXLAN, n.HostIfindex: topo.NodeHost, n.NetIfindex: topo.NodeNet}
	}
	for _, ep := range cp.eps {
		byIP[ep.pod.IP] = endpointInfo(ep)
		if m := ifNames[ep.pod.Node.Name]; m != nil {
			m[ep.pod.HostIfindex] = ep.pod.HostVeth
		}
	}
	cp.index.mu.Lock()
	cp.index.byIP, cp.index.ifNames = byIP, ifNames
	cp.index.idLabels = map[uint32][]string{}
	cp.index.mu.Unlock()
}

// endpointInfo is what the flow decoder learns of an endpoint.
func endpointInfo(ep *endpoint) flow.EndpointInfo {
	info := flow.EndpointInfo{ID: uint32(ep.pod.EndpointID), Identity: uint32(ep.id), Namespace: ep.pod.Namespace, PodName: ep.pod.Name,
		Labels: labelStrings(ep.labels), Node: ep.pod.Node.Name}
	if w := ep.pod.Workload; w.Kind != "" {
		info.Workload = &flow.Workload{Kind: w.Kind, Name: w.Name}
	}
	return info
}

// indexEndpointLocked adds one endpoint to the resolver index.
func (cp *ControlPlane) indexEndpointLocked(ep *endpoint) {
	info := endpointInfo(ep)
	cp.index.mu.Lock()
	defer cp.index.mu.Unlock()
	if cp.index.byIP == nil {
		cp.index.byIP = map[netip.Addr]flow.EndpointInfo{}
	}
	cp.index.byIP[ep.pod.IP] = info
	if m := cp.index.ifNames[ep.pod.Node.Name]; m != nil {
		m[ep.pod.HostIfindex] = ep.pod.HostVeth
	}
}

// ifName names a device of a node's namespace by ifindex.
func (cp *ControlPlane) ifName(node string, ifindex int) string {
	cp.index.mu.RLock()
	defer cp.index.mu.RUnlock()
	return cp.index.ifNames[node][ifindex]
}

// EndpointByIP answers the flow decoder: pods and nodes.
func (cp *ControlPlane) EndpointByIP(ip netip.Addr) (flow.EndpointInfo, bool) {
	cp.index.mu.RLock()
	defer cp.index.mu.RUnlock()
	info, ok := cp.index.byIP[ip]
	return info, ok
}

// ServiceByAddr answers the flow decoder: the service whose ClusterIP
// frontend is ip:port.
func (cp *ControlPlane) ServiceByAddr(ip netip.Addr, port uint16) (namespace, name string, ok bool) {
	cp.index.mu.RLock()
	defer cp.index.mu.RUnlock()
	s, ok := cp.index.services[netip.AddrPortFrom(ip, port)]
	return s[0], s[1], ok
}

// indexServicesLocked rebuilds the frontend index of ServiceByAddr; cp.mu
// is held.
func (cp *ControlPlane) indexServicesLocked() {
	m := map[netip.AddrPort][2]string{}
	for _, s := range cp.lb.services {
		if !s.ClusterIP.IsValid() {
			continue
		}
		for _, p := range s.Ports {
			m[netip.AddrPortFrom(s.ClusterIP, p.Port)] = [2]string{s.Namespace, s.Name}
		}
	}
	cp.index.mu.Lock()
	cp.index.services = m
	cp.index.mu.Unlock()
}

// IdentityLabels answers the flow decoder.
func (cp *ControlPlane) IdentityLabels(id uint32) []string {
	cp.index.mu.RLock()
	ls, ok := cp.index.idLabels[id]
	cp.index.mu.RUnlock()
	if ok {
		return ls
	}
	if i, found := cp.alloc.Lookup(identity.ID(id)); found {
		ls = labelStrings(i.Labels)
		// An address learned through toFQDNs carries the selectors'
		// fqdn: labels and reserved:world, as in Cilium v1.20.
		if i.IsCIDR() && i.Prefix.IsSingleIP() {
			if fl := cp.repo.FQDNLabels(i.Prefix.Addr()); len(fl) > 0 {
				ls = append(fl, "reserved:world")
			}
		}
	} else if name := identity.ReservedName(identity.ID(id)); name != "" {
		ls = []string{"reserved:" + name}
	}
	cp.index.mu.Lock()
	if cp.index.idLabels != nil {
		cp.index.idLabels[id] = ls
	}
	cp.index.mu.Unlock()
	return ls
}

func labelStrings(ls identity.Labels) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.String())
	}
	return out
}
