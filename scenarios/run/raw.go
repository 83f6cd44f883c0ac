package run

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"
)

// A scenario with a Topology document runs on a raw lab: the topology's
// namespaces and devices, no cluster, no datapath. The runner's common
// paths (steps, probes, captures, packet assertions, run folder) call into
// the functions of this file when r.s.Topology is set.

// setupRaw brings the scenario's topology up as lab o.Lab (its Down runs
// with the lab's teardown), waits until its veths carry traffic and starts
// the scenario-wide captures.
func (r *Runner) setupRaw(ctx context.Context) error {
	if r.o.Datapath != "" && r.o.Datapath != scenarios.DatapathNone {
		return fmt.Errorf("scenario %s runs on a raw topology, which has no datapath (--datapath=%s)", r.s.Name, r.o.Datapath)
	}
	l, err := lab.UpSpec(ctx, r.o.Lab, r.s.Topology, strings.Join(r.s.Files, ","), nil, r.o.Log)
	if err != nil {
		return err
	}
	r.lab = l
	if err := r.waitRawLinks(ctx, 5*time.Second); err != nil {
		return err
	}
	for _, d := range r.s.Captures {
		cs, err := r.startCaptures(ctx, d)
		if err != nil {
			return err
		}
		r.captures = append(r.captures, cs...)
	}
	return nil
}

