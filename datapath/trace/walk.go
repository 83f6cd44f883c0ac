package trace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/topo"
)

// Options say what to trace.
type Options struct {
	// From is the source: a pod (namespace/name or name), a node or a
	// namespace of the lab.
	From string
	// To is the destination: an IP address, a pod, node or namespace, or a
	// world host name.
	To string
	// Proto is icmp (default), tcp or udp.
	Proto string
	// DPort is the destination port for tcp and udp (default 80 and 53).
	DPort uint16
	// Size is the IP packet's total length (default: 84 for ICMP, as ping
	// sends, 60 for a TCP SYN, 64 for UDP). The packet has DF set.
	Size int
	// NoReply skips tracing the reply of a request that arrives.
	NoReply bool
}

// Hop is one line of a trace: what was looked up or decided in one
// namespace.
type Hop struct {
	// NS is the label of the namespace (pod namespace/name, node, or the
	// raw topology's name).
	NS string
	// Kind is what the line is about: route, neigh, dev, tc, bpf, policy,
	// bridge, vxlan, deliver, reply.
	Kind string
	Text string
}

// Device is a device the path crosses (for --live captures).
type Device struct {
	NS    *topo.Namespace
	Label string // the namespace's label
	Name  string
}

// Result is a finished trace.
type Result struct {
	From, To string
	Src, Dst netip.Addr
	Proto    string
	// DPort is the destination port (tcp, udp).
	DPort uint16
	Hops  []Hop
	// Anomaly is the first problem found, in one sentence ("" when the
	// packet arrives, and its reply comes back).
	Anomaly string
	// Reached names where the packet arrives (namespace and device).
	Reached string
	// Devices are the devices the request crosses, in path order, and
	// ReplyDevices those the reply crosses.
	Devices      []Device
	ReplyDevices []Device
	// Live is the outcome of a real probe (Live only).
	Live *LiveReport
}

// Summary is the last line: the anomaly or where the packet arrives.
func (r *Result) Summary() string {
	if r.Anomaly != "" {
		return "anomaly: " + r.Anomaly
	}
	return "no anomaly: the packet reaches " + r.Reached
}

// packet is the packet being walked.
type packet struct {
	src, dst       netip.Addr
	proto          uint8
	sport, dport   uint16
	icmpType       uint8
	size           int
	srcMAC, dstMAC net.HardwareAddr
	ttl            int
	mark           uint32
	// neigh is the neighbour entry that chose dstMAC.
	neigh *neighNote
	// inner is the frame an outer VXLAN packet carries, vni its VNI.
	inner *packet
	vni   uint32
	// tunnel is the tunnel metadata set by BPF (before a collect-metadata
	// VXLAN device sends) or attached on receive.
	tunnel *tunnelMeta
	// arp marks an ARP request (broadcast) used to predict resolution.
	arp bool
	// reply marks the answer to the traced request.
	reply bool
	// fragOK is set for packets without DF (VXLAN's outer packets: Linux
	// VXLAN devices and podlab's tunnel keys leave DF unset), which the
	// kernel fragments instead of dropping.
	fragOK bool
	// dfFrom says who set DF on an outer VXLAN packet.
	dfFrom string
}

type neighNote struct {
	ip      netip.Addr
	dev, ns string
	mac     net.HardwareAddr
	noarp   bool
}

type tunnelMeta struct {
	remote netip.Addr
	vni    uint32
}

func (p *packet) clone() *packet {
	c := *p
	if p.inner != nil {
		c.inner = p.inner.clone()
	}
	return &c
}

func (p *packet) describe() string {
	switch p.proto {
	case unix.IPPROTO_ICMP:
		kind := "echo request"
		if p.icmpType == 0 {
			kind = "echo reply"
		}
		return fmt.Sprintf("ICMP %s %s > %s", kind, p.src, p.dst)
	case unix.IPPROTO_TCP:
		return fmt.Sprintf("TCP %s > %s", netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport))
	case unix.IPPROTO_UDP:
		return fmt.Sprintf("UDP %s > %s", netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport))
	}
	return fmt.Sprintf("proto %d %s > %s", p.proto, p.src, p.dst)
}

// l4port is the port (or ICMP type) policy judges.
func (p *packet) l4port() uint16 {
	if p.proto == unix.IPPROTO_ICMP {
		return uint16(p.icmpType)
	}
	return p.dport
}

// arpAnswer is who answers an ARP request.
type arpAnswer struct {
	sp   *space
	link netlink.Link
}

// maxSteps bounds a walk (mirred or bridge loops).
const maxSteps = 200

// walker follows one packet.
type walker struct {
	lab     *Lab
	hops    []Hop
	anomaly string
	reached string
	reachSp *space
	// final is the packet as delivered (after any service translation).
	final    *packet
	accepted bool
	// otherhost is set when the walk ended on a frame not addressed to
	// its receiver (a normal fate for flooded copies).
	otherhost bool
	devices   []Device
	steps     int
	depth     int
	arpFor    netip.Addr
	arpAns    *arpAnswer
	// ct carries what dry runs wrote to scratch maps (conntrack,
	// affinity, NodePort state), by the live map they stand for.
	ct map[ebpf.MapID][]datapath.MapRecord
}

