package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/datapath/bpffs"
	"github.com/podlab/podlab/topo"
)

// BPFFSRoot is where bpffs is mounted; every pinned object of podlab lives
// under BPFFSRoot/podlab/<lab>/.
const BPFFSRoot = bpffs.Root

// DefaultConntrackSize is the number of conntrack entries of a node when
// NodeConfig.ConntrackSize is zero.
const DefaultConntrackSize = 131072

// PinDirFor returns the default pin directory of a node:
// /sys/fs/bpf/podlab/<lab>/<node>.
func PinDirFor(lab, node string) string {
	return filepath.Join(BPFFSRoot, "podlab", lab, node)
}

// NodeConfig describes the node a Datapath is loaded into. Ifindexes are
// those of the node's namespace.
type NodeConfig struct {
	Lab, Node string
	// NS is the node's network namespace. With a nil NS nothing is
	// attached (maps and programs only, for PROG_TEST_RUN tests).
	NS *topo.Namespace
	// NodeIP is the node's underlay (eth0) address; RouterIP the pods'
	// gateway held by cilium_host.
	NodeIP, RouterIP netip.Addr
	// VXLANIfindex is cilium_vxlan (from-overlay is attached to its
	// ingress; 0 skips it). Eth0Ifindex and HostIfindex are recorded in the
	// node configuration for the programs.
	VXLANIfindex, Eth0Ifindex, HostIfindex int
	// PinDir holds the node's pinned maps and links; empty means
	// PinDirFor(Lab, Node). It must be below /sys/fs/bpf/podlab/<Lab>/.
	PinDir string
	// ConntrackSize is the conntrack map's capacity (0: DefaultConntrackSize).
	// A pinned map of another size is refused.
	ConntrackSize int
	// MonitorAggregation traces only packets that open, close or first
	// answer a connection (Cilium's "medium" aggregation) instead of every
	// forwarded packet.
	MonitorAggregation bool
	// NoRedirectPeer delivers to local pods with bpf_redirect to the lxc
	// (to-container then sees the packet, marked as already judged)
	// instead of bpf_redirect_peer.
	NoRedirectPeer bool
	// ForceNetlink attaches with a netlink clsact qdisc and bpf filters even
	// when the kernel has tcx.
	ForceNetlink bool
	// Logger receives progress and warnings (nil: slog.Default()).
	Logger *slog.Logger
	// ServiceCIDR is routed to cilium_host, where from-host translates
	// ClusterIPs for the node's own processes (zero: topo.DefaultServiceCIDR).
	ServiceCIDR netip.Prefix
	// Phases, when set, receives the time Load spends creating maps,
	// loading programs and attaching ("node.maps", "node.programs",
	// "node.attach").
	Phases *topo.Phases
}

// Flags of node_config.flags (bpf/lib/common.h).
const (
	cfgMonitorAggregation = 1 << 0
	cfgNoRedirectPeer     = 1 << 1
	cfgHasServices        = 1 << 2
	cfgHasExternal        = 1 << 3
	cfgHasL2Announce      = 1 << 4
)

// Map names (bpf/lib/maps.h).
const (
	mapConfig    = "config"
	mapEndpoints = "endpoints"
	mapIPCache   = "ipcache"
	mapPolicy    = "policy"
	mapConntrack = "conntrack"
	mapMetrics   = "metrics"
	mapEvents    = "events"
	mapServices  = "lb_services"
	mapBackends  = "lb_backends"
	mapAffinity  = "lb_affinity"
)

var nodeMapNames = []string{mapConfig, mapEndpoints, mapIPCache, mapPolicy, mapConntrack, mapMetrics, mapEvents, mapServices, mapBackends, mapAffinity, mapNodePortFwd, mapNodePortRev, mapL2Responder}

// Program roles: one BPF object per attachment role.
const (
	roleFromContainer = "from-container"
	roleToContainer   = "to-container"
	roleFromOverlay   = "from-overlay"
	roleFromNetdev    = "from-netdev"
	roleFromHost      = "from-host"
)

type programSet struct {
	fromContainer, toContainer, fromOverlay *ebpf.Program
	fromNetdev, fromHost                    *ebpf.Program
}

func (p *programSet) byRole(role string) *ebpf.Program {
	switch role {
	case roleFromContainer:
		return p.fromContainer
	case roleToContainer:
		return p.toContainer
	case roleFromOverlay:
		return p.fromOverlay
	case roleFromNetdev:
		return p.fromNetdev
	case roleFromHost:
		return p.fromHost
	}
	return nil
}

func (p *programSet) close() {
	for _, prog := range []*ebpf.Program{p.fromContainer, p.toContainer, p.fromOverlay, p.fromNetdev, p.fromHost} {
		if prog != nil {
			prog.Close()
		}
	}
}