// waitRawLinks waits until every veth end the topology leaves up reports
// operational state up: a fresh veth drops what it is given until the
// kernel's link watcher has activated it.
func (r *Runner) waitRawLinks(ctx context.Context, timeout time.Duration) error {
	down := map[string]bool{}
	for _, l := range r.s.Topology.Links {
		if l.A.Down || l.B.Down {
			down[l.A.NS+"/"+l.A.Name] = true
			down[l.B.NS+"/"+l.B.Name] = true
		}
	}
	handles := map[string]*netlink.Handle{}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	deadline := time.Now().Add(timeout)
	for _, d := range r.lab.Raw.Devices() {
		if d.Kind != topo.DeviceVeth || down[d.Namespace+"/"+d.Name] {
			continue
		}
		h := handles[d.Namespace]
		if h == nil {
			ns, err := r.rawNS(d.Namespace)
			if err != nil {
				return err
			}
			if h, err = ns.Handle(); err != nil {
				return err
			}
			handles[d.Namespace] = h
		}
		for {
			l, err := h.LinkByName(d.Name)
			if err != nil {
				return fmt.Errorf("wait for %s/%s: %w", d.Namespace, d.Name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s/%s not up after %s", d.Namespace, d.Name, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// rawUpLine describes the raw lab once it is up.
func (r *Runner) rawUpLine() string {
	return fmt.Sprintf("lab %q up: topology %s, %d namespaces, %d devices", r.o.Lab, r.s.Topology.Metadata.Name, len(r.s.Topology.Namespaces), len(r.lab.Raw.Devices()))
}

// rawNS returns a namespace of the raw lab by its topology name.
func (r *Runner) rawNS(short string) (*topo.Namespace, error) {
	if r.lab == nil || r.lab.Raw == nil {
		return nil, errors.New("no raw lab")
	}
	ns, ok := r.lab.Raw.Namespace(short)
	if !ok {
		return nil, fmt.Errorf("no namespace %q in lab %s", short, r.o.Lab)
	}
	return ns, nil
}

// rawDevice returns the namespace and name of a raw device.
func (r *Runner) rawDevice(d scenarios.Device) (*topo.Namespace, string, error) {
	ns, err := r.rawNS(d.Namespace)
	if err != nil {
		return nil, "", fmt.Errorf("device %s: %w", d.Raw, err)
	}
	return ns, d.Name, nil
}

// startRawCapture captures on NAMESPACE/DEVICE; the capture's interface is
// named that way in pcapng files and assertions. Raw devices are captured
// promiscuously only when the scenario asks.
func (r *Runner) startRawCapture(ctx context.Context, d scenarios.Device) ([]*pcap.Capture, error) {
	ns, dev, err := r.rawDevice(d)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", d.Raw, err)
	}
	promisc := d.Promiscuous != nil && *d.Promiscuous
	c, err := pcap.Start(ctx, ns, dev, d.Namespace+"/"+d.Name, pcap.Options{Promiscuous: promisc, Resolver: r})
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", d.Raw, err)
	}
	r.mu.Lock()
	r.allCaps = append(r.allCaps, c)
	r.mu.Unlock()
	return []*pcap.Capture{c}, nil
}

// rawSources returns the namespace a probe runs from.
func (r *Runner) rawSources(p scenarios.Peer) ([]source, error) {
	ns, err := r.rawNS(p.Name)
	if err != nil {
		return nil, err
	}
	ip, _ := r.s.NamespaceAddress(p.Name)
	return []source{{name: "ns/" + p.Name, ns: ns, ip: ip}}, nil
}

// rawTarget returns the address a probe to ns/NAME goes to.
func (r *Runner) rawTarget(p scenarios.Peer) (string, int, error) {
	ip, ok := r.s.NamespaceAddress(p.Name)
	if !ok {
		return "", 0, fmt.Errorf("namespace %s has no IPv4 address", p.Name)
	}
	return ip.String(), 0, nil
}

// rawAddresses resolves names in packet matches of a raw lab: an address,
// or a namespace (ns/NAME or NAME) standing for its addresses.
func (r *Runner) rawAddresses(name string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip}, nil
	}
	if addrs := r.s.NamespaceAddresses(strings.TrimPrefix(name, "ns/")); len(addrs) > 0 {
		return addrs, nil
	}
	return nil, fmt.Errorf("unknown name %q (not an address or a namespace with addresses)", name)
}

// MACOf implements scenarios.MACResolver: the current MAC address of
// NAMESPACE/DEVICE in a raw lab.
func (r *Runner) MACOf(device string) (net.HardwareAddr, error) {
	nsName, dev, ok := strings.Cut(device, "/")
	if !ok {
		return nil, fmt.Errorf("expected NAMESPACE/DEVICE, got %q", device)
	}
	ns, err := r.rawNS(nsName)
	if err != nil {
		return nil, err
	}
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("mac of %s: %w", device, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// serve starts a built-in workload in a raw namespace; it runs until the
// end of the scenario.
func (r *Runner) serve(ctx context.Context, sv *scenarios.ServeStep) error {
	ns, err := r.rawNS(sv.Namespace)
	if err != nil {
		return err
	}
	spec := workload.Spec{Kind: workload.Kind(sv.Workload), Addrs: sv.Addrs, Pod: workload.PodInfo{Name: sv.Namespace}}
	if ip, ok := r.s.NamespaceAddress(sv.Namespace); ok {
		spec.Pod.IP = ip.String()
	}
	for _, p := range sv.Ports {
		spec.Ports = append(spec.Ports, uint16(p))
	}
	w, err := workload.Start(ctx, ns, spec)
	if err != nil {
		return fmt.Errorf("serve %s in %s: %w", sv.Workload, sv.Namespace, err)
	}
	r.mu.Lock()
	r.closers = append(r.closers, w.Close)
	r.mu.Unlock()
	return nil
}

// rawFault runs the faults that only raw labs have: setMAC, sysctl and
// vxlan.
func (r *Runner) rawFault(_ context.Context, f *scenarios.Fault) error {
	if r.s.Topology == nil {
		return fmt.Errorf("%s: needs a raw topology lab", f.Kind)
	}
	switch f.Kind {
	case scenarios.FaultSetMAC:
		return r.setMAC(f)
	case scenarios.FaultSysctl:
		ns, err := r.rawNS(f.Namespace)
		if err != nil {
			return err
		}
		return topo.SetSysctl(ns, f.Key, f.Value)
	case scenarios.FaultVXLAN:
		return r.changeVXLAN(f)
	}
	return fmt.Errorf("fault %s: not supported yet in a raw lab", f.Kind)
}

// setMAC gives a device a new MAC (a literal, or another device's). A
// device the kernel refuses to change while up (EBUSY) is taken down,
// changed and brought up again, with the routes the kernel dropped
// meanwhile put back.
func (r *Runner) setMAC(f *scenarios.Fault) error {
	mac := f.MAC
	if mac == nil {
		m, err := r.MACOf(f.CopyFrom.Namespace + "/" + f.CopyFrom.Name)
		if err != nil {
			return fmt.Errorf("setMAC: %w", err)
		}
		mac = m
	}
	ns, dev, err := r.rawDevice(f.Device)
	if err != nil {
		return err
	}
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	err = topo.LinkSetMAC(h, dev, mac)
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	routes, err := topo.DeviceRoutes(h, dev)
	if err != nil {
		return err
	}
	if err := topo.LinkSetUp(h, dev, false); err != nil {
		return err
	}
	if err := topo.LinkSetMAC(h, dev, mac); err != nil {
		return err
	}
	if err := topo.LinkSetUp(h, dev, true); err != nil {
		return err
	}
	return topo.RestoreRoutes(h, routes)
}

// vxlanDF maps a DF policy to IFLA_VXLAN_DF's values.
var vxlanDF = map[string]uint8{scenarios.DFUnset: 0, scenarios.DFSet: 1, scenarios.DFInherit: 2}

// changeVXLAN applies a vxlan fault: a new UDP port recreates the device
// (the kernel refuses to change it in place), a DF policy is changed in
// place.
func (r *Runner) changeVXLAN(f *scenarios.Fault) error {
	ns, dev, err := r.rawDevice(f.Device)
	if err != nil {
		return err
	}
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("vxlan %s: %w", f.Device.Raw, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return fmt.Errorf("vxlan %s: a %s device, not vxlan", f.Device.Raw, l.Type())
	}
	if f.VXLAN.Port != 0 && f.VXLAN.Port != vx.Port {
		if err := r.recreateVXLAN(ns, h, vx, f.VXLAN.Port, f.Device); err != nil {
			return err
		}
	}
	if f.VXLAN.DF != "" {
		return setVXLANDF(ns, dev, vxlanDF[f.VXLAN.DF])
	}
	return nil
}

// setVXLANDF changes the outer-header DF policy of a VXLAN device in place
// (IFLA_VXLAN_DF in a changelink request, as `ip link set DEV type vxlan
// df set` sends; the netlink library has no field for it).
func setVXLANDF(ns *topo.Namespace, dev string, df uint8) error {
	return topo.Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("vxlan %s: %w", dev, err)
		}
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(l.Attrs().Index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
		data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
		data.AddRtAttr(unix.IFLA_VXLAN_DF, nl.Uint8Attr(df))
		req.AddData(info)
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("set df %d on vxlan %s in %s: %w", df, dev, ns.Name, err)
		}
		return nil
	})
}