func (w *walker) done() bool {
	return w.anomaly != "" || w.reached != "" || w.arpAns != nil
}

func (w *walker) hop(sp *space, kind, format string, args ...any) {
	w.hops = append(w.hops, Hop{NS: sp.label, Kind: kind, Text: fmt.Sprintf(format, args...)})
}

func (w *walker) fail(format string, args ...any) {
	if w.anomaly == "" {
		w.anomaly = fmt.Sprintf(format, args...)
	}
}

func (w *walker) step() bool {
	w.steps++
	if w.steps > maxSteps {
		w.fail("the path loops: more than %d steps (a redirect or bridge loop)", maxSteps)
		return false
	}
	return true
}

func (w *walker) device(sp *space, name string) {
	for _, d := range w.devices {
		if d.NS.Name == sp.ns.Name && d.Name == name {
			return
		}
	}
	w.devices = append(w.devices, Device{NS: sp.ns, Label: sp.label, Name: name})
}

func (w *walker) fork() *walker {
	return &walker{lab: w.lab, steps: w.steps, depth: w.depth, arpFor: w.arpFor, ct: w.ct}
}

// adopt takes a branch's outcome.
func (w *walker) adopt(b *walker) {
	w.hops = append(w.hops, b.hops...)
	w.anomaly, w.reached, w.reachSp, w.arpAns, w.final = b.anomaly, b.reached, b.reachSp, b.arpAns, b.final
	w.accepted = w.accepted || b.accepted
	w.otherhost = b.otherhost
	w.ct = b.ct
	for _, d := range b.devices {
		w.device(&space{ns: d.NS, label: d.Label}, d.Name)
	}
	w.steps = b.steps
}

func (b *walker) score() int {
	switch {
	case b.reached != "" || b.arpAns != nil:
		return 3
	case b.accepted:
		return 2
	case !b.otherhost:
		return 1
	}
	return 0
}

// localOut sends pkt from a socket of sp.
func (w *walker) localOut(sp *space, pkt *packet) {
	if !w.step() {
		return
	}
	opts := &netlink.RouteGetOptions{}
	if pkt.src.IsValid() {
		opts.SrcAddr = pkt.src.AsSlice()
	}
	rts, err := sp.h.RouteGetWithOptions(pkt.dst.AsSlice(), opts)
	if err != nil || len(rts) == 0 {
		w.hop(sp, "route", "%s: no route (%v)", pkt.dst, err)
		w.fail("%s has no route to %s%s (%s)", sp.label, pkt.dst, w.downHint(sp, pkt.dst), errText(err))
		return
	}
	rt := rts[0]
	if !pkt.src.IsValid() {
		if a, ok := netip.AddrFromSlice(rt.Src); ok {
			pkt.src = a.Unmap()
		}
	}
	w.output(sp, pkt, rt, false)
}

// downHint names a down link whose subnet covers dst.
func (w *walker) downHint(sp *space, dst netip.Addr) string {
	links, err := sp.h.LinkList()
	if err != nil {
		return ""
	}
	for _, ln := range links {
		if up, why := linkUp(ln); !up {
			addrs, _ := sp.h.AddrList(ln, netlink.FAMILY_ALL)
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				ones, _ := a.Mask.Size()
				if netip.PrefixFrom(ip.Unmap(), ones).Masked().Contains(dst) {
					return fmt.Sprintf(": %s, which holds %s/%d, is %s", ln.Attrs().Name, ip.Unmap(), ones, why)
				}
			}
		}
	}
	return ""
}

func errText(err error) string {
	if err == nil {
		return "empty answer"
	}
	var en unix.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_BROADCAST:
		return "broadcast"
	}
	return strconv.Itoa(t)
}

