package cilium

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/bpffs"
	"github.com/podlab/podlab/topo"
)

// VXLANPort is the UDP port of the lab's VXLAN devices (Cilium's default).
const VXLANPort = 8472

// NodeConfig describes the node Cilium's programs are loaded into.
type NodeConfig struct {
	Lab, Node string
	// NS is the node's network namespace. With a nil NS nothing is
	// attached (maps and programs only, for BPF_PROG_TEST_RUN).
	NS       *topo.Namespace
	NodeIP   netip.Addr
	RouterIP netip.Addr
	HostMAC  net.HardwareAddr // cilium_host
	// Ifindexes in the node namespace.
	VXLANIfindex, HostIfindex, NetIfindex, Eth0Ifindex int
	MTU                                                int
	// Netlink attaches with clsact + bpf filters instead of tcx links.
	Netlink bool
	// MonitorAggregation compiles Cilium's "medium" monitor aggregation in.
	MonitorAggregation bool
	Log                *slog.Logger
}

// PinDir returns where a node's Cilium maps are pinned:
// /sys/fs/bpf/podlab/<lab>/<node>.
func PinDir(lab, node string) string { return filepath.Join(topo.BPFDir(lab), node) }

// Node is Cilium's datapath on one lab node: bpf_overlay on cilium_vxlan,
// bpf_host on cilium_host, cilium_net and eth0, and one bpf_lxc per
// endpoint, sharing the node's pinned maps.
type Node struct {
	cfg    NodeConfig
	objs   *Objects
	pinDir string
	log    *slog.Logger

	overlay  *ebpf.Collection
	attached []*attachment
	// hostColls are bpf_host's collections, kept only without a namespace
	// (for BPF_PROG_TEST_RUN).
	hostColls []*ebpf.Collection
	hostMark  *ebpf.Program
	netMAC    net.HardwareAddr // cilium_net
	vxMAC     net.HardwareAddr // cilium_vxlan
	stopLive  chan struct{}
	liveDone  chan struct{}

	// Shared maps, opened from the overlay's collection.
	lxc, ipcache, callPolicy, egressCall, services, backends, revNat, metrics, events, ct4, ctAny4 *ebpf.Map
	devices, l2resp, runtimeCfg                                                                    *ebpf.Map

	mu  sync.Mutex
	eps map[uint16]*endpointState
	// pending holds policies of endpoints not loaded yet.
	pending map[uint16]map[policyKey]policyEntry
	lb      lbTables
	// LoadTimes are the durations of endpoint loads (verifier included).
	loadTimes []time.Duration
	// hostLoad is how long bpf_host's three loads and attachments took.
	hostLoad time.Duration
}

type endpointState struct {
	ep       Endpoint
	coll     *ebpf.Collection
	policy   *ebpf.Map
	attached []*attachment
	keys     map[policyKey]policyEntry
	callsPin string
}