// Datapath is the eBPF datapath of one node: its pinned maps, its loaded
// programs and their attachments. Its methods are safe for concurrent use.
type Datapath struct {
	cfg NodeConfig
	log *slog.Logger

	mu          sync.Mutex
	maps        map[string]*ebpf.Map
	progs       programSet
	attachments map[string]*attachment
	endpoints   map[uint16]Endpoint
	policies    map[uint16]*endpointPolicyState
	services    int // entries of lb_services
	external    int // LoadBalancer and external IP entries of lb_services
	announced   int // entries of l2_responder
	closed      bool

	// nlMu guards nl, the node namespace's netlink handle shared by the
	// netlink (clsact) attachments.
	nlMu sync.Mutex
	nl   *netlink.Handle
}

func (c *NodeConfig) validate() error {
	if c.Lab == "" || c.Node == "" || strings.ContainsAny(c.Lab+c.Node, "/") {
		return fmt.Errorf("node config: lab %q and node %q must be non-empty names", c.Lab, c.Node)
	}
	if !c.NodeIP.Is4() {
		return fmt.Errorf("node config %s: node IP %v is not IPv4", c.Node, c.NodeIP)
	}
	if !c.RouterIP.Is4() {
		return fmt.Errorf("node config %s: router IP %v is not IPv4", c.Node, c.RouterIP)
	}
	if c.VXLANIfindex < 0 || c.Eth0Ifindex < 0 || c.HostIfindex < 0 {
		return fmt.Errorf("node config %s: negative ifindex", c.Node)
	}
	if c.ConntrackSize < 0 {
		return fmt.Errorf("node config %s: negative conntrack size", c.Node)
	}
	if c.PinDir == "" {
		c.PinDir = PinDirFor(c.Lab, c.Node)
	}
	c.PinDir = filepath.Clean(c.PinDir)
	labDir := filepath.Join(BPFFSRoot, "podlab", c.Lab)
	if !strings.HasPrefix(c.PinDir, labDir+"/") {
		return fmt.Errorf("node config %s: pin dir %s is not below %s", c.Node, c.PinDir, labDir)
	}
	return nil
}

// Load loads the datapath of a node: it mounts bpffs if needed, creates (or
// reuses, when pinned by an earlier Load) the node's maps, writes the node
// configuration, loads the programs and attaches from-overlay to the VXLAN
// device. Endpoints found in a pinned endpoint map are re-attached with the
// new programs, so Load also takes over a node whose datapath another
// process loaded.
func Load(cfg NodeConfig) (*Datapath, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lab", cfg.Lab, "node", cfg.Node)
	if err := bpffs.Ensure(); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(cfg.PinDir)
	fresh := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(filepath.Join(cfg.PinDir, "links"), 0o700); err != nil {
		return nil, fmt.Errorf("create pin dir %s: %w", cfg.PinDir, err)
	}
	d := &Datapath{
		cfg:         cfg,
		log:         log,
		maps:        map[string]*ebpf.Map{},
		attachments: map[string]*attachment{},
		endpoints:   map[uint16]Endpoint{},
		policies:    map[uint16]*endpointPolicyState{},
	}
	if err := d.load(); err != nil {
		for _, a := range d.attachments {
			_ = a.detach(d)
		}
		d.closeHandle()
		d.progs.close()
		for _, m := range d.maps {
			if fresh {
				_ = m.Unpin()
			}
			m.Close()
		}
		if fresh {
			_ = os.RemoveAll(cfg.PinDir)
		}
		return nil, err
	}
	log.Info("datapath loaded", "pin_dir", cfg.PinDir, "endpoints", len(d.endpoints))
	return d, nil
}

func (d *Datapath) load() error {
	start := time.Now()
	if err := d.openMaps(); err != nil {
		return err
	}
	if err := d.restoreState(); err != nil {
		return err
	}
	if err := d.writeConfig(); err != nil {
		return err
	}
	d.cfg.Phases.Since("node.maps", start)
	start = time.Now()
	progs, err := loadPrograms(d.maps)
	if err != nil {
		return err
	}
	d.progs = progs
	d.cfg.Phases.Since("node.programs", start)
	start = time.Now()
	defer d.cfg.Phases.Since("node.attach", start)
	if d.cfg.VXLANIfindex > 0 {
		if err := d.attach(roleFromOverlay, d.cfg.VXLANIfindex, true); err != nil {
			return err
		}
	}
	if err := d.attachServices(); err != nil {
		return err
	}
	for _, ep := range d.endpoints {
		if err := d.attachEndpoint(ep); err != nil {
			return err
		}
	}
	return nil
}

func (d *Datapath) openMaps() error {
	spec, err := loadFromContainer()
	if err != nil {
		return fmt.Errorf("load map specs: %w", err)
	}
	for _, name := range nodeMapNames {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("map %s missing from the BPF object", name)
		}
		ms = ms.Copy()
		if name == mapConntrack {
			ms.MaxEntries = DefaultConntrackSize
			if d.cfg.ConntrackSize > 0 {
				ms.MaxEntries = uint32(d.cfg.ConntrackSize)
			}
		}
		ms.Pinning = ebpf.PinByName
		m, err := ebpf.NewMapWithOptions(ms, ebpf.MapOptions{PinPath: d.cfg.PinDir})
		if err != nil {
			return fmt.Errorf("create or open map %s in %s: %w", name, d.cfg.PinDir, err)
		}
		d.maps[name] = m
	}
	return nil
}