// recreateVXLAN deletes a VXLAN device and creates it again with a new
// UDP port, in the namespace holding its socket (the topology's createIn),
// then restores what deleting it removed: addresses, bridge membership,
// link state, routes, permanent neighbours, the tc mirred rules on it and
// those redirecting to it.
func (r *Runner) recreateVXLAN(ns *topo.Namespace, h *netlink.Handle, vx *netlink.Vxlan, port int, d scenarios.Device) error {
	name := vx.Attrs().Name
	var spec *topo.DeviceSpec
	for i := range r.s.Topology.Namespaces {
		n := &r.s.Topology.Namespaces[i]
		for j := range n.Devices {
			if n.Name == d.Namespace && n.Devices[j].Name == name {
				spec = &n.Devices[j]
			}
		}
	}
	if spec == nil {
		return fmt.Errorf("vxlan %s: not in the topology", d.Raw)
	}
	sockNS := ns
	if spec.CreateIn != "" && spec.CreateIn != d.Namespace {
		s, err := r.rawNS(spec.CreateIn)
		if err != nil {
			return err
		}
		sockNS = s
	}
	// What deleting the device removes.
	addrs, err := h.AddrList(vx, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("vxlan %s: addresses: %w", d.Raw, err)
	}
	routes, err := topo.DeviceRoutes(h, name)
	if err != nil {
		return err
	}
	neighs, err := h.NeighList(vx.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("vxlan %s: neighbours: %w", d.Raw, err)
	}
	var rules, toRules []topo.Mirred
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("vxlan %s: links: %w", d.Raw, err)
	}
	for _, l := range links {
		ms, err := topo.ListMirred(h, l.Attrs().Name)
		if err != nil {
			continue // no clsact on it
		}
		for _, m := range ms {
			switch {
			case l.Attrs().Name == name:
				rules = append(rules, m)
			case m.To == name:
				toRules = append(toRules, m)
			}
		}
	}
	master := vx.Attrs().MasterIndex
	wasUp := vx.Attrs().Flags&net.FlagUp != 0
	if err := h.LinkDel(vx); err != nil {
		return fmt.Errorf("delete vxlan %s: %w", d.Raw, err)
	}
	sh, err := sockNS.Handle()
	if err != nil {
		return err
	}
	defer sh.Close()
	v := topo.VXLAN{Name: name, VNI: uint32(vx.VxlanId), Port: port, Dev: spec.Dev, External: vx.FlowBased,
		MAC: vx.Attrs().HardwareAddr, MTU: vx.Attrs().MTU, Learning: vx.Learning}
	if a, ok := netip.AddrFromSlice(vx.Group); ok && !a.IsUnspecified() {
		v.Remote = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(vx.SrcAddr); ok && !a.IsUnspecified() {
		v.Local = a.Unmap()
	}
	var moveTo *topo.Namespace
	if sockNS != ns {
		moveTo = ns
	}
	idx, err := topo.AddVXLAN(sh, v, moveTo)
	if err != nil {
		return fmt.Errorf("recreate vxlan %s with port %d: %w", d.Raw, port, err)
	}
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: name}}
	var errs []error
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue // the kernel adds it back
		}
		a := a
		a.LinkIndex = idx
		if err := h.AddrReplace(link, &a); err != nil {
			errs = append(errs, fmt.Errorf("restore address %s: %w", a.IPNet, err))
		}
	}
	if master != 0 {
		if err := h.LinkSetMasterByIndex(link, master); err != nil {
			errs = append(errs, fmt.Errorf("attach %s to its bridge again: %w", d.Raw, err))
		}
	}
	if wasUp {
		err = h.LinkSetUp(link)
	} else {
		err = h.LinkSetDown(link)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("set %s up=%v: %w", d.Raw, wasUp, err))
	}
	for i := range routes {
		routes[i].LinkIndex = idx
	}
	errs = append(errs, topo.RestoreRoutes(h, routes))
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		n := n
		n.LinkIndex = idx
		if err := h.NeighSet(&n); err != nil {
			errs = append(errs, fmt.Errorf("restore neighbour %s: %w", n.IP, err))
		}
	}
	for _, m := range rules {
		errs = append(errs, topo.AddMirred(h, m))
	}
	for _, m := range toRules {
		// The rule still names the deleted device's index: replace it.
		errs = append(errs, topo.DeleteMirred(h, m), topo.AddMirred(h, m))
	}
	return errors.Join(errs...)
}