// LoadNode compiles (or takes from the cache) Cilium's objects for the node,
// loads bpf_overlay, pins the node's shared maps, attaches
// cil_from_overlay/cil_to_overlay to cilium_vxlan and bpf_host to
// cilium_host, cilium_net and eth0 (see loadHost).
func LoadNode(ctx context.Context, b *Builder, cfg NodeConfig) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	objs, err := b.Objects(ctx, Flavour{EncapIfindex: cfg.VXLANIfindex, NodeIP: cfg.NodeIP, RouterIP: cfg.RouterIP, Aggregation: cfg.MonitorAggregation})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, objs: objs, pinDir: PinDir(cfg.Lab, cfg.Node), log: cfg.Log, eps: map[uint16]*endpointState{}, pending: map[uint16]map[policyKey]policyEntry{}}
	n.lb.init()
	if err := bpffs.Ensure(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.pinDir, 0o755); err != nil {
		return nil, fmt.Errorf("cilium pin dir of %s: %w", cfg.Node, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = n.Close()
		}
	}()
	var vxMAC net.HardwareAddr
	if cfg.NS != nil {
		if vxMAC, err = n.linkMAC(cfg.VXLANIfindex); err != nil {
			return nil, err
		}
		if n.netMAC, err = n.linkMAC(cfg.NetIfindex); err != nil {
			return nil, err
		}
	}
	n.vxMAC = vxMAC
	coll, spec, manual, err := n.loadOverlayObjects()
	if err != nil {
		return nil, err
	}
	n.overlay = coll
	// The node's shared maps, pinned by the overlay's load or created now
	// from bpf_lxc's specs (maps only bpf_lxc declares).
	for _, m := range []struct {
		dst  **ebpf.Map
		name string
	}{
		{&n.lxc, mapLxc}, {&n.ipcache, mapIPCache}, {&n.services, mapServices}, {&n.backends, mapBackends},
		{&n.revNat, mapRevNat}, {&n.metrics, mapMetrics}, {&n.events, mapEvents}, {&n.ct4, mapCT4}, {&n.ctAny4, mapCTAny4},
		{&n.callPolicy, mapCallPolicy}, {&n.egressCall, mapEgressCall},
	} {
		if *m.dst, err = n.sharedMap(objs.lxc, m.name); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct {
		dst  **ebpf.Map
		name string
	}{{&n.devices, mapDevices}, {&n.l2resp, mapL2Resp}, {&n.runtimeCfg, mapRuntimeCfg}} {
		if *m.dst, err = n.sharedMap(objs.host, m.name); err != nil {
			return nil, err
		}
	}
	// Every other map bpf_lxc or bpf_host pins by name is created now, so
	// that endpoints loading in parallel only ever open existing pins.
	for _, spec := range []*ebpf.CollectionSpec{objs.lxc, objs.host} {
		for name, ms := range spec.Maps {
			if ms.Pinning != ebpf.PinByName || name == mapPolicy {
				continue
			}
			m, err := n.sharedMap(spec, name)
			if err != nil {
				return nil, err
			}
			m.Close()
		}
	}
	if err := n.hookOverlay(coll, spec, manual); err != nil {
		return nil, err
	}
	hostStart := time.Now()
	if err := n.loadHost(); err != nil {
		return nil, err
	}
	n.hostLoad = time.Since(hostStart)
	if cfg.NS != nil {
		if err := n.routeProxy(); err != nil {
			return nil, err
		}
		n.startLiveness()
	}
	ok = true
	return n, nil
}