// output sends pkt along route rt from sp (forwarded: it came in on a
// device).
func (w *walker) output(sp *space, pkt *packet, rt netlink.Route, forwarded bool) {
	switch rt.Type {
	case unix.RTN_UNICAST, 0:
	case unix.RTN_LOCAL:
		w.hop(sp, "route", "%s is a local address of %s", pkt.dst, sp.label)
		w.deliver(sp, nil, pkt)
		return
	default:
		w.hop(sp, "route", "%s: %s route", pkt.dst, routeType(rt.Type))
		w.fail("%s has a %s route for %s: the kernel drops the packet there", sp.label, routeType(rt.Type), pkt.dst)
		return
	}
	ln, err := sp.link(rt.LinkIndex)
	if err != nil {
		w.fail("%v", err)
		return
	}
	name := ln.Attrs().Name
	nh := pkt.dst
	via := "directly connected"
	if gw, ok := netip.AddrFromSlice(rt.Gw); ok && len(rt.Gw) > 0 {
		nh = gw.Unmap()
		via = "via " + nh.String()
	}
	src := ""
	if s, ok := netip.AddrFromSlice(rt.Src); ok && len(rt.Src) > 0 {
		src = " src " + s.Unmap().String()
	}
	verb := "route"
	if forwarded {
		verb = "forward"
	}
	w.hop(sp, verb, "%s %s dev %s%s (%s)", pkt.dst, via, name, src, pkt.describe())
	if forwarded {
		pkt.ttl--
		if pkt.ttl <= 0 {
			w.fail("the TTL runs out in %s", sp.label)
			return
		}
	}
	if up, _ := linkUp(ln); !up {
		w.fail("the route for %s in %s leaves by %s, which %s", pkt.dst, sp.label, name, w.downReason(sp, ln))
		return
	}
	if mtu := ln.Attrs().MTU; mtu > 0 && pkt.size > mtu {
		if pkt.fragOK {
			w.hop(sp, "route", "the %d-byte packet exceeds %s's MTU %d; DF is not set: fragmented", pkt.size, name, mtu)
			pkt.size = mtu
		} else if pkt.inner != nil {
			w.fail("the VXLAN packet is %d bytes (a %d-byte frame plus 50 bytes of headers) but %s in %s has MTU %d, and %s: the kernel drops it, and its ICMP fragmentation-needed goes to %s itself, not to the sender of the inner packet",
				pkt.size, pkt.size-50, name, sp.label, mtu, pkt.dfFrom, sp.label)
			return
		} else {
			w.fail("the packet is %d bytes but %s in %s has MTU %d and DF is set: the kernel drops it (%s)",
				pkt.size, name, sp.label, mtu, map[bool]string{true: "and answers ICMP fragmentation needed", false: "EMSGSIZE to the sender"}[forwarded])
			return
		}
	}
	mac, ok := w.neighbour(sp, ln, nh, pkt)
	if !ok {
		return
	}
	pkt.srcMAC = ln.Attrs().HardwareAddr
	pkt.dstMAC = mac
	w.xmit(sp, ln, pkt)
}

func neighState(s int) string {
	var parts []string
	for _, st := range []struct {
		bit  int
		name string
	}{{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"}} {
		if s&st.bit != 0 {
			parts = append(parts, st.name)
		}
	}
	if len(parts) == 0 {
		return "NONE"
	}
	return strings.Join(parts, ",")
}

const nudUsable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_NOARP | netlink.NUD_PERMANENT

// neighbour resolves the MAC of next hop nh on ln.
func (w *walker) neighbour(sp *space, ln netlink.Link, nh netip.Addr, pkt *packet) (net.HardwareAddr, bool) {
	a := ln.Attrs()
	if a.Flags&net.FlagLoopback != 0 || len(a.HardwareAddr) == 0 {
		return nil, true
	}
	state := "no entry"
	if ns, err := sp.h.NeighList(a.Index, netlink.FAMILY_V4); err == nil {
		for _, n := range ns {
			ip, _ := netip.AddrFromSlice(n.IP)
			if ip.Unmap() != nh {
				continue
			}
			if n.State&nudUsable != 0 && len(n.HardwareAddr) > 0 {
				w.hop(sp, "neigh", "%s lladdr %s %s on %s", nh, n.HardwareAddr, neighState(n.State), a.Name)
				pkt.neigh = &neighNote{ip: nh, dev: a.Name, ns: sp.label, mac: n.HardwareAddr}
				return n.HardwareAddr, true
			}
			state = "entry " + neighState(n.State)
		}
	}
	if a.RawFlags&unix.IFF_NOARP != 0 {
		w.hop(sp, "neigh", "%s: %s on %s, which has NOARP: the kernel will not resolve it and addresses frames to %s's own MAC %s",
			nh, state, a.Name, a.Name, a.HardwareAddr)
		pkt.neigh = &neighNote{ip: nh, dev: a.Name, ns: sp.label, mac: a.HardwareAddr, noarp: true}
		return a.HardwareAddr, true
	}
	if w.depth >= 3 {
		w.fail("%s has %s for %s on %s (resolution not followed further)", sp.label, state, nh, a.Name)
		return nil, false
	}
	// Predict ARP: broadcast a request from ln and see who answers.
	probe := &walker{lab: w.lab, steps: w.steps, depth: w.depth + 1, arpFor: nh, ct: w.ct}
	req := &packet{src: pkt.src, dst: nh, arp: true, size: 28, srcMAC: a.HardwareAddr,
		dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ttl: 64}
	probe.xmit(sp, ln, req)
	if probe.arpAns != nil {
		mac := probe.arpAns.link.Attrs().HardwareAddr
		w.hop(sp, "neigh", "%s: %s on %s; an ARP request would be answered by %s in %s with %s",
			nh, state, a.Name, probe.arpAns.link.Attrs().Name, probe.arpAns.sp.label, mac)
		pkt.neigh = &neighNote{ip: nh, dev: a.Name, ns: sp.label, mac: mac}
		return mac, true
	}
	why := probe.anomaly
	if why == "" {
		why = "nothing answers"
	}
	w.hop(sp, "neigh", "%s: %s on %s, and ARP for it goes unanswered", nh, state, a.Name)
	w.fail("%s has %s for %s on %s and ARP cannot resolve it: %s", sp.label, state, nh, a.Name, why)
	return nil, false
}

// xmit sends frame pkt out of ln in sp.
func (w *walker) xmit(sp *space, ln netlink.Link, pkt *packet) {
	if w.done() || !w.step() {
		return
	}
	a := ln.Attrs()
	w.device(sp, a.Name)
	if up, _ := linkUp(ln); !up {
		w.fail("%s in %s %s: it cannot send the packet", a.Name, sp.label, w.downReason(sp, ln))
		return
	}
	if w.hooks(sp, ln, false, pkt) {
		return
	}
	switch v := ln.(type) {
	case *netlink.Veth:
		w.veth(sp, ln, pkt)
	case *netlink.Vxlan:
		w.encap(sp, v, pkt)
	case *netlink.Bridge:
		w.bridge(sp, ln, nil, pkt)
	default:
		switch {
		case a.Flags&net.FlagLoopback != 0:
			w.receive(sp, ln, pkt)
		case ln.Type() == "dummy":
			w.hop(sp, "dev", "%s: dummy device", a.Name)
			w.fail("%s in %s is a dummy device: what it sends goes nowhere", a.Name, sp.label)
		default:
			w.hop(sp, "dev", "%s: %s device", a.Name, ln.Type())
			w.fail("not supported yet: following a packet out of a %s device (%s in %s)", ln.Type(), a.Name, sp.label)
		}
	}
}

// downReason says why ln cannot carry packets ("is administratively
// down", "has no carrier: its veth peer b0 in b is administratively down").
func (w *walker) downReason(sp *space, ln netlink.Link) string {
	a := ln.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return "is administratively down"
	}
	if _, ok := ln.(*netlink.Veth); ok {
		if psp := w.lab.peerSpace(sp, a.NetNsID); psp != nil {
			if peer, err := psp.link(a.ParentIndex); err == nil && peer.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Sprintf("has no carrier: its veth peer %s in %s is administratively down", peer.Attrs().Name, psp.label)
			}
		}
	}
	if _, ok := ln.(*netlink.Bridge); ok {
		return "has no carrier: none of its ports is up"
	}
	return fmt.Sprintf("has no carrier (state %s)", a.OperState)
}