// rawTopology describes the raw lab for the report: each namespace as a
// node (with its first IPv4 address), its devices, the veth links and,
// for VXLAN devices whose socket lives elsewhere, where it does.
func (r *Runner) rawTopology() result.Topology {
	var t result.Topology
	for _, ns := range r.s.Topology.Namespaces {
		n := result.Node{Name: ns.Name}
		if ip, ok := r.s.NamespaceAddress(ns.Name); ok {
			n.IP = ip.String()
		}
		t.Nodes = append(t.Nodes, n)
	}
	addrOf := map[string]string{}
	for _, ns := range r.s.Topology.Namespaces {
		for _, d := range ns.Devices {
			addrOf[ns.Name+"/"+d.Name] = prefixList(d.Addresses)
		}
	}
	for _, l := range r.s.Topology.Links {
		addrOf[l.A.NS+"/"+l.A.Name] = prefixList(l.A.Addresses)
		addrOf[l.B.NS+"/"+l.B.Name] = prefixList(l.B.Addresses)
	}
	seen := map[string]bool{}
	for _, d := range r.lab.Raw.Devices() {
		t.Devices = append(t.Devices, result.Device{Owner: d.Namespace, Name: d.Name, Kind: string(d.Kind), Address: addrOf[d.Namespace+"/"+d.Name]})
		switch {
		case d.Kind == topo.DeviceVeth && d.PeerName != "":
			a, b := d.Namespace+":"+d.Name, d.PeerNamespace+":"+d.PeerName
			if a > b {
				a, b = b, a
			}
			if !seen[a+"|"+b] {
				seen[a+"|"+b] = true
				t.Links = append(t.Links, result.Link{A: a, B: b, Kind: "veth"})
			}
		case d.Kind == topo.DeviceVXLAN && d.SocketNamespace != "" && d.SocketNamespace != d.Namespace:
			t.Links = append(t.Links, result.Link{A: d.Namespace + ":" + d.Name, B: d.SocketNamespace + ":(vxlan socket)", Kind: "x-netns"})
		}
		if d.Master != "" {
			t.Links = append(t.Links, result.Link{A: d.Namespace + ":" + d.Name, B: d.Namespace + ":" + d.Master, Kind: "bridge-port"})
		}
	}
	sort.SliceStable(t.Links, func(i, j int) bool { return t.Links[i].A < t.Links[j].A })
	return t
}

func prefixList(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, ",")
}