// loadOverlayObjects applies the load steps to bpf_overlay for the node's
// cilium_vxlan and loads it; the maps it pins by name are the node's
// shared maps (a second load, Reload, gets the same maps).
func (n *Node) loadOverlayObjects() (*ebpf.Collection, *ebpf.CollectionSpec, []string, error) {
	consts := n.nodeConstants()
	consts["interface_ifindex"] = uint32(n.cfg.VXLANIfindex)
	consts["interface_mac"] = mac8(n.vxMAC)
	spec, manual, err := prepare(loadRequest{
		spec: n.objs.overlay, constants: consts, pinDir: n.pinDir,
		renames: map[string]string{mapCalls: "cilium_calls_overlay"},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bpf_overlay for %s: %w", n.cfg.Node, err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: n.pinDir}})
	if err != nil {
		return nil, nil, nil, verifierError(fmt.Sprintf("load bpf_overlay on %s", n.cfg.Node), err)
	}
	return coll, spec, manual, nil
}

// hookOverlay puts cil_from_overlay/cil_to_overlay on cilium_vxlan
// (attached, or swapped in on a reload) and pins the overlay's tail-call
// map.
func (n *Node) hookOverlay(coll *ebpf.Collection, spec *ebpf.CollectionSpec, manual []string) error {
	for _, a := range []struct {
		prog    string
		ingress bool
	}{{"cil_from_overlay", true}, {"cil_to_overlay", false}} {
		p := coll.Programs[a.prog]
		if p == nil {
			return fmt.Errorf("bpf_overlay has no program %s", a.prog)
		}
		if err := n.hookUp(&n.attached, a.prog, p, n.cfg.VXLANIfindex, a.ingress); err != nil {
			return err
		}
	}
	for _, name := range manual {
		if err := pinMap(coll.Maps[name], filepath.Join(n.pinDir, spec.Maps[name].Name)); err != nil {
			return err
		}
	}
	return nil
}

// sharedMap creates (or opens) one pinned map of spec by itself.
func (n *Node) sharedMap(spec *ebpf.CollectionSpec, name string) (*ebpf.Map, error) {
	ms := spec.Maps[name]
	if ms == nil {
		return nil, fmt.Errorf("cilium object has no map %s", name)
	}
	ms = ms.Copy()
	capSize(ms)
	m, err := ebpf.NewMapWithOptions(ms, ebpf.MapOptions{PinPath: n.pinDir})
	if err != nil {
		return nil, fmt.Errorf("map %s on %s: %w", name, n.cfg.Node, err)
	}
	return m, nil
}

func pinMap(m *ebpf.Map, path string) error {
	if m == nil {
		return fmt.Errorf("pin %s: no such map", path)
	}
	_ = os.Remove(path)
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin %s: %w", path, err)
	}
	return nil
}

// nodeConstants are the load-time constants every object of the node gets.
func (n *Node) nodeConstants() map[string]any {
	c := map[string]any{
		"cilium_host_ifindex": uint32(n.cfg.HostIfindex),
		"cilium_net_ifindex":  uint32(n.cfg.NetIfindex),
		// eth0 is the direct-routing device (NodePort's native device);
		// BPF host routing is on, as the agent enables it with
		// kube-proxy replacement on a kernel that has the FIB helpers.
		"direct_routing_dev_ifindex":     uint32(n.cfg.Eth0Ifindex),
		"enable_bpf_host_routing":        true,
		"supports_fib_lookup_skip_neigh": true,
		"supports_fib_lookup_src":        true,
		// --enable-no-service-endpoints-routable (the agent's default):
		// a frontend without backends is answered (ICMP unreachable,
		// SERVICE_NO_BACKEND_RESPONSE) rather than passed to the stack.
		"enable_no_service_endpoints_routable": true,
		"device_mtu":                           uint16(n.cfg.MTU),
		"tunnel_port":                          uint16(VXLANPort),
		"tunnel_protocol":                      uint8(1), // TUNNEL_PROTOCOL_VXLAN
		"trace_payload_len":                    uint32(128),
		"nodeport_port_min":                    uint16(30000),
		"nodeport_port_max":                    uint16(32767),
		// Per-endpoint routes (see compileDefines): local delivery
		// marks the source identity and hands the packet to the pod's
		// lxc veth, whose cil_to_container enforces ingress policy.
		"enable_endpoint_routes": true,
		// Off (--enable-identity-mark=false), unlike the agent's default.
		// With it, bpf_lxc marks a pod's packet IDENTITY (0xf00) before
		// local delivery, and a redirect to the L7 proxy there (the
		// destination's ingress policy, run at the source with BPF host
		// routing) only ORs TO_PROXY (0x200) into it: the socket-assigned
		// packet misses "fwmark 0x200/0xf00 lookup 2004", is routed to the
		// pod and dropped by the kernel. Cilium's agent re-marks such
		// packets with an iptables rule (mangle PREROUTING "-m socket
		// --transparent -j MARK --set-mark 0x200"), which a lab node,
		// without iptables, does not have.
		"enable_identity_mark": false,
		// --enable-bpf-tproxy: the programs hand connections redirected
		// to the L7 proxy to its transparent socket (bpf_sk_assign) and
		// the node's policy routing (tables 2004/2005) does the rest.
		"enable_tproxy": true,
	}
	if len(n.cfg.HostMAC) == 6 {
		c["cilium_host_mac"] = mac8(n.cfg.HostMAC)
	}
	if len(n.netMAC) == 6 {
		c["cilium_net_mac"] = mac8(n.netMAC)
	}
	return c
}

func mac8(m net.HardwareAddr) [8]byte {
	var b [8]byte
	copy(b[:], m)
	return b
}

func (n *Node) linkMAC(ifindex int) (net.HardwareAddr, error) {
	h, err := n.cfg.NS.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("ifindex %d in %s: %w", ifindex, n.cfg.NS.Name, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// attachment is one program on one hook of one device.
type attachment struct {
	prog    string
	ifindex int
	ingress bool
	// first puts the program before the others on its hook (tcx head, or
	// the lower netlink filter priority).
	first bool
	tcx   link.Link
}

// Netlink filter priorities: the host mark runs before Cilium's programs.
const (
	prioFirst  = 1
	prioCilium = 2
)

func (a *attachment) prio() uint16 {
	if a.first {
		return prioFirst
	}
	return prioCilium
}

func hook(ingress bool) string {
	if ingress {
		return "ingress"
	}
	return "egress"
}

// attach puts prog on the ingress or egress hook of ifindex inside the node
// namespace (tcx, or a clsact bpf filter with NodeConfig.Netlink).
func (n *Node) attach(name string, prog *ebpf.Program, ifindex int, ingress, first bool) (*attachment, error) {
	if n.cfg.NS == nil {
		return nil, nil // maps and programs only (PROG_TEST_RUN)
	}
	a := &attachment{prog: name, ifindex: ifindex, ingress: ingress, first: first}
	if !n.cfg.Netlink {
		typ := ebpf.AttachTCXEgress
		if ingress {
			typ = ebpf.AttachTCXIngress
		}
		var anchor link.Anchor
		if first {
			anchor = link.Head()
		}
		err := topo.Do(n.cfg.NS, func() error {
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: typ, Anchor: anchor})
			a.tcx = l
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s of ifindex %d in %s: %w", name, hook(ingress), ifindex, n.cfg.NS.Name, err)
		}
		return a, nil
	}
	h, err := n.cfg.NS.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	qdisc := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := h.QdiscAdd(qdisc); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact on ifindex %d in %s: %w", ifindex, n.cfg.NS.Name, err)
	}
	if err := h.FilterReplace(filterOf(ifindex, ingress, a.prio(), prog.FD(), name)); err != nil {
		return nil, fmt.Errorf("attach %s filter to %s of ifindex %d in %s: %w", name, hook(ingress), ifindex, n.cfg.NS.Name, err)
	}
	return a, nil
}

func filterOf(ifindex int, ingress bool, prio uint16, fd int, name string) *netlink.BpfFilter {
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	return &netlink.BpfFilter{
		FilterAttrs:  netlink.FilterAttrs{LinkIndex: ifindex, Parent: parent, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: prio},
		Fd:           fd,
		Name:         name,
		DirectAction: true,
	}
}

func (n *Node) detach(a *attachment) error {
	if a.tcx != nil {
		if err := a.tcx.Close(); err != nil {
			return fmt.Errorf("detach %s from ifindex %d: %w", a.prog, a.ifindex, err)
		}
		return nil
	}
	h, err := n.cfg.NS.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	f := filterOf(a.ifindex, a.ingress, a.prio(), 0, a.prog)
	if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete %s filter of ifindex %d in %s: %w", a.prog, a.ifindex, n.cfg.NS.Name, err)
	}
	return nil
}