func (w *walker) veth(sp *space, ln netlink.Link, pkt *packet) {
	a := ln.Attrs()
	peerSp := w.lab.peerSpace(sp, a.NetNsID)
	if peerSp == nil {
		w.hop(sp, "dev", "%s: veth, peer ifindex %d in a namespace outside the lab (netnsid %d)", a.Name, a.ParentIndex, a.NetNsID)
		w.fail("%s in %s is a veth whose peer is outside the lab", a.Name, sp.label)
		return
	}
	peer, err := peerSp.link(a.ParentIndex)
	if err != nil {
		w.fail("%s in %s: cannot find its veth peer: %v", a.Name, sp.label, err)
		return
	}
	p := peer.Attrs()
	w.hop(sp, "dev", "%s: veth, peer %s (ifindex %d) in %s", a.Name, p.Name, p.Index, peerSp.label)
	if p.MTU > 0 && pkt.size > p.MTU {
		w.fail("the packet is %d bytes but the veth peer %s in %s has MTU %d: the kernel drops it", pkt.size, p.Name, peerSp.label, p.MTU)
		return
	}
	w.receive(peerSp, peer, pkt)
}

// receive handles frame pkt arriving on ln in sp.
func (w *walker) receive(sp *space, ln netlink.Link, pkt *packet) {
	if w.done() || !w.step() {
		return
	}
	a := ln.Attrs()
	w.device(sp, a.Name)
	if up, why := linkUp(ln); !up {
		w.fail("%s in %s is %s: the frame is lost there", a.Name, sp.label, why)
		return
	}
	if w.hooks(sp, ln, true, pkt) {
		return
	}
	if a.MasterIndex > 0 {
		master, err := sp.link(a.MasterIndex)
		if err == nil {
			if _, ok := master.(*netlink.Bridge); ok {
				w.bridge(sp, master, ln, pkt)
				return
			}
		}
	}
	w.accept(sp, ln, pkt)
}

