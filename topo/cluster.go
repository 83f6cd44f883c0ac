package topo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// NodeSpec describes one node to create.
type NodeSpec struct {
	Name   string
	Role   string // control-plane or worker
	Labels map[string]string
}

// ClusterConfig describes a cluster to build.
type ClusterConfig struct {
	Lab   string
	Nodes []NodeSpec
	// PodMTU of pod eth0 devices (default PodMTU).
	PodMTU int
	// PodSubnet is split into one /24 per node, in node order (default
	// DefaultPodCIDR, kind's networking.podSubnet). It must be an IPv4
	// prefix of /24 or shorter with room for every node.
	PodSubnet netip.Prefix
	// Hooks are told about nodes and pods as they come and go: the BPF
	// datapath plugs in here. Without hooks pods are forwarded by plain
	// kernel routing (--datapath=none).
	Hooks []ClusterHook
	// Phases, when set, receives the time of each bring-up and teardown
	// phase (NewCluster makes one otherwise).
	Phases *Phases
}

// ClusterHook is told about cluster changes. Hooks run after the kernel
// objects exist (NodeAdded, PodAdded) or before they go (PodRemoved).
// NodeAdded runs for all nodes at once (one goroutine per node), PodAdded
// and PodRemoved for different pods at once: a hook locks what it shares.
// A hook may record its own phases in Cluster.Phases.
type ClusterHook interface {
	NodeAdded(ctx context.Context, c *Cluster, n *Node) error
	PodAdded(ctx context.Context, c *Cluster, p *Pod) error
	PodRemoved(ctx context.Context, c *Cluster, p *Pod) error
}

// DefaultNodes returns kind's default node list: kind-control-plane and
// workers kind-worker, kind-worker2, ...
func DefaultNodes(workers int) []NodeSpec {
	nodes := []NodeSpec{{Name: "kind-control-plane", Role: "control-plane"}}
	for i := 1; i <= workers; i++ {
		name := "kind-worker"
		if i > 1 {
			name = fmt.Sprintf("kind-worker%d", i)
		}
		nodes = append(nodes, NodeSpec{Name: name, Role: "worker"})
	}
	return nodes
}

// Cluster is a Kubernetes-shaped set of namespaces: a fabric namespace
// holding the underlay bridge, one namespace per node, one per pod and a
// world namespace for everything outside the cluster.
type Cluster struct {
	Lab    string
	Nodes  []*Node
	Fabric *Namespace
	World  *Namespace
	PodMTU int
	// Phases adds up the time of each bring-up and teardown phase.
	Phases *Phases

	hooks []ClusterHook

	mu      sync.Mutex
	pods    map[string]*Pod
	handles map[string]*netlink.Handle // by node name
	ipam    map[string]*ipam
	nextEP  map[string]uint16
	nsList  []string // namespaces created, in order

	// nodesDone is closed when the nodes' hooks (started by Start) have
	// run; nodesErr is their first error.
	nodesDone chan struct{}
	nodesErr  error
	// hostIfindex is the last ifindex given to a pod's host-side veth,
	// per node.
	hostIfindex map[string]int
}

// WorldHosts are the emulated external addresses held by the world
// namespace (on its loopback), with the names the lab's DNS gives them.
var WorldHosts = map[string]netip.Addr{
	"one.one.one.one": netip.MustParseAddr("1.1.1.1"),
	// Cloudflare's second resolver address (cilium-cli's --external-other-ip).
	"1dot1dot1dot1.cloudflare-dns.com": netip.MustParseAddr("1.0.0.1"),
	"dns.google":                       netip.MustParseAddr("8.8.8.8"),
	"example.com":                      netip.MustParseAddr("93.184.216.34"),
	"www.google.com":                   netip.MustParseAddr("142.250.74.36"),
}

// WorldRange holds the world's addresses for every other public name: the
// lab's DNS answers such a name with WorldAddr(name), and the whole range
// is local to the world namespace, so a server there listening on the
// wildcard address answers for any of them. It is the benchmarking range
// (RFC 2544), which is never routed on the internet.
var WorldRange = netip.MustParsePrefix("198.18.0.0/15")

