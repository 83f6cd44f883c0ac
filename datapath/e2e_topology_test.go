package datapath

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/topo"
)

// e2eLab is the lab name of the end-to-end suite.
const e2eLab = "tbpf"

// miniNode is one node of the hand-made topology.
type miniNode struct {
	name     string
	ns       *topo.Namespace
	ip       netip.Addr
	router   netip.Addr
	eth0     int
	vxlan    int
	datapath *Datapath
	events   *EventReader
}

// miniPod is one pod: its own namespace, a veth whose host side lxc-<name>
// sits in the node namespace.
type miniPod struct {
	name string
	node *miniNode
	ns   *topo.Namespace
	ep   Endpoint
}

// miniCluster: a fabric namespace with a bridge, nodes with eth0 on it and a
// collect-metadata VXLAN device, pods with /32 addresses behind lxc veths.
type miniCluster struct {
	prefix string
	opts   func(*NodeConfig)
	fabric *topo.Namespace
	nodes  []*miniNode
	pods   map[string]*miniPod
	nsList []*topo.Namespace
}

func (c *miniCluster) newNS(short string) (*topo.Namespace, error) {
	short = c.prefix + "-" + short
	// A leftover of an interrupted run is removed first.
	_ = topo.DeleteNamespace(topo.NSName(e2eLab, short))
	ns, err := topo.CreateNamespace(e2eLab, short)
	if err != nil {
		return nil, err
	}
	c.nsList = append(c.nsList, ns)
	return ns, nil
}

func nsFd(ns *topo.Namespace) (netns.NsHandle, error) { return ns.Open() }

// teardown closes the datapaths and deletes every namespace.
func (c *miniCluster) teardown() error {
	var errs []error
	for _, n := range c.nodes {
		if n.events != nil {
			n.events.Close()
		}
		if n.datapath != nil {
			errs = append(errs, n.datapath.Close())
		}
	}
	for _, ns := range c.nsList {
		errs = append(errs, topo.DeleteNamespace(ns.Name))
	}
	return errors.Join(errs...)
}

// newMiniCluster builds the topology; prefix keeps the namespaces of two
// clusters apart, opts adjusts each node's datapath configuration.
func newMiniCluster(prefix string, nodes int, opts func(*NodeConfig)) (c *miniCluster, err error) {
	c = &miniCluster{prefix: prefix, opts: opts, pods: map[string]*miniPod{}}
	defer func() {
		if err != nil {
			_ = c.teardown()
		}
	}()
	if c.fabric, err = c.newNS("fabric"); err != nil {
		return nil, err
	}
	fh, err := c.fabric.Handle()
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := fh.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("add bridge: %w", err)
	}
	if err := fh.LinkSetUp(br); err != nil {
		return nil, err
	}
	for i := 0; i < nodes; i++ {
		n := &miniNode{
			name:   fmt.Sprintf("node%d", i+1),
			ip:     netip.AddrFrom4([4]byte{172, 18, 0, byte(2 + i)}),
			router: netip.AddrFrom4([4]byte{10, 244, byte(1 + i), 1}),
		}
		if n.ns, err = c.newNS(n.name); err != nil {
			return nil, err
		}
		if err := c.wireNode(n, fh, br); err != nil {
			return nil, fmt.Errorf("wire %s: %w", n.name, err)
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

func (c *miniCluster) wireNode(n *miniNode, fh *netlink.Handle, br *netlink.Bridge) error {
	fd, err := nsFd(n.ns)
	if err != nil {
		return err
	}
	defer fd.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.name, MasterIndex: br.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}
	if err := fh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add eth0 veth: %w", err)
	}
	if l, err := fh.LinkByName(n.name); err != nil {
		return err
	} else if err := fh.LinkSetUp(l); err != nil {
		return err
	}
	h, err := n.ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.ip, 16))}); err != nil {
		return err
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return err
	}
	n.eth0 = eth0.Attrs().Index
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: topo.NodeVXLAN, MTU: 1500}, FlowBased: true, Port: topo.VXLANPort, Learning: false}
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("add %s: %w", topo.NodeVXLAN, err)
	}
	vl, err := h.LinkByName(topo.NodeVXLAN)
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(vl); err != nil {
		return err
	}
	n.vxlan = vl.Attrs().Index
	return topo.Do(n.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addWorld creates a "world" host on the underlay (172.18.255.254) with a
// route to each node's pod CIDR through that node.
func (c *miniCluster) addWorld() (*topo.Namespace, netip.Addr, error) {
	ip := netip.MustParseAddr("172.18.255.254")
	ns, err := c.newNS("world")
	if err != nil {
		return nil, ip, err
	}
	fd, err := nsFd(ns)
	if err != nil {
		return nil, ip, err
	}
	defer fd.Close()
	fh, err := c.fabric.Handle()
	if err != nil {
		return nil, ip, err
	}
	defer fh.Close()
	br, err := fh.LinkByName("br0")
	if err != nil {
		return nil, ip, err
	}
	if err := fh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "world", MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}); err != nil {
		return nil, ip, err
	}
	if l, err := fh.LinkByName("world"); err != nil {
		return nil, ip, err
	} else if err := fh.LinkSetUp(l); err != nil {
		return nil, ip, err
	}
	h, err := ns.Handle()
	if err != nil {
		return nil, ip, err
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return nil, ip, err
	}
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ip, 16))}); err != nil {
		return nil, ip, err
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return nil, ip, err
	}
	for _, n := range c.nodes {
		cidr := netip.PrefixFrom(n.router, 24).Masked()
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(cidr), Gw: n.ip.AsSlice()}); err != nil {
			return nil, ip, err
		}
	}
	return ns, ip, nil
}

