package topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// MaxIfName is the longest interface name the kernel accepts (IFNAMSIZ-1).
const MaxIfName = 15

// VethEnd describes one end of a veth pair.
type VethEnd struct {
	Name string
	MAC  net.HardwareAddr // nil: kernel-chosen
	MTU  int              // 0: kernel default
}

// AddVeth creates a veth pair whose first end lives in the namespace of h and
// whose peer is created directly inside peerNS (nil: same namespace as h).
// Creating the peer in place avoids moving it, which costs an RCU grace
// period per move. The local end is brought up; the peer is left down.
// It returns the local end's ifindex.
func AddVeth(h *netlink.Handle, local, peer VethEnd, peerNS *Namespace) (int, error) {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: local.Name, HardwareAddr: local.MAC, MTU: local.MTU, Flags: net.FlagUp, TxQLen: -1},
		PeerName:         peer.Name,
		PeerHardwareAddr: peer.MAC,
		PeerMTU:          uint32(max(peer.MTU, 0)),
		PeerTxQLen:       -1,
	}
	if peerNS != nil {
		fd, err := peerNS.Open()
		if err != nil {
			return 0, err
		}
		defer fd.Close()
		v.PeerNamespace = netlink.NsFd(int(fd))
	}
	if err := h.LinkAdd(v); err != nil {
		return 0, fmt.Errorf("add veth %s/%s: %w", local.Name, peer.Name, err)
	}
	return v.Attrs().Index, nil
}

// AddBridge creates a Linux bridge and brings it up.
func AddBridge(h *netlink.Handle, name string, mac net.HardwareAddr, mtu int) (int, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: mtu, Flags: net.FlagUp, TxQLen: -1}}
	if err := h.LinkAdd(br); err != nil {
		return 0, fmt.Errorf("add bridge %s: %w", name, err)
	}
	return br.Attrs().Index, nil
}

// SetMaster enslaves link to the bridge master.
func SetMaster(h *netlink.Handle, link, master string) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %s: %w", link, err)
	}
	m, err := h.LinkByName(master)
	if err != nil {
		return fmt.Errorf("find %s: %w", master, err)
	}
	if err := h.LinkSetMasterByIndex(l, m.Attrs().Index); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", link, master, err)
	}
	return nil
}

// VXLAN describes a VXLAN device.
type VXLAN struct {
	Name string
	VNI  uint32 // ignored when External
	Port int    // UDP destination port
	// Remote is the unicast peer (classic point-to-point VXLAN); invalid for
	// External devices.
	Remote netip.Addr
	// Local is the source address; zero: chosen by routing.
	Local netip.Addr
	// Dev binds the underlay to a device name (optional).
	Dev string
	// External makes a collect-metadata device: the tunnel key (remote, VNI)
	// comes per packet from BPF (bpf_skb_set_tunnel_key).
	External bool
	MAC      net.HardwareAddr
	MTU      int
	Learning bool
}

// AddVXLAN creates a VXLAN device in the namespace of h, where its UDP socket
// will live, and brings it up unless moveTo is set. With moveTo, the device
// is moved into that namespace afterwards and brought up there: its socket
// stays in the creating namespace (the kernel's cross-netns VXLAN).
// It returns the device's ifindex in its final namespace.
func AddVXLAN(h *netlink.Handle, v VXLAN, moveTo *Namespace) (int, error) {
	attrs := netlink.LinkAttrs{Name: v.Name, HardwareAddr: v.MAC, MTU: v.MTU, TxQLen: -1}
	if moveTo == nil {
		attrs.Flags = net.FlagUp
	}
	link := &netlink.Vxlan{
		LinkAttrs: attrs,
		VxlanId:   int(v.VNI),
		Port:      v.Port,
		Learning:  v.Learning,
		FlowBased: v.External,
	}
	if v.Remote.IsValid() {
		link.Group = v.Remote.AsSlice()
	}
	if v.Local.IsValid() {
		link.SrcAddr = v.Local.AsSlice()
	}
	if v.Dev != "" {
		dev, err := h.LinkByName(v.Dev)
		if err != nil {
			return 0, fmt.Errorf("vxlan %s: underlay device %s: %w", v.Name, v.Dev, err)
		}
		link.VtepDevIndex = dev.Attrs().Index
	}
	if err := h.LinkAdd(link); err != nil {
		return 0, fmt.Errorf("add vxlan %s: %w", v.Name, err)
	}
	if moveTo == nil {
		return link.Attrs().Index, nil
	}
	fd, err := moveTo.Open()
	if err != nil {
		return 0, err
	}
	defer fd.Close()
	if err := h.LinkSetNsFd(link, int(fd)); err != nil {
		return 0, fmt.Errorf("move vxlan %s to %s: %w", v.Name, moveTo.Name, err)
	}
	var idx int
	err = withHandle(moveTo, func(th *netlink.Handle) error {
		l, err := th.LinkByName(v.Name)
		if err != nil {
			return err
		}
		idx = l.Attrs().Index
		return th.LinkSetUp(l)
	})
	if err != nil {
		return 0, fmt.Errorf("vxlan %s up in %s: %w", v.Name, moveTo.Name, err)
	}
	return idx, nil
}