// accept is the receiving device's own check of the destination MAC, then
// the IP layer.
func (w *walker) accept(sp *space, ln netlink.Link, pkt *packet) {
	a := ln.Attrs()
	if len(a.HardwareAddr) > 0 && !isGroupMAC(pkt.dstMAC) && len(pkt.dstMAC) > 0 && !macEqual(pkt.dstMAC, a.HardwareAddr) {
		w.otherhost = true
		w.hop(sp, "dev", "%s (MAC %s) receives a frame for %s: not addressed to it", a.Name, a.HardwareAddr, pkt.dstMAC)
		if n := pkt.neigh; n != nil && !pkt.arp {
			if n.noarp {
				w.fail("there is no neighbour entry for %s on %s in %s, which has NOARP, so the kernel addresses the frame to %s's own MAC %s; it is delivered to %s in %s whose MAC is %s, and the kernel there drops frames not addressed to it",
					n.ip, n.dev, n.ns, n.dev, n.mac, a.Name, sp.label, a.HardwareAddr)
			} else {
				w.fail("the neighbour entry for %s on %s in %s says %s, but the frame is delivered to %s in %s whose MAC is %s; the kernel there drops frames not addressed to it",
					n.ip, n.dev, n.ns, n.mac, a.Name, sp.label, a.HardwareAddr)
			}
		} else {
			w.fail("the frame for %s is addressed to %s but arrives at %s in %s whose MAC is %s; the kernel drops frames not addressed to it",
				pkt.dst, pkt.dstMAC, a.Name, sp.label, a.HardwareAddr)
		}
		return
	}
	w.accepted = true
	if n := pkt.neigh; n != nil && !pkt.arp && !isGroupMAC(pkt.dstMAC) {
		w.hop(sp, "dev", "%s in %s has %s, the MAC the neighbour entry for %s on %s gave: the frame is for it", a.Name, sp.label, a.HardwareAddr, n.ip, n.dev)
		pkt.neigh = nil
	}
	if pkt.arp {
		w.arpReceive(sp, ln, pkt)
		return
	}
	w.input(sp, ln, pkt)
}

// arpReceive decides whether sp answers the ARP request arriving on ln.
func (w *walker) arpReceive(sp *space, ln netlink.Link, pkt *packet) {
	a := ln.Attrs()
	if a.RawFlags&unix.IFF_NOARP != 0 {
		w.fail("%s in %s has NOARP and does not answer ARP for %s", a.Name, sp.label, w.arpFor)
		return
	}
	ignore := maxSysctl(sp, "arp_ignore", a.Name)
	for _, h := range w.lab.holders(w.arpFor) {
		if h.sp != sp {
			continue
		}
		onDev := h.link.Attrs().Index == a.Index
		switch {
		case ignore >= 8:
			w.fail("%s in %s holds %s but has arp_ignore=%d: it never answers ARP", a.Name, sp.label, w.arpFor, ignore)
			return
		case onDev || ignore == 0:
			w.arpAns = &arpAnswer{sp: sp, link: ln}
			return
		default:
			w.fail("%s in %s holds %s on %s, not on %s, and arp_ignore=%d: it does not answer", sp.label, sp.label, w.arpFor, h.link.Attrs().Name, a.Name, ignore)
			return
		}
	}
	w.fail("the ARP request for %s reaches %s in %s, which does not hold that address", w.arpFor, a.Name, sp.label)
}

// maxSysctl returns max(net.ipv4.conf.all.KEY, net.ipv4.conf.DEV.KEY).
func maxSysctl(sp *space, key, dev string) int {
	best := 0
	for _, d := range []string{"all", dev} {
		v, err := topo.ReadSysctl(sp.ns, "net.ipv4.conf."+d+"."+key)
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > best {
			best = n
		}
	}
	return best
}

