package trace

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/topo"
)

// attachedProgram is a BPF program on one hook of a device.
type attachedProgram struct {
	id   ebpf.ProgramID
	name string
	via  string // tcx or tc
}

// programs lists the BPF programs on a hook of ln: tcx links first (they
// run first), then classic tc bpf filters.
func programs(sp *space, ln netlink.Link, ingress bool) ([]attachedProgram, error) {
	var out []attachedProgram
	at := ebpf.AttachTCXEgress
	if ingress {
		at = ebpf.AttachTCXIngress
	}
	var ids []ebpf.ProgramID
	err := topo.Do(sp.ns, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ln.Attrs().Index, Attach: at})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("query tcx programs on %s in %s: %w", ln.Attrs().Name, sp.label, err)
	}
	for _, id := range ids {
		out = append(out, attachedProgram{id: id, name: datapath.ProgramName(id), via: "tcx"})
	}
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	filters, err := sp.h.FilterList(ln, parent)
	if err != nil {
		return nil, fmt.Errorf("list tc filters on %s in %s: %w", ln.Attrs().Name, sp.label, err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Id > 0 {
			out = append(out, attachedProgram{id: ebpf.ProgramID(bf.Id), name: datapath.ProgramName(ebpf.ProgramID(bf.Id)), via: "tc"})
		}
	}
	return out, nil
}

// hooks runs what sits on a hook of ln (BPF programs, then tc mirred
// filters) and reports whether the packet was taken away (redirected or
// dropped).
func (w *walker) hooks(sp *space, ln netlink.Link, ingress bool, pkt *packet) bool {
	hook := "egress"
	if ingress {
		hook = "ingress"
	}
	name := ln.Attrs().Name
	progs, err := programs(sp, ln, ingress)
	if err != nil {
		w.fail("%v", err)
		return true
	}
	for _, p := range progs {
		role := datapath.ProgramRole(p.name)
		if role == "" {
			w.hop(sp, "bpf", "%s %s: %s program %s (id %d): not a podlab datapath program, its verdict is not computed", name, hook, p.via, p.name, p.id)
			continue
		}
		if pkt.arp {
			w.hop(sp, "bpf", "%s %s: %s (id %d) passes ARP to the stack", name, hook, role, p.id)
			continue
		}
		if w.bpf(sp, ln, hook, p, role, pkt) {
			return true
		}
	}
	ms, err := topo.ListMirred(sp.h, name)
	if err != nil {
		w.hop(sp, "tc", "%s: cannot list tc filters: %v", name, err)
		return false
	}
	for _, m := range ms {
		if string(m.Hook) != hook {
			continue
		}
		w.hop(sp, "tc", "%s %s: u32 match-all, mirred %s to %s %s (%d packets so far)", name, hook, m.Mode, m.To, m.ToHook, m.Packets)
		target, err := sp.linkByName(m.To)
		if err != nil {
			w.fail("tc on %s in %s redirects to %s, which does not exist", name, sp.label, m.To)
			return true
		}
		if m.Mode == topo.MirredMirror {
			continue
		}
		if m.ToHook == topo.HookIngress {
			w.receive(sp, target, pkt)
		} else {
			w.xmit(sp, target, pkt)
		}
		return true
	}
	return false
}