func withHandle(ns *Namespace, fn func(*netlink.Handle) error) error {
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// LinkSetUp brings a link up (or down).
func LinkSetUp(h *netlink.Handle, name string, up bool) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set %s up=%v: %w", name, up, err)
	}
	return nil
}

// LinkSetMTU changes a link's MTU.
func LinkSetMTU(h *netlink.Handle, name string, mtu int) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set mtu %d on %s: %w", mtu, name, err)
	}
	return nil
}

// LinkSetMAC changes a link's hardware address.
func LinkSetMAC(h *netlink.Handle, name string, mac net.HardwareAddr) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("set mac %s on %s: %w", mac, name, err)
	}
	return nil
}

// AddAddr assigns prefix (address/len) to the link with index ifindex.
func AddAddr(h *netlink.Handle, ifindex int, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: PrefixNet(p)}
	if err := h.AddrAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, a); err != nil {
		return fmt.Errorf("add address %s on ifindex %d: %w", p, ifindex, err)
	}
	return nil
}

// Route describes a route. Zero Dst is the default route.
type Route struct {
	Dst     netip.Prefix
	Gw      netip.Addr
	Ifindex int
	Src     netip.Addr
	// OnLink lets Gw be used although no address of the device covers it.
	OnLink bool
	// Type: 0 (unicast), unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE...
	Type int
}

// AddRoute installs r in the main table of h's namespace.
func AddRoute(h *netlink.Handle, r Route) error {
	nr := &netlink.Route{LinkIndex: r.Ifindex, Type: r.Type}
	if r.Dst.IsValid() {
		nr.Dst = PrefixNet(r.Dst)
	} else {
		nr.Dst = PrefixNet(netip.MustParsePrefix("0.0.0.0/0"))
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else if r.Ifindex != 0 && r.Type == 0 {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := h.RouteAdd(nr); err != nil {
		return fmt.Errorf("add route %s: %w", r, err)
	}
	return nil
}

// String renders the route like `ip route`.
func (r Route) String() string {
	var b strings.Builder
	if r.Dst.IsValid() {
		b.WriteString(r.Dst.String())
	} else {
		b.WriteString("default")
	}
	if r.Gw.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	if r.Ifindex != 0 {
		fmt.Fprintf(&b, " ifindex %d", r.Ifindex)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	return b.String()
}

// AddNeigh installs a permanent neighbour entry ip -> mac on ifindex.
func AddNeigh(h *netlink.Handle, ifindex int, ip netip.Addr, mac net.HardwareAddr) error {
	n := &netlink.Neigh{LinkIndex: ifindex, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("add neighbour %s lladdr %s on ifindex %d: %w", ip, mac, ifindex, err)
	}
	return nil
}

// SetSysctl writes a sysctl under /proc/sys inside ns. Only net.* keys are
// accepted (they are per network namespace); key uses dots
// (net.ipv4.ip_forward) or slashes.
func SetSysctl(ns *Namespace, key, value string) error {
	if ns == nil {
		return errors.New("refusing to set a sysctl outside a lab namespace")
	}
	k := strings.ReplaceAll(key, ".", "/")
	if !strings.HasPrefix(k, "net/") {
		return fmt.Errorf("sysctl %s: only net.* sysctls are per namespace", key)
	}
	return Do(ns, func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns.Name, err)
		}
		return nil
	})
}

// PrefixNet converts a prefix to *net.IPNet keeping the host bits (as an
// interface address needs).
func PrefixNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// DeviceRoutes returns the IPv4 routes of the main table that use device
// name (what the kernel removes when the device goes down).
func DeviceRoutes(h *netlink.Handle, name string) ([]netlink.Route, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", name, err)
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue // the kernel adds connected routes back itself
		}
		out = append(out, r)
	}
	return out, nil
}

// RestoreRoutes re-adds routes saved with DeviceRoutes (existing ones are
// replaced).
func RestoreRoutes(h *netlink.Handle, routes []netlink.Route) error {
	var errs []error
	for _, r := range routes {
		r := r
		if err := h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("restore route %s: %w", r.String(), err))
		}
	}
	return errors.Join(errs...)
}

// podVeth is a pod's veth pair as addPodVeth creates it in one request:
// eth0 in the calling thread's namespace and its peer in the node
// namespace nodeFd, both down and with fixed ifindexes, so nothing has to
// look the peer up afterwards. (A veth cannot be created up: its peer is
// not linked yet when the kernel would open it.)
type podVeth struct {
	Name, PeerName   string
	Index, PeerIndex int
	MAC, PeerMAC     net.HardwareAddr
	MTU              int
}

// addPodVeth creates v with one RTM_NEWLINK request on a fresh socket in
// the current thread's namespace (netlink.Veth cannot set the peer's
// ifindex).
func addPodVeth(v podVeth, nodeFd int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(v.Index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.Name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, v.MAC))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU))))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	pm := nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	// The kernel takes the peer's ifindex when the first end has one.
	pm.Index = int32(v.PeerIndex)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.PeerName))
	peer.AddRtAttr(unix.IFLA_ADDRESS, v.PeerMAC)
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU)))
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(nodeFd)))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", v.Name, v.PeerName, err)
	}
	return nil
}