// bridge forwards frame pkt in bridge br (in: the port it came in on; nil
// when the bridge device itself sends).
func (w *walker) bridge(sp *space, br netlink.Link, in netlink.Link, pkt *packet) {
	ba := br.Attrs()
	from := "sent by the bridge itself"
	if in != nil {
		from = in.Attrs().Name + " is a port of " + ba.Name
	}
	if macEqual(pkt.dstMAC, ba.HardwareAddr) && in != nil {
		w.hop(sp, "bridge", "%s; %s is the bridge's own MAC: up to %s's stack", from, pkt.dstMAC, ba.Name)
		w.accept(sp, br, pkt)
		return
	}
	ports := w.bridgePorts(sp, ba.Index)
	if !isGroupMAC(pkt.dstMAC) {
		fdb, err := sp.h.NeighListExecute(netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: 0})
		if err == nil {
			for _, e := range fdb {
				if e.MasterIndex != ba.Index || !macEqual(e.HardwareAddr, pkt.dstMAC) {
					continue
				}
				port, err := sp.link(e.LinkIndex)
				if err != nil {
					continue
				}
				if e.State&netlink.NUD_PERMANENT != 0 {
					w.hop(sp, "bridge", "%s; %s is local to %s (port %s's own MAC): up to %s's stack", from, pkt.dstMAC, ba.Name, port.Attrs().Name, ba.Name)
					if in == nil {
						w.receive(sp, port, pkt)
					} else {
						w.accept(sp, br, pkt)
					}
					return
				}
				if in != nil && port.Attrs().Index == in.Attrs().Index {
					w.hop(sp, "bridge", "%s; %s is learned on the port it came from: the bridge drops it", from, pkt.dstMAC)
					w.fail("bridge %s in %s has learned %s on %s, the port the frame came in on, and drops it", ba.Name, sp.label, pkt.dstMAC, port.Attrs().Name)
					return
				}
				w.hop(sp, "bridge", "%s; %s learned on port %s", from, pkt.dstMAC, port.Attrs().Name)
				w.portOut(sp, port, pkt)
				return
			}
		}
	}
	// Flood: every port but the one it came from (and the bridge itself
	// for broadcasts).
	var branches []*walker
	var names []string
	for _, p := range ports {
		if in != nil && p.Attrs().Index == in.Attrs().Index {
			continue
		}
		b := w.fork()
		b.portOut(sp, p, pkt.clone())
		branches = append(branches, b)
		names = append(names, p.Attrs().Name)
	}
	if in != nil && isGroupMAC(pkt.dstMAC) {
		b := w.fork()
		b.accept(sp, br, pkt.clone())
		branches = append(branches, b)
		names = append(names, ba.Name+" (itself)")
	}
	what := "not learned"
	if isGroupMAC(pkt.dstMAC) {
		what = "a group address"
	}
	if len(branches) == 0 {
		w.hop(sp, "bridge", "%s; %s is %s and there is no other port", from, pkt.dstMAC, what)
		w.fail("bridge %s in %s has no port to send the frame for %s to", ba.Name, sp.label, pkt.dstMAC)
		return
	}
	best := branches[0]
	bi := 0
	for i, b := range branches[1:] {
		if b.score() > best.score() {
			best, bi = b, i+1
		}
	}
	w.hop(sp, "bridge", "%s; %s is %s: flooded to %s; following %s", from, pkt.dstMAC, what, strings.Join(names, ", "), names[bi])
	w.adopt(best)
}

func (w *walker) bridgePorts(sp *space, br int) []netlink.Link {
	links, err := sp.h.LinkList()
	if err != nil {
		return nil
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex == br {
			out = append(out, l)
		}
	}
	return out
}

// portOut sends a frame the bridge forwards out of port.
func (w *walker) portOut(sp *space, port netlink.Link, pkt *packet) {
	if mtu := port.Attrs().MTU; mtu > 0 && pkt.size > mtu {
		w.fail("the packet is %d bytes but bridge port %s in %s has MTU %d: the bridge drops it", pkt.size, port.Attrs().Name, sp.label, mtu)
		return
	}
	w.xmit(sp, port, pkt)
}

// encap sends frame pkt into VXLAN device vx.
func (w *walker) encap(sp *space, vx *netlink.Vxlan, pkt *packet) {
	a := vx.Attrs()
	sock := w.lab.peerSpace(sp, a.NetNsID)
	if sock == nil {
		w.fail("%s in %s is a VXLAN device whose socket lives outside the lab", a.Name, sp.label)
		return
	}
	port := vx.Port
	if port == 0 {
		port = 8472
	}
	var remote netip.Addr
	var vni uint32
	switch {
	case vx.FlowBased:
		if pkt.tunnel == nil {
			w.hop(sp, "vxlan", "%s: collect-metadata VXLAN, UDP %d, socket in %s; no tunnel key on the packet", a.Name, port, sock.label)
			w.fail("%s in %s is a collect-metadata VXLAN device and nothing set a tunnel key on the packet: the kernel drops it", a.Name, sp.label)
			return
		}
		remote, vni = pkt.tunnel.remote, pkt.tunnel.vni
		w.hop(sp, "vxlan", "%s: collect-metadata VXLAN, UDP %d, socket in %s; tunnel key from BPF: remote %s, VNI %d", a.Name, port, sock.label, remote, vni)
	default:
		vni = uint32(vx.VxlanId)
		if r, ok := netip.AddrFromSlice(vx.Group); ok && len(vx.Group) > 0 && !r.Unmap().IsUnspecified() && !r.Unmap().IsMulticast() {
			remote = r.Unmap()
		} else if r, ok := w.vxlanFDB(sp, vx, pkt.dstMAC); ok {
			remote = r
		} else {
			w.hop(sp, "vxlan", "%s: VXLAN VNI %d, UDP %d, socket in %s; no remote for %s", a.Name, vni, port, sock.label, pkt.dstMAC)
			w.fail("%s in %s has no remote (nor forwarding entry) for %s: the frame goes nowhere", a.Name, sp.label, pkt.dstMAC)
			return
		}
		w.hop(sp, "vxlan", "%s: VXLAN VNI %d, UDP %d, remote %s, socket in %s", a.Name, vni, port, remote, sock.label)
	}
	outer := &packet{proto: unix.IPPROTO_UDP, dst: remote, sport: 49152, dport: uint16(port),
		size: pkt.size + 50, inner: pkt.clone(), vni: vni, ttl: 64, fragOK: true}
	if !vx.FlowBased {
		// Collect-metadata devices take DF from the tunnel key, which
		// podlab's datapath leaves clear; classic ones from IFLA_VXLAN_DF.
		df, err := vxlanDF(sp, a.Index)
		if err != nil {
			w.fail("%v", err)
			return
		}
		switch df {
		case dfSet:
			outer.fragOK, outer.dfFrom = false, a.Name+" sets DF on its outer header (df set)"
		case dfInherit:
			outer.fragOK = pkt.fragOK
			if !outer.fragOK {
				outer.dfFrom = a.Name + " copies the inner packet's DF to its outer header (df inherit)"
			}
		}
	}
	if l, ok := netip.AddrFromSlice(vx.SrcAddr); ok && len(vx.SrcAddr) > 0 && !l.Unmap().IsUnspecified() {
		outer.src = l.Unmap()
	}
	if w.reached == "" {
		w.localOut(sock, outer)
	}
}