// bpf judges pkt with a dry run of the attached program p.
func (w *walker) bpf(sp *space, ln netlink.Link, hook string, p attachedProgram, role string, pkt *packet) bool {
	name := ln.Attrs().Name
	frame, err := craft(pkt)
	if err != nil {
		w.fail("cannot craft the packet for %s on %s: %v", role, name, err)
		return true
	}
	in := datapath.DryRunInput{ProgramID: p.id, Role: role, NS: sp.ns, Ifindex: ln.Attrs().Index, Packet: frame, Mark: pkt.mark}
	if pkt.tunnel != nil {
		in.TunnelID, in.TunnelRemote = pkt.tunnel.vni, pkt.tunnel.remote
	}
	node := ""
	if sp.role == RoleNode {
		// A program's object leaves out the maps its code never uses
		// (from-overlay has no ipcache): take those from the node's pins.
		node = sp.node
		in.Lab, in.Node = w.lab.Name, sp.node
	}
	live, err := w.lab.liveMaps(p.id, node)
	if err != nil {
		w.fail("%s on %s in %s: %v", role, name, sp.label, err)
		return true
	}
	in.Carry = w.ct
	res, err := w.lab.runner.Run(in)
	if err != nil {
		w.fail("%s on %s in %s: %v", role, name, sp.label, err)
		return true
	}
	if len(res.Written) > 0 {
		carry := map[ebpf.MapID][]datapath.MapRecord{}
		for id, recs := range w.ct {
			carry[id] = recs
		}
		for id, recs := range res.Written {
			carry[id] = recs
		}
		w.ct = carry
	}
	code := ""
	if !res.SameCode {
		code = "; note: the attached program's code differs from this podlab's, the verdict may differ"
	}
	verdict := map[uint32]string{datapath.ActOK: "pass to the stack", datapath.ActShot: "DROP", datapath.ActRedirect: "redirect"}[res.Verdict]
	if verdict == "" {
		verdict = fmt.Sprintf("TC action %d", res.Verdict)
	}
	// What the program made of the packet: a service frontend becomes its
	// backend (lb_translate), a reply gets its frontend back.
	xl := pkt.clone()
	var nat []string
	if ip, port, sip, sport, ok := ipv4Tuple(res.Packet, pkt.proto); ok {
		if ip != pkt.dst || (pkt.proto != unix.IPPROTO_ICMP && port != pkt.dport) {
			nat = append(nat, fmt.Sprintf("%s translates %s to %s", role, endpointText(pkt.dst, pkt.dport, pkt.proto), endpointText(ip, port, pkt.proto)))
			xl.dst, xl.dport = ip, port
		}
		if sip != pkt.src || (pkt.proto != unix.IPPROTO_ICMP && sport != pkt.sport) {
			nat = append(nat, fmt.Sprintf("%s rewrites the source %s to %s", role, endpointText(pkt.src, pkt.sport, pkt.proto), endpointText(sip, sport, pkt.proto)))
			xl.src, xl.sport = sip, sport
		}
	}
	var drop *datapath.DropEvent
	var target *datapath.TraceEvent
	var notes []string
	for _, ev := range res.Events {
		switch e := ev.(type) {
		case *datapath.DropEvent:
			drop = e
		case *datapath.TraceEvent:
			if e.TargetIfindex != 0 || e.ObsPoint == datapath.ObsToStack {
				target = e
			}
		case *datapath.PolicyVerdictEvent:
			notes = append(notes, w.policyLine(sp, live, xl, e))
		}
	}
	detail := ""
	switch {
	case drop != nil:
		detail = fmt.Sprintf(": %s (%s, %s)", drop.Reason.Text(), drop.Reason.Name(), drop.Direction)
	case target != nil && target.ObsPoint == datapath.ObsToStack && res.Verdict == datapath.ActOK:
		detail = fmt.Sprintf(" (%s, identity %d -> %d)", target.Direction, target.SrcIdentity, target.DstIdentity)
	case target != nil:
		detail = fmt.Sprintf(" %s (%s, identity %d -> %d)", target.ObsPoint, target.Direction, target.SrcIdentity, target.DstIdentity)
	}
	w.hop(sp, "bpf", "%s %s: %s (%s id %d, dry run on a copy, %d conntrack entries seeded): %s%s%s",
		name, hook, role, p.via, p.id, res.Seeded, verdict, detail, code)
	for _, n := range nat {
		w.hop(sp, "service", "%s", n)
	}
	for _, n := range notes {
		w.hop(sp, "policy", "%s", n)
	}
	switch res.Verdict {
	case datapath.ActOK:
		pkt.mark = res.Mark
		pkt.dst, pkt.dport, pkt.src, pkt.sport = xl.dst, xl.dport, xl.src, xl.sport
		return false
	case datapath.ActShot:
		reason := "dropped"
		if drop != nil {
			reason = fmt.Sprintf("%s (%s)", drop.Reason.Text(), drop.Reason.Name())
		}
		pol := ""
		if len(notes) > 0 {
			pol = "; policy: " + notes[len(notes)-1]
		}
		w.fail("%s on %s %s in %s drops the packet: %s%s", role, name, hook, sp.label, reason, pol)
		return true
	case datapath.ActRedirect:
	default:
		w.fail("%s on %s in %s returns TC action %d, which trace does not follow", role, name, sp.label, res.Verdict)
		return true
	}
	out := xl
	if len(res.Packet) >= 12 {
		out.dstMAC = append(net.HardwareAddr(nil), res.Packet[0:6]...)
		out.srcMAC = append(net.HardwareAddr(nil), res.Packet[6:12]...)
		if !macEqual(out.dstMAC, pkt.dstMAC) {
			out.neigh = nil
		}
	}
	out.mark = res.Mark
	if target != nil && target.ObsPoint == datapath.ObsToNetwork {
		// bpf_redirect_neigh: the kernel routes the packet out of the
		// device and fills in the MACs from its neighbour table.
		w.redirectNeigh(sp, role, int(target.TargetIfindex), out)
		return true
	}
	if target == nil || target.TargetIfindex == 0 {
		w.fail("%s on %s in %s redirects the packet but its trace event names no target", role, name, sp.label)
		return true
	}
	tl, err := sp.link(int(target.TargetIfindex))
	if err != nil {
		w.fail("%s on %s in %s redirects to ifindex %d, which does not exist", role, name, sp.label, target.TargetIfindex)
		return true
	}
	switch {
	case res.TunnelSet:
		out.tunnel = &tunnelMeta{remote: res.TunnelRemote, vni: res.TunnelID}
	case target.ObsPoint == datapath.ObsToOverlay:
		// The program's object cannot report the key it set: it is the
		// ipcache's tunnel endpoint of the destination, with the source
		// identity as VNI (bpf/lib/deliver.h redirect_to_overlay).
		if e, ok, err := live.IPCache(out.dst); err == nil && ok && e.Tunnel.IsValid() {
			out.tunnel = &tunnelMeta{remote: e.Tunnel, vni: uint32(target.SrcIdentity)}
		}
	}
	switch {
	case target.ObsPoint == datapath.ObsToEndpoint && res.Mark != datapath.MarkJudged:
		// bpf_redirect_peer: straight into the peer's ingress.
		a := tl.Attrs()
		peerSp := w.lab.peerSpace(sp, a.NetNsID)
		if peerSp == nil {
			w.fail("%s redirects into the peer of %s, which is outside the lab", role, a.Name)
			return true
		}
		peer, err := peerSp.link(a.ParentIndex)
		if err != nil {
			w.fail("%s redirects into the peer of %s in %s: %v", role, a.Name, sp.label, err)
			return true
		}
		w.hop(sp, "dev", "redirect_peer into %s's peer %s in %s", a.Name, peer.Attrs().Name, peerSp.label)
		w.receive(peerSp, peer, out)
	default:
		w.xmit(sp, tl, out)
	}
	return true
}