// loadDatapaths loads the datapath of every node and fills each node's
// ipcache with the other nodes and their pods.
func (c *miniCluster) loadDatapaths() error {
	for _, n := range c.nodes {
		cfg := NodeConfig{
			Lab: e2eLab, Node: c.prefix + "-" + n.name, NS: n.ns, NodeIP: n.ip, RouterIP: n.router,
			VXLANIfindex: n.vxlan, Eth0Ifindex: n.eth0, ConntrackSize: 16384,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if c.opts != nil {
			c.opts(&cfg)
		}
		d, err := Load(cfg)
		if err != nil {
			return fmt.Errorf("load datapath of %s: %w", n.name, err)
		}
		n.datapath = d
		if n.events, err = d.Events(); err != nil {
			return err
		}
		for _, o := range c.nodes {
			if o != n {
				if err := d.UpsertIPCache(netip.PrefixFrom(o.ip, 32), identity.RemoteNode, netip.Addr{}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addPod creates a pod on node n and registers it with every node's
// datapath (as endpoint on its node, in the ipcache elsewhere).
func (c *miniCluster) addPod(n *miniNode, name string, index int, id identity.ID) (*miniPod, error) {
	ns, err := c.newNS(n.name + "-" + name)
	if err != nil {
		return nil, err
	}
	p := &miniPod{name: name, node: n, ns: ns}
	ip := netip.AddrFrom4([4]byte{10, 244, n.router.As4()[2], byte(10 + index)})
	fd, err := nsFd(ns)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	h, err := n.ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	lxcName := "lxc-" + name
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: lxcName, MTU: topo.PodMTU}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}); err != nil {
		return nil, fmt.Errorf("add %s: %w", lxcName, err)
	}
	lxc, err := h.LinkByName(lxcName)
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(lxc); err != nil {
		return nil, err
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: lxc.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(ip, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, err
	}
	ph, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer ph.Close()
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if err := ph.LinkSetMTU(eth0, topo.PodMTU); err != nil {
		return nil, err
	}
	if err := ph.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ip, 32))}); err != nil {
		return nil, err
	}
	if err := ph.LinkSetUp(eth0); err != nil {
		return nil, err
	}
	gw := prefixNet(netip.PrefixFrom(n.router, 32))
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: gw, Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, err
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.IP}); err != nil {
		return nil, err
	}
	if err := ph.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: gw.IP, HardwareAddr: lxc.Attrs().HardwareAddr}); err != nil {
		return nil, err
	}
	p.ep = Endpoint{ID: uint16(100 + index), IP: ip, Ifindex: lxc.Attrs().Index, MAC: eth0.Attrs().HardwareAddr, HostMAC: lxc.Attrs().HardwareAddr, Identity: id}
	c.pods[name] = p
	if n.datapath == nil {
		// No datapath: the other nodes route to the pod through its node.
		for _, o := range c.nodes {
			if o == n {
				continue
			}
			oh, err := o.ns.Handle()
			if err != nil {
				return nil, err
			}
			err = oh.RouteAdd(&netlink.Route{Dst: prefixNet(netip.PrefixFrom(ip, 32)), Gw: n.ip.AsSlice()})
			oh.Close()
			if err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	if err := n.datapath.AddEndpoint(p.ep); err != nil {
		return nil, err
	}
	for _, o := range c.nodes {
		if o != n {
			if err := o.datapath.UpsertIPCache(netip.PrefixFrom(ip, 32), id, n.ip); err != nil {
				return nil, err
			}
		}
	}
	c.pods[name] = p
	return p, nil
}

// listen serves a TCP echo on port inside the pod.
func (p *miniPod) listen(port int) (net.Listener, error) {
	return listenIn(p.ns, port)
}

// listenIn serves a TCP echo on port inside namespace ns.
func listenIn(ns *topo.Namespace, port int) (net.Listener, error) {
	var l net.Listener
	err := topo.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l, nil
}

// serveName answers every connection on port with the pod's name.
func (p *miniPod) serveName(port int) (net.Listener, error) {
	var l net.Listener
	err := topo.Do(p.ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(p.name))
			c.Close()
		}
	}()
	return l, nil
}