// vxlanFDB finds the remote of mac (or the default entry) in a VXLAN
// device's forwarding table.
func (w *walker) vxlanFDB(sp *space, vx *netlink.Vxlan, mac net.HardwareAddr) (netip.Addr, bool) {
	fdb, err := sp.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return netip.Addr{}, false
	}
	var def netip.Addr
	for _, e := range fdb {
		ip, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		if macEqual(e.HardwareAddr, mac) {
			return ip.Unmap(), true
		}
		if e.HardwareAddr.String() == "00:00:00:00:00:00" {
			def = ip.Unmap()
		}
	}
	return def, def.IsValid()
}

// input is the IP layer of sp receiving pkt on ln.
func (w *walker) input(sp *space, ln netlink.Link, pkt *packet) {
	if w.done() || !w.step() {
		return
	}
	a := ln.Attrs()
	opts := &netlink.RouteGetOptions{IifIndex: a.Index}
	if pkt.src.IsValid() {
		opts.SrcAddr = pkt.src.AsSlice()
	}
	rts, err := sp.h.RouteGetWithOptions(pkt.dst.AsSlice(), opts)
	if err != nil || len(rts) == 0 {
		w.inputError(sp, ln, pkt, err)
		return
	}
	rt := rts[0]
	if rt.Type == unix.RTN_LOCAL {
		w.deliver(sp, ln, pkt)
		return
	}
	w.output(sp, pkt, rt, true)
}

func (w *walker) inputError(sp *space, ln netlink.Link, pkt *packet, err error) {
	a := ln.Attrs()
	switch {
	case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL):
		// The kernel rejects a martian source; reverse-path filtering is
		// the usual cause.
		rp := maxSysctl(sp, "rp_filter", a.Name)
		var back netlink.Link
		if rts, err := sp.h.RouteGet(pkt.src.AsSlice()); err == nil && len(rts) > 0 {
			back, _ = sp.link(rts[0].LinkIndex)
		}
		switch {
		case rp == 1 && back != nil && back.Attrs().Index != a.Index:
			w.hop(sp, "route", "%s arriving on %s from %s: rejected by reverse-path filtering (rp_filter=1)", pkt.dst, a.Name, pkt.src)
			w.fail("strict reverse-path filtering (rp_filter=1) in %s drops the packet from %s arriving on %s: the route back to %s leaves by %s",
				sp.label, pkt.src, a.Name, pkt.src, back.Attrs().Name)
		case rp > 0 && back == nil:
			w.hop(sp, "route", "%s arriving on %s from %s: rejected by reverse-path filtering (rp_filter=%d)", pkt.dst, a.Name, pkt.src, rp)
			w.fail("reverse-path filtering (rp_filter=%d) in %s drops the packet from %s arriving on %s: there is no route back to %s",
				rp, sp.label, pkt.src, a.Name, pkt.src)
		default:
			w.hop(sp, "route", "%s arriving on %s from %s: martian source (%s)", pkt.dst, a.Name, pkt.src, errText(err))
			w.fail("%s treats %s, the source of the packet arriving on %s, as a martian and drops it", sp.label, pkt.src, a.Name)
		}
	case errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH):
		fwd, _ := topo.ReadSysctl(sp.ns, "net.ipv4.conf."+a.Name+".forwarding")
		if strings.TrimSpace(fwd) == "0" {
			w.hop(sp, "forward", "%s arriving on %s: %s does not forward (forwarding=0 on %s)", pkt.dst, a.Name, sp.label, a.Name)
			w.fail("%s receives the packet for %s on %s but does not forward (net.ipv4.ip_forward / conf.%s.forwarding is 0)", sp.label, pkt.dst, a.Name, a.Name)
			return
		}
		w.hop(sp, "forward", "%s arriving on %s: no route (%s)", pkt.dst, a.Name, errText(err))
		w.fail("%s has no route to %s for the packet arriving on %s%s", sp.label, pkt.dst, a.Name, w.downHint(sp, pkt.dst))
	default:
		w.hop(sp, "route", "%s arriving on %s: %s", pkt.dst, a.Name, errText(err))
		w.fail("%s rejects the packet for %s arriving on %s: %s", sp.label, pkt.dst, a.Name, errText(err))
	}
}