func (d *Datapath) writeConfig() error {
	var flags uint32
	if d.cfg.MonitorAggregation {
		flags |= cfgMonitorAggregation
	}
	if d.cfg.NoRedirectPeer {
		flags |= cfgNoRedirectPeer
	}
	if d.services > 0 {
		flags |= cfgHasServices
	}
	if d.external > 0 {
		flags |= cfgHasExternal
	}
	if d.announced > 0 {
		flags |= cfgHasL2Announce
	}
	v := fromContainerNodeConfig{
		NodeIp:       ipv4BE(d.cfg.NodeIP),
		RouterIp:     ipv4BE(d.cfg.RouterIP),
		VxlanIfindex: uint32(d.cfg.VXLANIfindex),
		HostIfindex:  uint32(d.cfg.HostIfindex),
		Eth0Ifindex:  uint32(d.cfg.Eth0Ifindex),
		HostIdentity: 1,
		Flags:        flags,
		Configured:   1,
	}
	if err := d.maps[mapConfig].Put(uint32(0), &v); err != nil {
		return fmt.Errorf("write node config of %s: %w", d.cfg.Node, err)
	}
	return nil
}

// loadPrograms loads one BPF object per role against the node's maps.
func loadPrograms(maps map[string]*ebpf.Map) (programSet, error) {
	var ps programSet
	objs := []struct {
		role string
		spec func() (*ebpf.CollectionSpec, error)
		prog string
		slot **ebpf.Program
	}{
		{roleFromContainer, loadFromContainer, "cil_from_container", &ps.fromContainer},
		{roleToContainer, loadToContainer, "cil_to_container", &ps.toContainer},
		{roleFromOverlay, loadFromOverlay, "cil_from_overlay", &ps.fromOverlay},
		{roleFromNetdev, loadFromNetdev, "cil_from_netdev", &ps.fromNetdev},
		{roleFromHost, loadFromHost, "cil_from_host", &ps.fromHost},
	}
	for _, o := range objs {
		prog, err := loadProgram(o.spec, o.prog, maps)
		if err != nil {
			ps.close()
			return programSet{}, fmt.Errorf("load %s: %w", o.role, err)
		}
		*o.slot = prog
	}
	return ps, nil
}

func loadProgram(specFn func() (*ebpf.CollectionSpec, error), name string, maps map[string]*ebpf.Map) (*ebpf.Program, error) {
	spec, err := specFn()
	if err != nil {
		return nil, err
	}
	coll, err := newCollection(spec, maps)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("verifier rejected %s: %+v", name, ve)
		}
		return nil, err
	}
	defer coll.Close()
	prog := coll.DetachProgram(name)
	if prog == nil {
		return nil, fmt.Errorf("program %s missing from the BPF object", name)
	}
	return prog, nil
}

// newCollection loads an object whose maps of the same name are replaced
// by the node's maps.
func newCollection(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map) (*ebpf.Collection, error) {
	repl := map[string]*ebpf.Map{}
	for n, ms := range spec.Maps {
		if m, ok := maps[n]; ok {
			ms.MaxEntries = m.MaxEntries()
			repl[n] = m
		}
	}
	return ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
}

// Reload loads the programs again from the embedded objects and swaps them
// in on every attachment atomically. Maps, and so conntrack and policy, are
// kept: established connections survive.
func (d *Datapath) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("reload: datapath closed")
	}
	if err := d.writeConfig(); err != nil {
		return err
	}
	progs, err := loadPrograms(d.maps)
	if err != nil {
		return fmt.Errorf("reload %s: %w", d.cfg.Node, err)
	}
	for _, a := range d.attachments {
		if err := a.replace(d, progs.byRole(a.role)); err != nil {
			progs.close()
			return fmt.Errorf("reload %s: %w", d.cfg.Node, err)
		}
	}
	old := d.progs
	d.progs = progs
	old.close()
	d.log.Info("datapath reloaded", "attachments", len(d.attachments))
	return nil
}

// Close detaches every program, unpins every map and link and removes the
// node's pin directory.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for key, a := range d.attachments {
		if err := a.detach(d); err != nil {
			errs = append(errs, err)
		}
		delete(d.attachments, key)
	}
	d.closeHandle()
	d.progs.close()
	for name, m := range d.maps {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map %s: %w", name, err))
		}
		m.Close()
	}
	if err := os.RemoveAll(d.cfg.PinDir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", d.cfg.PinDir, err))
	}
	// Remove the lab's and podlab's directories when this was the last node.
	labDir := filepath.Dir(d.cfg.PinDir)
	_ = os.Remove(labDir)
	_ = os.Remove(filepath.Dir(labDir))
	return errors.Join(errs...)
}

// Config returns the node configuration the datapath was loaded with.
func (d *Datapath) Config() NodeConfig { return d.cfg }

// ipv4BE returns an IPv4 address as the uint32 whose memory holds it in
// network byte order (a __be32 in C).
func ipv4BE(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func addrFromBE(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// markJudged mirrors MARK_JUDGED (bpf/lib/common.h): the skb mark of packets
// a redirect path already judged.
const markJudged = 0x0c1a0000