// WorldAddr returns the emulated address of a public name without a fixed
// one in WorldHosts: a stable hash of the lower-cased name into WorldRange,
// avoiding the range's first and last address of each /24.
func WorldAddr(name string) netip.Addr {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if a, ok := WorldHosts[name]; ok {
		return a
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	base := WorldRange.Addr().As4()
	hostBits := 32 - WorldRange.Bits()
	off := v & (1<<hostBits - 1)
	if b := off & 0xff; b == 0 || b == 0xff {
		off ^= 0x80
	}
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += off
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// CheckPodSubnet reports whether p can hold one /24 pod CIDR for each of
// nodes nodes.
func CheckPodSubnet(p netip.Prefix, nodes int) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("pod subnet %s: not supported yet: IPv4 only", p)
	}
	if p.Bits() > 24 {
		return fmt.Errorf("pod subnet %s: too small, each node takes a /24", p)
	}
	if have := 1 << (24 - p.Bits()); nodes > have {
		return fmt.Errorf("pod subnet %s: room for %d nodes' /24s, the cluster has %d", p, have, nodes)
	}
	return nil
}

// NewCluster validates cfg and returns an unbuilt cluster.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if err := ValidateLabName(cfg.Lab); err != nil {
		return nil, err
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("cluster: no nodes")
	}
	if len(cfg.Nodes) > 250 {
		return nil, fmt.Errorf("cluster: %d nodes, at most 250 are supported", len(cfg.Nodes))
	}
	podSubnet := cfg.PodSubnet
	if !podSubnet.IsValid() {
		podSubnet = DefaultPodCIDR
	}
	if err := CheckPodSubnet(podSubnet, len(cfg.Nodes)); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	c := &Cluster{Lab: cfg.Lab, PodMTU: cfg.PodMTU, hooks: cfg.Hooks, Phases: cfg.Phases,
		pods: map[string]*Pod{}, handles: map[string]*netlink.Handle{}, ipam: map[string]*ipam{}, nextEP: map[string]uint16{}}
	if c.PodMTU == 0 {
		c.PodMTU = PodMTU
	}
	if c.Phases == nil {
		c.Phases = &Phases{}
	}
	c.hostIfindex = map[string]int{}
	for i, s := range cfg.Nodes {
		if err := validateNodeName(s.Name); err != nil {
			return nil, fmt.Errorf("nodes[%d].name: %w", i, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("nodes[%d].name: duplicate node %q", i, s.Name)
		}
		seen[s.Name] = true
		role := s.Role
		if role == "" {
			role = "worker"
		}
		if role != "worker" && role != "control-plane" {
			return nil, fmt.Errorf("nodes[%d].role: %q is not control-plane or worker", i, role)
		}
		ip := nthAddr(DefaultUnderlay, i+2) // kind starts at .2
		cidr := netip.PrefixFrom(nthAddr(podSubnet.Masked(), i*256), 24)
		labels := map[string]string{"kubernetes.io/hostname": s.Name, "kubernetes.io/os": "linux"}
		if role == "control-plane" {
			labels["node-role.kubernetes.io/control-plane"] = ""
		}
		for k, v := range s.Labels {
			labels[k] = v
		}
		c.Nodes = append(c.Nodes, &Node{
			Name: s.Name, Role: role, Index: i, IP: ip, PodCIDR: cidr,
			RouterIP: cidr.Addr().Next(),
			Eth0MAC:  macFrom(0x02, 0x42, ip),
			HostMAC:  macFrom(0x0e, 0x01, cidr.Addr().Next()),
			Labels:   labels,
		})
		c.ipam[s.Name] = newIPAM(cidr)
	}
	return c, nil
}

func validateNodeName(n string) error {
	if n == "" || len(n) > 40 {
		return fmt.Errorf("%q: must be 1-40 characters", n)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("%q: only lowercase letters, digits and '-' are allowed", n)
		}
	}
	return nil
}