// deliver handles a packet for a local address of sp.
func (w *walker) deliver(sp *space, ln netlink.Link, pkt *packet) {
	dev := "lo"
	if ln != nil {
		dev = ln.Attrs().Name
	}
	if pkt.inner != nil {
		w.decap(sp, pkt)
		return
	}
	if pkt.proto == unix.IPPROTO_ICMP && pkt.icmpType == 8 {
		if v, err := topo.ReadSysctl(sp.ns, "net.ipv4.icmp_echo_ignore_all"); err == nil && strings.TrimSpace(v) == "1" {
			w.hop(sp, "deliver", "%s is local on %s, but icmp_echo_ignore_all=1", pkt.dst, dev)
			w.fail("%s receives the echo request but ignores pings (net.ipv4.icmp_echo_ignore_all=1)", sp.label)
			return
		}
	}
	if (pkt.proto == unix.IPPROTO_TCP || pkt.proto == unix.IPPROTO_UDP) && !pkt.reply {
		ok, err := listening(sp, pkt.proto, pkt.dst, pkt.dport)
		if err != nil {
			w.fail("%v", err)
			return
		}
		if !ok {
			answer := "a reset (connection refused)"
			if pkt.proto == unix.IPPROTO_UDP {
				answer = "ICMP port unreachable"
			}
			w.hop(sp, "deliver", "%s is local in %s (received on %s), but no socket listens on %s", pkt.dst, sp.label, dev, l4Text(pkt))
			w.fail("the packet reaches %s in %s, but nothing listens on %s there: the kernel answers with %s", pkt.dst, sp.label, l4Text(pkt), answer)
			return
		}
	}
	w.hop(sp, "deliver", "%s is local in %s: delivered (received on %s)", pkt.dst, sp.label, dev)
	w.reached = fmt.Sprintf("%s in %s (%s)", pkt.dst, sp.label, dev)
	w.reachSp, w.final = sp, pkt
}

// decap hands an arriving VXLAN packet to the device whose socket listens
// on its port.
func (w *walker) decap(sp *space, outer *packet) {
	type cand struct {
		sp *space
		vx *netlink.Vxlan
	}
	var onPort, other []cand
	for _, o := range w.lab.spaces {
		links, err := o.h.LinkList()
		if err != nil {
			continue
		}
		for _, l := range links {
			vx, ok := l.(*netlink.Vxlan)
			if !ok || w.lab.peerSpace(o, vx.Attrs().NetNsID) != sp {
				continue
			}
			port := vx.Port
			if port == 0 {
				port = 8472
			}
			if uint16(port) == outer.dport {
				onPort = append(onPort, cand{o, vx})
			} else {
				other = append(other, cand{o, vx})
			}
		}
	}
	if len(onPort) == 0 {
		var ports []string
		for _, c := range other {
			ports = append(ports, fmt.Sprintf("%s in %s uses UDP %d", c.vx.Attrs().Name, c.sp.label, c.vx.Port))
		}
		hint := "no VXLAN device has its socket there"
		if len(ports) > 0 {
			hint = strings.Join(ports, ", ")
		}
		w.hop(sp, "vxlan", "VXLAN packet (VNI %d) for UDP %d arrives in %s: nothing listens on that port", outer.vni, outer.dport, sp.label)
		w.fail("the VXLAN packet reaches %s on UDP port %d, but nothing listens there (%s): the kernel answers ICMP port unreachable", sp.label, outer.dport, hint)
		return
	}
	for _, c := range onPort {
		if !c.vx.FlowBased && uint32(c.vx.VxlanId) != outer.vni {
			continue
		}
		a := c.vx.Attrs()
		w.hop(sp, "vxlan", "UDP %d in %s is the socket of %s in %s (VNI %d): decapsulated", outer.dport, sp.label, a.Name, c.sp.label, outer.vni)
		inner := outer.inner.clone()
		inner.tunnel = &tunnelMeta{remote: outer.src, vni: outer.vni}
		w.receive(c.sp, c.vx, inner)
		return
	}
	c := onPort[0]
	w.hop(sp, "vxlan", "UDP %d in %s belongs to %s in %s with VNI %d, not %d", outer.dport, sp.label, c.vx.Attrs().Name, c.sp.label, c.vx.VxlanId, outer.vni)
	w.fail("the VXLAN packet carries VNI %d but %s in %s (the device on UDP %d) has VNI %d: the kernel drops it", outer.vni, c.vx.Attrs().Name, c.sp.label, outer.dport, c.vx.VxlanId)
}