// hookUp attaches prog to the hook of ifindex, or, when list already has
// this program's attachment there (a reload), swaps the new program in
// atomically: tcx link update, or a netlink filter replaced in place. No
// packet meets an empty hook.
func (n *Node) hookUp(list *[]*attachment, name string, prog *ebpf.Program, ifindex int, ingress bool) error {
	for _, a := range *list {
		if a.prog == name && a.ifindex == ifindex && a.ingress == ingress {
			return n.replace(a, prog)
		}
	}
	at, err := n.attach(name, prog, ifindex, ingress, false)
	if err != nil {
		return err
	}
	if at != nil {
		*list = append(*list, at)
	}
	return nil
}

// replace swaps the program of an attachment.
func (n *Node) replace(a *attachment, prog *ebpf.Program) error {
	if a.tcx != nil {
		if err := a.tcx.Update(prog); err != nil {
			return fmt.Errorf("replace %s on %s of ifindex %d: %w", a.prog, hook(a.ingress), a.ifindex, err)
		}
		return nil
	}
	h, err := n.cfg.NS.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.FilterReplace(filterOf(a.ifindex, a.ingress, a.prio(), prog.FD(), a.prog)); err != nil {
		return fmt.Errorf("replace %s filter on %s of ifindex %d in %s: %w", a.prog, hook(a.ingress), a.ifindex, n.cfg.NS.Name, err)
	}
	return nil
}