// redirectNeigh follows a bpf_redirect_neigh out of ifindex (0: where the
// route says): a route lookup for the packet's new destination, then the
// neighbour of its next hop, as the kernel does for the program.
func (w *walker) redirectNeigh(sp *space, role string, ifindex int, pkt *packet) {
	opts := &netlink.RouteGetOptions{OifIndex: ifindex}
	rts, err := sp.h.RouteGetWithOptions(pkt.dst.AsSlice(), opts)
	if err != nil || len(rts) == 0 {
		w.fail("%s redirects the packet for %s out of ifindex %d in %s, but there is no route for it there (%s)", role, pkt.dst, ifindex, sp.label, errText(err))
		return
	}
	pkt.neigh = nil
	w.hop(sp, "bpf", "%s sends it with bpf_redirect_neigh: routed and resolved by the kernel", role)
	w.output(sp, pkt, rts[0], false)
}

// policyLine explains a policy verdict event with the entry that decided
// it.
func (w *walker) policyLine(sp *space, live *datapath.LiveMaps, pkt *packet, e *datapath.PolicyVerdictEvent) string {
	ingress := e.Direction == datapath.DirectionIngress
	epIP, remote := pkt.src, e.DstIdentity
	dir := "egress"
	peerWord := "to"
	if ingress {
		epIP, remote, dir, peerWord = pkt.dst, e.SrcIdentity, "ingress", "from"
	}
	verdict := "denied"
	if e.Allowed {
		verdict = "allowed"
	}
	line := fmt.Sprintf("%s of %s (endpoint %d) %s identity %s, %s: %s (%s)", dir, w.lab.podOf(epIP), e.EndpointID, peerWord,
		w.lab.identityName(live, remote), l4Text(pkt), verdict, e.Match)
	ep, ok, err := live.Endpoint(epIP)
	if err != nil || !ok {
		return line
	}
	d, err := live.Policy(ep, ingress, identity.ID(remote), pkt.proto, pkt.l4port())
	if err != nil {
		return line
	}
	return line + "; deciding entry: " + d.String()
}