// nthAddr returns the address n positions after the prefix's base.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// macFrom builds a locally administered MAC a:b:<ipv4 bytes>.
func macFrom(a, b byte, ip netip.Addr) net.HardwareAddr {
	v := ip.As4()
	return net.HardwareAddr{a, b, v[0], v[1], v[2], v[3]}
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Pod returns the pod namespace/name, or nil.
func (c *Cluster) Pod(namespace, name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[namespace+"/"+name]
}

// Pods returns all pods sorted by namespace/name.
func (c *Cluster) Pods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Namespaces returns the names of every namespace the cluster created.
func (c *Cluster) Namespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.nsList...)
}

// NodeHandle returns the netlink handle of a node's namespace (owned by the
// cluster; do not close it).
func (c *Cluster) NodeHandle(node string) *netlink.Handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handles[node]
}

func (c *Cluster) createNS(short string) (*Namespace, error) {
	ns, err := CreateNamespace(c.Lab, short)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nsList = append(c.nsList, ns.Name)
	c.mu.Unlock()
	return ns, nil
}

// Up creates the fabric, the world and the nodes and waits for the
// datapath hooks of every node. On error everything already created is
// removed.
func (c *Cluster) Up(ctx context.Context, progress func(string)) error {
	if err := c.Start(ctx, progress); err != nil {
		return err
	}
	if err := c.WaitNodes(); err != nil {
		_ = c.Down()
		return err
	}
	return nil
}