// EndpointProgram returns one of an endpoint's loaded programs (e.g.
// "cil_from_container") on a node loaded without a namespace (programs are
// only kept for PROG_TEST_RUN), nil otherwise.
func (n *Node) EndpointProgram(id uint16, name string) *ebpf.Program {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st := n.eps[id]; st != nil && st.coll != nil {
		return st.coll.Programs[name]
	}
	return nil
}

// Config returns the node's configuration.
func (n *Node) Config() NodeConfig { return n.cfg }

// PinDir returns where the node's maps are pinned.
func (n *Node) PinDir() string { return n.pinDir }

// Objects returns the compiled objects the node runs.
func (n *Node) Objects() *Objects { return n.objs }

// LoadTimes returns how long each endpoint load took so far.
func (n *Node) LoadTimes() []time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Duration(nil), n.loadTimes...)
}

// HostLoadTime returns how long loading and attaching bpf_host (on
// cilium_host, cilium_net and eth0, verifier included) took.
func (n *Node) HostLoadTime() time.Duration { return n.hostLoad }

// Close detaches everything, closes the programs and removes the node's
// pins.
func (n *Node) Close() error {
	n.stopLiveness()
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for id, st := range n.eps {
		errs = append(errs, n.removeEndpointLocked(id, st))
	}
	for _, a := range n.attached {
		errs = append(errs, n.detach(a))
	}
	n.attached = nil
	if n.overlay != nil {
		n.overlay.Close()
		n.overlay = nil
	}
	if n.hostMark != nil {
		n.hostMark.Close()
		n.hostMark = nil
	}
	for _, c := range n.hostColls {
		c.Close()
	}
	n.hostColls = nil
	for _, m := range []*ebpf.Map{n.lxc, n.ipcache, n.services, n.backends, n.revNat, n.metrics, n.events, n.ct4, n.ctAny4, n.callPolicy, n.egressCall, n.devices, n.l2resp, n.runtimeCfg} {
		if m != nil {
			m.Close()
		}
	}
	if err := os.RemoveAll(n.pinDir); err != nil {
		errs = append(errs, fmt.Errorf("remove pins of %s: %w", n.cfg.Node, err))
	}
	// The lab's directory goes with its last node.
	_ = os.Remove(filepath.Dir(n.pinDir))
	return errors.Join(errs...)
}

// routeProxy installs the L7 proxy's policy routing in the node namespace
// (the rules and tables Cilium's agent installs for its proxy: marked
// TO_PROXY packets delivered locally, the proxy's own packets routed to
// cilium_host, whose cil_from_host delivers them).
func (n *Node) routeProxy() error {
	h, err := n.cfg.NS.Handle()
	if err != nil {
		return fmt.Errorf("proxy routes on %s: %w", n.cfg.Node, err)
	}
	defer h.Close()
	return datapath.RouteProxy(h, n.cfg.HostIfindex, n.cfg.NS.Name)
}