func l4Text(p *packet) string {
	switch p.proto {
	case unix.IPPROTO_ICMP:
		return fmt.Sprintf("ICMP type %d", p.icmpType)
	case unix.IPPROTO_TCP:
		return fmt.Sprintf("TCP/%d", p.dport)
	case unix.IPPROTO_UDP:
		return fmt.Sprintf("UDP/%d", p.dport)
	}
	return fmt.Sprintf("proto %d", p.proto)
}

// identityName renders a security identity with what holds it: a reserved
// name, or the pods whose addresses map to it in the ipcache or endpoints.
func (l *Lab) identityName(live *datapath.LiveMaps, id identity.ID) string {
	if n := identity.ReservedName(id); n != "" {
		return fmt.Sprintf("%d (%s)", id, n)
	}
	var pods []string
	for _, p := range l.State.Pods {
		a, err := netip.ParseAddr(p.IP)
		if err != nil {
			continue
		}
		if ep, ok, _ := live.Endpoint(a); ok && ep.Identity == id {
			pods = append(pods, p.Namespace+"/"+p.Name)
			continue
		}
		if e, ok, _ := live.IPCache(a); ok && e.Identity == id && e.Prefix.Bits() == 32 {
			pods = append(pods, p.Namespace+"/"+p.Name)
		}
	}
	if len(pods) == 0 {
		return fmt.Sprint(id)
	}
	if len(pods) > 3 {
		pods = append(pods[:3], fmt.Sprintf("%d more", len(pods)-3))
	}
	return fmt.Sprintf("%d (%s)", id, strings.Join(pods, ", "))
}

// podOf names the pod holding ip, or the address itself.
func (l *Lab) podOf(ip netip.Addr) string {
	for _, p := range l.State.Pods {
		if p.IP == ip.String() {
			return p.Namespace + "/" + p.Name
		}
	}
	return ip.String()
}

// ipv4Tuple reads the addresses and ports of an Ethernet/IPv4 frame.
func ipv4Tuple(b []byte, proto uint8) (dst netip.Addr, dport uint16, src netip.Addr, sport uint16, ok bool) {
	if len(b) < 34 || b[12] != 0x08 || b[13] != 0x00 {
		return
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	if (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && len(ip) >= ihl+4 {
		sport = uint16(ip[ihl])<<8 | uint16(ip[ihl+1])
		dport = uint16(ip[ihl+2])<<8 | uint16(ip[ihl+3])
	}
	return dst, dport, src, sport, true
}

func endpointText(a netip.Addr, port uint16, proto uint8) string {
	if proto == unix.IPPROTO_ICMP || port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// craft builds the Ethernet frame of pkt.
func craft(p *packet) ([]byte, error) {
	if !p.src.Is4() || !p.dst.Is4() {
		return nil, fmt.Errorf("only IPv4 packets can be crafted (%s > %s)", p.src, p.dst)
	}
	src, dst := p.srcMAC, p.dstMAC
	if len(src) != 6 {
		src = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	}
	if len(dst) != 6 {
		dst = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ttl := p.ttl
	if ttl <= 0 || ttl > 255 {
		ttl = 64
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: uint8(ttl), Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocol(p.proto),
		SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Id: 0x5054}
	var l4 []gopacket.SerializableLayer
	hdr := 20
	switch p.proto {
	case unix.IPPROTO_ICMP:
		l4 = append(l4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.icmpType, 0), Id: p.sport, Seq: 1})
		hdr += 8
	case unix.IPPROTO_TCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Seq: 1, Window: 64240, DataOffset: 5}
		if p.reply { // the server's SYN-ACK
			t.SYN, t.ACK, t.Ack = true, true, 2
		} else {
			t.SYN = true
		}
		_ = t.SetNetworkLayerForChecksum(ip)
		l4 = append(l4, t)
		hdr += 20
	case unix.IPPROTO_UDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		l4 = append(l4, u)
		hdr += 8
	default:
		return nil, fmt.Errorf("protocol %d cannot be crafted", p.proto)
	}
	pad := p.size - hdr
	if pad < 0 {
		pad = 0
	}
	if pad > 9000 {
		pad = 9000
	}
	payload := gopacket.Payload(make([]byte, pad))
	buf := gopacket.NewSerializeBuffer()
	ls := append([]gopacket.SerializableLayer{eth, ip}, l4...)
	ls = append(ls, payload)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("serialize %s: %w", p.describe(), err)
	}
	return buf.Bytes(), nil
}