// Start is Up without waiting for the nodes' datapath hooks: they run in
// the background (loading BPF programs is CPU work for the verifier), so
// pods can be wired meanwhile. AddPod waits for its node's hooks before
// running the pod hooks; WaitNodes waits for all of them and returns the
// first error; Down waits before removing anything. On an error of its
// own Start removes everything already created.
func (c *Cluster) Start(ctx context.Context, progress func(string)) (err error) {
	report := func(stage string) {
		if progress != nil {
			progress(stage)
		}
	}
	defer func() {
		if err != nil {
			_ = c.Down()
		}
	}()
	start := time.Now()
	if c.Fabric, err = c.createNS("fabric"); err != nil {
		return err
	}
	fh, err := c.Fabric.Handle()
	if err != nil {
		return err
	}
	defer fh.Close()
	brIdx, err := AddBridge(fh, FabricBr, nil, DefaultMTU)
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, n := range c.Nodes {
		g.Go(func() error {
			ns, err := c.createNS(n.Name)
			if err != nil {
				return err
			}
			n.NS = ns
			return nil
		})
	}
	g.Go(func() error {
		ns, err := c.createNS("world")
		c.World = ns
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	c.Phases.Since("up.namespaces", start)
	report(fmt.Sprintf("Creating nodes (%d) 📦", len(c.Nodes)))
	start = time.Now()

	// Underlay: one veth per node (and the world) into the fabric bridge.
	for _, n := range c.Nodes {
		idx, err := AddVeth(fh, VethEnd{Name: fmt.Sprintf("n%d", n.Index)}, VethEnd{Name: NodeEth0, MAC: n.Eth0MAC, MTU: DefaultMTU}, n.NS)
		if err != nil {
			return fmt.Errorf("underlay of %s: %w", n.Name, err)
		}
		if err := fh.LinkSetMasterByIndex(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}, brIdx); err != nil {
			return fmt.Errorf("underlay of %s: enslave: %w", n.Name, err)
		}
	}
	widx, err := AddVeth(fh, VethEnd{Name: "world"}, VethEnd{Name: WorldEth0, MAC: macFrom(0x02, 0x42, WorldUnderlayIP), MTU: DefaultMTU}, c.World)
	if err != nil {
		return fmt.Errorf("underlay of world: %w", err)
	}
	if err := fh.LinkSetMasterByIndex(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: widx}}, brIdx); err != nil {
		return fmt.Errorf("underlay of world: enslave: %w", err)
	}
	if err := c.setupWorld(); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		g.Go(func() error { return c.setupNode(n) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	c.Phases.Since("up.wiring", start)
	report("Wiring underlay and overlay 🔌")
	// The datapath of every node at once, in the background: loading
	// programs is CPU work (the verifier) that spreads over the machine's
	// cores and overlaps with wiring pods.
	c.nodesDone = make(chan struct{})
	if len(c.hooks) == 0 {
		close(c.nodesDone)
		return nil
	}
	start = time.Now()
	go func() {
		var hg errgroup.Group
		for _, n := range c.Nodes {
			hg.Go(func() error {
				for _, h := range c.hooks {
					if err := h.NodeAdded(ctx, c, n); err != nil {
						return fmt.Errorf("datapath on %s: %w", n.Name, err)
					}
				}
				return nil
			})
		}
		c.nodesErr = hg.Wait()
		c.Phases.Since("up.datapath", start)
		close(c.nodesDone)
	}()
	return nil
}

// WaitNodes waits until the datapath hooks of every node have run and
// returns the first error. It returns nil at once for a cluster that was
// never started.
func (c *Cluster) WaitNodes() error {
	if c.nodesDone == nil {
		return nil
	}
	<-c.nodesDone
	return c.nodesErr
}

func (c *Cluster) setupWorld() error {
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := SetSysctl(c.World, k, "1"); err != nil {
			return err
		}
	}
	h, err := c.World.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	// The world is outside the cluster: its packets arrive as from a
	// real NIC, with their checksums computed.
	if err := SetTxChecksum(c.World, WorldEth0, false); err != nil {
		return fmt.Errorf("world: %w", err)
	}
	eth0, err := h.LinkByName(WorldEth0)
	if err != nil {
		return fmt.Errorf("world: %w", err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("world: eth0 up: %w", err)
	}
	if err := AddAddr(h, eth0.Attrs().Index, netip.PrefixFrom(WorldUnderlayIP, DefaultUnderlay.Bits())); err != nil {
		return fmt.Errorf("world: %w", err)
	}
	for _, a := range WorldHosts {
		if err := AddAddr(h, 1, netip.PrefixFrom(a, 32)); err != nil {
			return fmt.Errorf("world: %w", err)
		}
	}
	// Every address of WorldRange is the world's own (ip route add local
	// 198.18.0.0/15 dev lo table local).
	local := &netlink.Route{LinkIndex: 1, Dst: PrefixNet(WorldRange), Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Table: unix.RT_TABLE_LOCAL}
	if err := h.RouteAdd(local); err != nil {
		return fmt.Errorf("world: local route %s: %w", WorldRange, err)
	}
	// Replies to pods go back to the node that owns the pod CIDR.
	for _, n := range c.Nodes {
		if err := AddRoute(h, Route{Dst: n.PodCIDR, Gw: n.IP, Ifindex: eth0.Attrs().Index}); err != nil {
			return fmt.Errorf("world: %w", err)
		}
	}
	return nil
}

func (c *Cluster) setupNode(n *Node) error {
	h, err := n.NS.Handle()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.handles[n.Name] = h
	c.mu.Unlock()
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
		// The cluster is IPv4-only, as kind's default is.
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
	} {
		if err := SetSysctl(n.NS, kv[0], kv[1]); err != nil {
			return err
		}
	}
	eth0, err := h.LinkByName(NodeEth0)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.Eth0Ifindex = eth0.Attrs().Index
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("%s: eth0 up: %w", n.Name, err)
	}
	if err := AddAddr(h, n.Eth0Ifindex, netip.PrefixFrom(n.IP, DefaultUnderlay.Bits())); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	// cilium_host/cilium_net: the pods' gateway lives on cilium_host.
	n.HostIfindex, err = AddVeth(h, VethEnd{Name: NodeHost, MAC: n.HostMAC, MTU: DefaultMTU}, VethEnd{Name: NodeNet, MTU: DefaultMTU}, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	if err := LinkSetUp(h, NodeNet, true); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	netLink, err := h.LinkByName(NodeNet)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.NetIfindex = netLink.Attrs().Index
	if err := AddAddr(h, n.HostIfindex, netip.PrefixFrom(n.RouterIP, 32)); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.VXLANIfindex, err = AddVXLAN(h, VXLAN{Name: NodeVXLAN, Port: VXLANPort, External: true, MTU: DefaultMTU}, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	// The world is the default destination; other nodes' pod CIDRs are
	// reached over the underlay by plain routing (the baseline without BPF,
	// and the host stack's path with it).
	if err := AddRoute(h, Route{Gw: WorldUnderlayIP, Ifindex: n.Eth0Ifindex}); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	for _, o := range c.Nodes {
		if o == n {
			continue
		}
		if err := AddRoute(h, Route{Dst: o.PodCIDR, Gw: o.IP, Ifindex: n.Eth0Ifindex}); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	return nil
}

// PodSpec describes a pod to create.
type PodSpec struct {
	Namespace   string
	Name        string
	Node        string
	Labels      map[string]string
	HostNetwork bool
	// MTU of the pod's eth0; 0 uses the cluster's PodMTU.
	MTU int
	// Ports and ServiceAccount are recorded on the pod for the datapath.
	Ports          []ContainerPort
	ServiceAccount string
	// Workload is the controller owning the pod (zero for a bare pod).
	Workload Workload
}

// HostVethName returns the host-side veth name of a pod: lxc + 11 hex digits.
func HostVethName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return PodLinkName + hex.EncodeToString(sum[:])[:11]
}

// AddPod creates a pod on its node: namespace, veth (host side lxc<hash>
// in the node namespace, eth0 created directly in the pod namespace), a /32
// from the node's pod CIDR, a default route via the router IP and the
// routes and neighbours that let the node reach it.
func (c *Cluster) AddPod(ctx context.Context, s PodSpec) (*Pod, error) {
	slot, err := c.reserveSlot(s)
	if err != nil {
		return nil, err
	}
	p, err := c.addPodDevices(s, slot)
	if err != nil {
		return nil, err
	}
	if err := c.addPodHooks(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// podSlot is what a new pod takes from its node before it is built: an
// endpoint ID and, unless it shares the node's network, an address.
// AddPods reserves the slots in spec order, so that the same specs give
// the same addresses and IDs whatever order the workers run in.
type podSlot struct {
	epID uint16
	ip   netip.Addr
}

func (c *Cluster) reserveSlot(s PodSpec) (podSlot, error) {
	node := c.Node(s.Node)
	if node == nil {
		return podSlot{}, fmt.Errorf("pod %s/%s: unknown node %q", s.Namespace, s.Name, s.Node)
	}
	c.mu.Lock()
	c.nextEP[node.Name]++
	slot := podSlot{epID: c.nextEP[node.Name]}
	c.mu.Unlock()
	if !s.HostNetwork {
		ip, err := c.ipam[node.Name].allocate()
		if err != nil {
			return podSlot{}, fmt.Errorf("pod %s/%s: %w", s.Namespace, s.Name, err)
		}
		slot.ip = ip
	}
	return slot, nil
}

// addPodDevices creates the pod's namespace and devices with the address
// and endpoint ID of slot (AddPod without the hooks). On failure the
// slot's address is released.
func (c *Cluster) addPodDevices(s PodSpec, slot podSlot) (p *Pod, err error) {
	node := c.Node(s.Node)
	defer func() {
		if err != nil && slot.ip.IsValid() {
			c.ipam[node.Name].release(slot.ip)
		}
	}()
	key := s.Namespace + "/" + s.Name
	c.mu.Lock()
	if _, ok := c.pods[key]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("pod %s already exists", key)
	}
	c.pods[key] = nil // reserve the name
	h := c.handles[node.Name]
	c.mu.Unlock()
	defer func() {
		if err != nil {
			c.mu.Lock()
			delete(c.pods, key)
			c.mu.Unlock()
		}
	}()
	p = &Pod{Namespace: s.Namespace, Name: s.Name, Node: node, HostNetwork: s.HostNetwork, Labels: s.Labels, EndpointID: slot.epID, Ports: s.Ports, ServiceAccount: s.ServiceAccount, Workload: s.Workload}
	start := time.Now()
	if s.HostNetwork {
		p.NS, p.IP = node.NS, node.IP
		p.MAC = node.Eth0MAC
	} else if err := c.wirePod(p, h, slot.ip, s.MTU); err != nil {
		return nil, err
	}
	c.Phases.Since("pods.wire", start)
	c.mu.Lock()
	c.pods[key] = p
	c.mu.Unlock()
	return p, nil
}

// addPodHooks waits for the nodes' hooks, then runs the pod hooks; on
// failure the pod is removed again.
func (c *Cluster) addPodHooks(ctx context.Context, p *Pod) error {
	if len(c.hooks) == 0 {
		return nil
	}
	start := time.Now()
	nerr := c.WaitNodes()
	c.Phases.Since("pods.wait-nodes", start)
	if nerr != nil {
		_ = c.DeletePod(ctx, p.Namespace, p.Name)
		return fmt.Errorf("pod %s: %w", p.Key(), nerr)
	}
	start = time.Now()
	defer c.Phases.Since("pods.datapath", start)
	for _, hk := range c.hooks {
		if err := hk.PodAdded(ctx, c, p); err != nil {
			_ = c.DeletePod(ctx, p.Namespace, p.Name)
			return fmt.Errorf("datapath for pod %s: %w", p.Key(), err)
		}
	}
	return nil
}

// releaseSlot gives back the address of a slot whose pod was never built.
func (c *Cluster) releaseSlot(s PodSpec, slot podSlot) {
	if slot.ip.IsValid() {
		c.ipam[s.Node].release(slot.ip)
	}
}

// nodesReady reports whether the nodes' hooks have run.
func (c *Cluster) nodesReady() bool {
	if c.nodesDone == nil {
		return true
	}
	select {
	case <-c.nodesDone:
		return true
	default:
		return false
	}
}

// wirePod creates the namespace and devices of p with address ip.
func (c *Cluster) wirePod(p *Pod, h *netlink.Handle, ip netip.Addr, mtu int) (err error) {
	node := p.Node
	if mtu == 0 {
		mtu = c.PodMTU
	}
	p.IP, p.MTU = ip, mtu
	p.MAC = macFrom(0x0a, 0x58, ip)
	p.HostMAC = macFrom(0x0e, 0x00, ip)
	p.HostVeth = HostVethName(p.Namespace, p.Name)
	nodeFd, err := node.NS.Open()
	if err != nil {
		return err
	}
	defer nodeFd.Close()
	// Everything on the pod's side happens while its namespace is created:
	// eth0 is made there with its peer (lxc...) created directly in the
	// node namespace, so no device is ever moved.
	ns, err := CreateNamespaceWith(c.Lab, p.Namespace+"-"+p.Name, func(ph *netlink.Handle) error {
		const eth0Index = 2 // lo is 1 in a fresh namespace
		v := podVeth{Name: PodEth0, PeerName: p.HostVeth, Index: eth0Index, MAC: p.MAC, PeerMAC: p.HostMAC, MTU: mtu}
		for attempt := 0; ; attempt++ {
			v.PeerIndex = c.nextHostIfindex(node.Name)
			err := addPodVeth(v, int(nodeFd))
			if err == nil {
				break
			}
			// The ifindex is taken in the node namespace (by a device
			// someone else made there): try the next one.
			if attempt < 3 && (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)) {
				continue
			}
			return err
		}
		p.Ifindex, p.HostIfindex = v.Index, v.PeerIndex
		// Pods are IPv4-only, as the cluster is: eth0 gets no IPv6
		// address (address generation off before it comes up), so it
		// sends no neighbour or router solicitations that the datapath
		// would drop as "Unsupported L3 protocol" noise. (Writing the
		// disable_ipv6 sysctl instead busy-retries the syscall while
		// another thread holds RTNL, which made it the costliest step
		// of a pod under load.)
		eth0 := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: eth0Index}}
		if err := ph.LinkSetIP6AddrGenMode(eth0, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return fmt.Errorf("%s: IPv6 address generation off: %w", PodEth0, err)
		}
		if err := ph.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("%s up: %w", PodEth0, err)
		}
		if err := AddAddr(ph, p.Ifindex, netip.PrefixFrom(ip, 32)); err != nil {
			return err
		}
		if err := AddNeigh(ph, p.Ifindex, node.RouterIP, p.HostMAC); err != nil {
			return err
		}
		return AddRoute(ph, Route{Gw: node.RouterIP, Ifindex: p.Ifindex, OnLink: true})
	})
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	c.mu.Lock()
	c.nsList = append(c.nsList, ns.Name)
	c.mu.Unlock()
	p.NS = ns
	defer func() {
		if err != nil {
			_ = DeleteNamespace(ns.Name)
		}
	}()
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: p.HostIfindex}}); err != nil {
		return fmt.Errorf("pod %s: %s up: %w", p.Key(), p.HostVeth, err)
	}
	if err := AddNeigh(h, p.HostIfindex, ip, p.MAC); err != nil {
		return fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	if err := AddRoute(h, Route{Dst: netip.PrefixFrom(ip, 32), Ifindex: p.HostIfindex}); err != nil {
		return fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	return nil
}

// firstHostIfindex is where the ifindexes of pods' host-side veths start
// in a node namespace, well above the node's own devices.
const firstHostIfindex = 1000

// nextHostIfindex returns a fresh ifindex for a pod's host-side veth on
// node (ifindexes are per namespace; deleted pods' are not reused).
func (c *Cluster) nextHostIfindex(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hostIfindex[node] < firstHostIfindex {
		c.hostIfindex[node] = firstHostIfindex
	}
	c.hostIfindex[node]++
	return c.hostIfindex[node]
}

// DeletePod removes a pod: datapath hooks first, then its namespace (which
// takes the veth with it) and the node's route.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	key := namespace + "/" + name
	c.mu.Lock()
	p := c.pods[key]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("pod %s not found", key)
	}
	var errs []error
	for _, hk := range c.hooks {
		if err := hk.PodRemoved(ctx, c, p); err != nil {
			errs = append(errs, err)
		}
	}
	if !p.HostNetwork {
		h := c.NodeHandle(p.Node.Name)
		// Deleting the host side removes both ends and the routes through it.
		if err := h.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: p.HostIfindex}}); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", p.HostVeth, err))
		}
		if err := DeleteNamespace(p.NS.Name); err != nil {
			errs = append(errs, err)
		}
		c.ipam[p.Node.Name].release(p.IP)
	}
	c.mu.Lock()
	delete(c.pods, key)
	for i, n := range c.nsList {
		if p.NS != nil && n == p.NS.Name && !p.HostNetwork {
			c.nsList = append(c.nsList[:i], c.nsList[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// Down removes every namespace the cluster created. It does not run pod
// hooks: the datapath is torn down by its owner before.
func (c *Cluster) Down() error {
	// Hooks still loading a node's datapath finish first.
	_ = c.WaitNodes()
	defer c.Phases.Since("down.namespaces", time.Now())
	c.mu.Lock()
	for _, h := range c.handles {
		h.Close()
	}
	c.handles = map[string]*netlink.Handle{}
	names := append([]string(nil), c.nsList...)
	c.nsList = nil
	c.pods = map[string]*Pod{}
	c.mu.Unlock()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if err := DeleteNamespace(names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// Anything left with the lab's prefix (a half-created namespace) goes too.
	rest, _ := ListNamespaces(c.Lab)
	for _, n := range rest {
		if err := DeleteNamespace(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ipam hands out pod addresses from a node's /24: .1 is the router, pods
// get .2 and up.
type ipam struct {
	mu     sync.Mutex
	prefix netip.Prefix
	used   map[netip.Addr]bool
	next   int
}

func newIPAM(p netip.Prefix) *ipam {
	return &ipam{prefix: p, used: map[netip.Addr]bool{}, next: 2}
}

func (a *ipam) size() int { return 1<<(32-a.prefix.Bits()) - 3 }

func (a *ipam) allocate() (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.size()
	for i := 0; i < n; i++ {
		off := (a.next-2+i)%n + 2
		ip := nthAddr(a.prefix, off)
		if !a.used[ip] {
			a.used[ip] = true
			a.next = off + 1
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("IPAM: %s exhausted (%d addresses)", a.prefix, n)
}

func (a *ipam) release(ip netip.Addr) {
	a.mu.Lock()
	delete(a.used, ip)
	a.mu.Unlock()
}

// IPAMStatus returns how many pod addresses of a node are allocated, out of
// how many, and from which CIDR.
func (c *Cluster) IPAMStatus(node string) (used, total int, cidr netip.Prefix) {
	a := c.ipam[node]
	if a == nil {
		return 0, 0, netip.Prefix{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used) + 1, a.size() + 1, a.prefix // +1: the router IP
}

// AddPods creates many pods with up to parallel workers (0: 4). It stops at
// the first error and returns the pods created so far with it. While the
// nodes' datapath is still loading (see Start), every pod's devices are
// created first and the pod hooks run once the nodes are ready.
func (c *Cluster) AddPods(ctx context.Context, specs []PodSpec, parallel int) ([]*Pod, error) {
	if parallel <= 0 {
		parallel = 4
	}
	pods := make([]*Pod, len(specs))
	slots := make([]podSlot, len(specs))
	for i, s := range specs {
		slot, err := c.reserveSlot(s)
		if err != nil {
			for j := range i {
				c.releaseSlot(specs[j], slots[j])
			}
			return nil, err
		}
		slots[i] = slot
	}
	// Pipelined when the nodes are ready (each worker builds a pod and
	// runs its hooks); otherwise every pod's devices first, then the hooks
	// once the nodes' datapath is loaded.
	pipelined := c.nodesReady()
	var g errgroup.Group
	g.SetLimit(parallel)
	for i, s := range specs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				c.releaseSlot(s, slots[i])
				return err
			}
			p, err := c.addPodDevices(s, slots[i])
			if err == nil && pipelined {
				if err = c.addPodHooks(ctx, p); err != nil {
					p = nil
				}
			}
			pods[i] = p
			return err
		})
	}
	err := g.Wait()
	if pipelined {
		return compactPods(pods), err
	}
	var h errgroup.Group // a fresh group: g keeps its first error
	h.SetLimit(parallel)
	for i, p := range pods {
		if p == nil {
			continue
		}
		h.Go(func() error {
			if err := c.addPodHooks(ctx, p); err != nil {
				pods[i] = nil
				return err
			}
			return nil
		})
	}
	return compactPods(pods), errors.Join(err, h.Wait())
}

func compactPods(pods []*Pod) []*Pod {
	out := pods[:0]
	for _, p := range pods {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// WaitLinksUp waits until the veths of pods are operationally up on both
// ends. A fresh veth drops what it sends until the kernel's link watcher
// has activated its queue, so traffic sent before that is lost.
func (c *Cluster) WaitLinksUp(ctx context.Context, pods []*Pod, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pending := make([]*Pod, 0, len(pods))
	for _, p := range pods {
		if p != nil && !p.HostNetwork {
			pending = append(pending, p)
		}
	}
	for len(pending) > 0 {
		still := pending[:0]
		for _, p := range pending {
			up, err := c.podLinksUp(p)
			if err != nil {
				return err
			}
			if !up {
				still = append(still, p)
			}
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("links of pod %s not up after %s", pending[0].Key(), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (c *Cluster) podLinksUp(p *Pod) (bool, error) {
	h := c.NodeHandle(p.Node.Name)
	if h == nil {
		return false, fmt.Errorf("pod %s: node %s is gone", p.Key(), p.Node.Name)
	}
	l, err := h.LinkByIndex(p.HostIfindex)
	if err != nil {
		return false, fmt.Errorf("pod %s: %s: %w", p.Key(), p.HostVeth, err)
	}
	if l.Attrs().OperState != netlink.OperUp {
		return false, nil
	}
	up := false
	err = Do(p.NS, func() error {
		pl, err := netlink.LinkByIndex(p.Ifindex)
		if err != nil {
			return err
		}
		up = pl.Attrs().OperState == netlink.OperUp
		return nil
	})
	return up, err
}