// dial opens a TCP connection from the pod. A connection that cannot be
// established within timeout counts as blocked.
func (p *miniPod) dial(to *miniPod, port int, timeout time.Duration) (net.Conn, error) {
	return dialFrom(p.ns, to.ep.IP, port, timeout)
}

// dialFrom opens a TCP connection from namespace ns.
func dialFrom(ns *topo.Namespace, to netip.Addr, port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := topo.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to, uint16(port)).String(), timeout)
		return err
	})
	return c, err
}

// echo sends msg on c and expects it back.
func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, got %q", msg, buf)
	}
	return nil
}

// vxlanCapture records the VNIs of VXLAN packets arriving on a node's eth0,
// from an AF_PACKET socket opened in the node namespace.
type vxlanCapture struct {
	fd   int
	vnis chan vxlanPacket
	stop atomic.Bool
	done chan struct{}
}

type vxlanPacket struct {
	vni                uint32
	innerSrc, innerDst netip.Addr
}

func captureVXLAN(n *miniNode) (*vxlanCapture, error) {
	var fd int
	err := topo.Do(n.ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: n.eth0})
	})
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket on %s eth0: %w", n.name, err)
	}
	tv := unix.Timeval{Usec: 200000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &vxlanCapture{fd: fd, vnis: make(chan vxlanPacket, 1024), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *vxlanCapture) run() {
	defer close(c.done)
	defer close(c.vnis)
	buf := make([]byte, 65536)
	for !c.stop.Load() {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		b := buf[:n]
		// Ethernet, IPv4 (no options), UDP to 8472, VXLAN, inner Ethernet, inner IPv4.
		if len(b) < 14+20+8+8+14+20 || b[12] != 0x08 || b[13] != 0x00 || b[14+9] != 17 || b[14] != 0x45 {
			continue
		}
		udp := b[34:]
		if int(udp[2])<<8|int(udp[3]) != topo.VXLANPort {
			continue
		}
		vx := udp[8:]
		inner := vx[8+14:]
		p := vxlanPacket{
			vni:      uint32(vx[4])<<16 | uint32(vx[5])<<8 | uint32(vx[6]),
			innerSrc: netip.AddrFrom4([4]byte(inner[12:16])),
			innerDst: netip.AddrFrom4([4]byte(inner[16:20])),
		}
		select {
		case c.vnis <- p:
		default:
		}
	}
}

// wait returns the first captured VXLAN packet whose inner packet goes from
// src to dst.
func (c *vxlanCapture) wait(src, dst netip.Addr) (vxlanPacket, error) {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p, ok := <-c.vnis:
			if !ok {
				return vxlanPacket{}, errors.New("capture stopped")
			}
			if p.innerSrc == src && p.innerDst == dst {
				return p, nil
			}
		case <-timeout:
			return vxlanPacket{}, fmt.Errorf("no VXLAN packet %v -> %v captured", src, dst)
		}
	}
}

func (c *vxlanCapture) close() {
	c.stop.Store(true)
	<-c.done
	unix.Close(c.fd)
}
