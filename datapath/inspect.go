package datapath

// Read-only inspection of a live datapath for tools that walk a lab (podlab
// trace, podlab whois): open the maps an attached program uses, decode
// endpoints, ipcache and policy entries, and judge a crafted packet with a
// fresh copy of an attached program (DryRun) without changing the lab.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// Program roles as ProgramRole reports them.
const (
	RoleFromContainer = roleFromContainer
	RoleToContainer   = roleToContainer
	RoleFromOverlay   = roleFromOverlay
	RoleFromNetdev    = roleFromNetdev
	RoleFromHost      = roleFromHost
)

// roleObjects maps a role to its embedded object and program name.
var roleObjects = map[string]struct {
	spec func() (*ebpf.CollectionSpec, error)
	prog string
}{
	roleFromContainer: {loadFromContainer, "cil_from_container"},
	roleToContainer:   {loadToContainer, "cil_to_container"},
	roleFromOverlay:   {loadFromOverlay, "cil_from_overlay"},
	roleFromNetdev:    {loadFromNetdev, "cil_from_netdev"},
	roleFromHost:      {loadFromHost, "cil_from_host"},
}

// TC actions a program returns (linux/pkt_cls.h).
const (
	ActOK       = 0
	ActShot     = 2
	ActRedirect = 7
)

// ProgramRole returns the datapath role of a loaded program from its kernel
// name (which the kernel truncates to 15 bytes), or "" when the program is
// not one of podlab's.
func ProgramRole(kernelName string) string {
	for role, o := range roleObjects {
		if kernelName != "" && strings.HasPrefix(o.prog, kernelName) {
			return role
		}
	}
	return ""
}

// LiveMaps are the maps of a live datapath, opened by name: either those an
// attached program uses (OpenProgramMaps) or those pinned for a node
// (OpenPinnedMaps). Nothing here writes to them.
type LiveMaps struct {
	maps map[string]*ebpf.Map
}

// OpenProgramMaps opens the maps the loaded program id uses, by their kernel
// names.
func OpenProgramMaps(id ebpf.ProgramID) (*LiveMaps, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open program %d: %w", id, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("info of program %d: %w", id, err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return nil, fmt.Errorf("program %d: the kernel does not report its maps", id)
	}
	l := &LiveMaps{maps: map[string]*ebpf.Map{}}
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("open map %d of program %d: %w", mid, id, err)
		}
		mi, err := m.Info()
		if err != nil {
			m.Close()
			l.Close()
			return nil, fmt.Errorf("info of map %d: %w", mid, err)
		}
		if _, dup := l.maps[mi.Name]; dup || mi.Name == "" {
			m.Close()
			continue
		}
		l.maps[mi.Name] = m
	}
	return l, nil
}

// OpenPinnedMaps opens the pinned maps of node in lab read-only. Maps that
// are not pinned are left out; a node without a pin directory is an error
// wrapping os.ErrNotExist.
func OpenPinnedMaps(lab, node string) (*LiveMaps, error) {
	dir := PinDirFor(lab, node)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open pinned maps of %s/%s: %w", lab, node, err)
	}
	l := &LiveMaps{maps: map[string]*ebpf.Map{}}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue // not a map (or not ours)
		}
		l.maps[e.Name()] = m
	}
	return l, nil
}

// AddPinned adds the pinned maps of node in lab that l does not hold yet
// (read-write descriptors: they may stand in for a program's maps, which
// the programs only read when DryRun hands them over). A node without pins
// adds nothing.
func (l *LiveMaps) AddPinned(lab, node string) {
	dir := PinDirFor(lab, node)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() || l.maps[e.Name()] != nil {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue
		}
		l.maps[e.Name()] = m
	}
}

// Close closes every map.
func (l *LiveMaps) Close() {
	if l == nil {
		return
	}
	for _, m := range l.maps {
		m.Close()
	}
}

// Map returns the map called name, or nil.
func (l *LiveMaps) Map(name string) *ebpf.Map { return l.maps[name] }

// Names returns the names of the open maps.
func (l *LiveMaps) Names() []string {
	out := make([]string, 0, len(l.maps))
	for n := range l.maps {
		out = append(out, n)
	}
	return out
}

// EndpointView is a local endpoint as the endpoints map holds it.
type EndpointView struct {
	ID              uint16
	IP              netip.Addr
	Identity        identity.ID
	Ifindex         int
	MAC, HostMAC    net.HardwareAddr
	IngressEnforced bool
	EgressEnforced  bool
}

// Endpoint looks up the local endpoint with address ip.
func (l *LiveMaps) Endpoint(ip netip.Addr) (EndpointView, bool, error) {
	m := l.maps[mapEndpoints]
	if m == nil || !ip.Is4() {
		return EndpointView{}, false, nil
	}
	var v fromContainerEndpointInfo
	if err := m.Lookup(ipv4BE(ip), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return EndpointView{}, false, nil
		}
		return EndpointView{}, false, fmt.Errorf("look up endpoint %s: %w", ip, err)
	}
	return endpointView(ip, &v), true, nil
}

func endpointView(ip netip.Addr, v *fromContainerEndpointInfo) EndpointView {
	return EndpointView{
		ID: v.EpId, IP: ip, Identity: identity.ID(v.Identity), Ifindex: int(v.Ifindex),
		MAC: append(net.HardwareAddr(nil), v.PodMac[:]...), HostMAC: append(net.HardwareAddr(nil), v.LxcMac[:]...),
		IngressEnforced: v.Flags&epFlagIngressEnforced != 0, EgressEnforced: v.Flags&epFlagEgressEnforced != 0,
	}
}

// EP_F_* of bpf/lib/common.h.
const (
	epFlagIngressEnforced = 1 << 0
	epFlagEgressEnforced  = 1 << 1
)

// IPCacheEntry is the ipcache's answer for an address.
type IPCacheEntry struct {
	Prefix   netip.Prefix
	Identity identity.ID
	// Tunnel is the node the address is reached through (invalid when not
	// tunnelled).
	Tunnel netip.Addr
}

// IPCache looks ip up in the ipcache (longest prefix match).
func (l *LiveMaps) IPCache(ip netip.Addr) (IPCacheEntry, bool, error) {
	m := l.maps[mapIPCache]
	if m == nil || !ip.Is4() {
		return IPCacheEntry{}, false, nil
	}
	// An LPM trie's lookup is a longest-prefix match: ask for the /32.
	k := fromContainerIpcacheKey{Prefixlen: 32, Addr: ipv4BE(ip)}
	var v fromContainerIpcacheValue
	if err := m.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return IPCacheEntry{}, false, nil
		}
		return IPCacheEntry{}, false, fmt.Errorf("look up %s in the ipcache: %w", ip, err)
	}
	e := IPCacheEntry{Prefix: netip.PrefixFrom(ip, 32), Identity: identity.ID(v.Identity)}
	if v.TunnelEp != 0 {
		e.Tunnel = addrFromBE(v.TunnelEp)
	}
	// Find the prefix that matched: the longest one containing ip.
	var ik fromContainerIpcacheKey
	var iv fromContainerIpcacheValue
	best := -1
	it := m.Iterate()
	for it.Next(&ik, &iv) {
		p := netip.PrefixFrom(addrFromBE(ik.Addr), int(ik.Prefixlen)).Masked()
		if p.Contains(ip) && p.Bits() > best {
			best = p.Bits()
			e.Prefix = p
		}
	}
	return e, true, nil
}

// NodeIPs returns the node and router addresses of the node configuration.
func (l *LiveMaps) NodeIPs() (node, router netip.Addr, ok bool) {
	m := l.maps[mapConfig]
	if m == nil {
		return netip.Addr{}, netip.Addr{}, false
	}
	var v fromContainerNodeConfig
	if err := m.Lookup(uint32(0), &v); err != nil || v.Configured == 0 {
		return netip.Addr{}, netip.Addr{}, false
	}
	return addrFromBE(v.NodeIp), addrFromBE(v.RouterIp), true
}

// PolicyDecision is the policy entry that decides a packet, found the way
// the datapath probes the policy map (bpf/lib/policy.h).
type PolicyDecision struct {
	// Enforced is false when the endpoint does not enforce policy in that
	// direction: everything passes.
	Enforced bool
	// Found is false when no entry matched (default deny).
	Found bool
	// Identity is the peer identity of the entry (0: any peer).
	Identity identity.ID
	// Proto (0: any) and Port, with Level saying how the port matched:
	// 0 exact, 1 a 256-port block (Port is port>>8), 2 any port, 3 any
	// protocol.
	Proto uint8
	Port  uint16
	Level uint8
	Deny  bool
	Match PolicyMatch
}

// String renders the entry like "ingress from identity 12345 TCP/80 allow".
func (p PolicyDecision) String() string {
	if !p.Enforced {
		return "not enforced"
	}
	if !p.Found {
		return "no matching entry (default deny)"
	}
	peer := "any identity"
	if p.Identity != 0 {
		peer = fmt.Sprintf("identity %d", p.Identity)
	}
	var l4 string
	switch p.Level {
	case 0:
		l4 = fmt.Sprintf("%s/%d", policy.ProtoName(p.Proto), p.Port)
	case 1:
		l4 = fmt.Sprintf("%s/%d-%d", policy.ProtoName(p.Proto), uint32(p.Port)<<8, uint32(p.Port)<<8|0xff)
	case 2:
		l4 = policy.ProtoName(p.Proto) + "/any"
	default:
		l4 = "any protocol"
	}
	verdict := "allow"
	if p.Deny {
		verdict = "deny"
	}
	return fmt.Sprintf("%s %s %s (match %s)", peer, l4, verdict, p.Match)
}

// Policy finds the entry of endpoint ep's policy that decides a packet of
// protocol proto to port (the ICMP type for ICMP) exchanged with a peer of
// identity remote, in direction ingress (true) or egress.
func (l *LiveMaps) Policy(ep EndpointView, ingress bool, remote identity.ID, proto uint8, port uint16) (PolicyDecision, error) {
	d := PolicyDecision{Enforced: ep.EgressEnforced}
	dir := uint8(1)
	if ingress {
		d.Enforced, dir = ep.IngressEnforced, 0
	}
	if !d.Enforced {
		return d, nil
	}
	m, em := l.maps[mapPolicy], l.maps[mapEndpoints]
	if m == nil || em == nil {
		return d, errors.New("policy: the policy or endpoints map is not available")
	}
	var info fromContainerEndpointInfo
	if err := em.Lookup(ipv4BE(ep.IP), &info); err != nil {
		return d, fmt.Errorf("policy: look up endpoint %s: %w", ep.IP, err)
	}
	class := 3
	switch proto {
	case unix.IPPROTO_TCP:
		class = 0
	case unix.IPPROTO_UDP:
		class = 1
	case 132:
		class = 2
	}
	levels := info.Levels[dir][class]
	probes := []struct {
		id    uint32
		proto uint8
		port  uint16
		level uint8
	}{
		{uint32(remote), proto, port, 0}, {uint32(remote), proto, port >> 8, 1}, {uint32(remote), proto, 0, 2}, {uint32(remote), 0, 0, 3},
		{0, proto, port, 0}, {0, proto, port >> 8, 1}, {0, proto, 0, 2}, {0, 0, 0, 3},
	}
	for bit, p := range probes {
		if levels&(1<<bit) == 0 {
			continue
		}
		k := fromContainerPolicyKey{Identity: p.id, EpId: ep.ID, Port: p.port, Dir: dir, Proto: p.proto, Level: p.level}
		var v fromContainerPolicyValue
		if err := m.Lookup(&k, &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return d, fmt.Errorf("policy: look up %+v: %w", k, err)
		}
		d.Found, d.Identity, d.Proto, d.Port, d.Level = true, identity.ID(p.id), p.proto, p.port, p.level
		d.Deny, d.Match = v.Deny != 0, PolicyMatch(v.MatchType)
		return d, nil
	}
	return d, nil
}

// DryRunInput is a packet to judge with a fresh copy of an attached
// program.
type DryRunInput struct {
	// ProgramID is the attached program; its maps are the live maps.
	ProgramID ebpf.ProgramID
	// Role is the program's datapath role (ProgramRole).
	Role string
	// NS and Ifindex are the namespace and device the program is attached
	// to: the test run happens inside NS so that the kernel hands the
	// program an skb of that device, as on the real hook.
	NS      *topo.Namespace
	Ifindex int
	// Packet starts at the Ethernet header.
	Packet []byte
	// Mark is the skb mark.
	Mark uint32
	// TunnelID and TunnelRemote are the tunnel metadata a collect-metadata
	// VXLAN device attaches to a received packet (from-overlay only).
	TunnelID     uint32
	TunnelRemote netip.Addr
	// Lab and Node, when set, name the node whose pinned maps stand in for
	// maps the copy needs but the attached program does not use.
	Lab, Node string
	// Carry are entries to add to scratch maps besides the live ones, by
	// the ID of the live map they stand for: what earlier dry runs on the
	// same node wrote (DryRunResult.Written), so that a request's reply is
	// judged as a reply and gets its translations undone.
	Carry map[ebpf.MapID][]MapRecord
}

// MapRecord is one raw key/value pair of a map.
type MapRecord struct{ Key, Value []byte }

// DryRunResult is what the program decided.
type DryRunResult struct {
	// Verdict is the TC action (ActOK, ActShot, ActRedirect...).
	Verdict uint32
	// Packet is the packet as the program left it (MACs rewritten...).
	Packet []byte
	// Events are the events the run emitted (into a scratch ring buffer).
	Events []Event
	// TunnelSet is true when the program set a tunnel key (from-container
	// into the overlay), with TunnelRemote and TunnelID.
	TunnelSet    bool
	TunnelRemote netip.Addr
	TunnelID     uint32
	// SameCode is true when the attached program's instructions are those
	// of the embedded object the copy was loaded from (equal tags).
	SameCode bool
	// Seeded is how many live conntrack (and affinity) entries were copied
	// into the scratch maps.
	Seeded int
	// Empty names maps the attached program does not have, given empty
	// copies.
	Empty []string
	// Mark is the skb mark the program left.
	Mark uint32
	// Written holds, by the ID of the live map each stands for, the
	// entries of the scratch maps seeded from live ones (conntrack,
	// affinity, NodePort state) after the run.
	Written map[ebpf.MapID][]MapRecord
}

// Maps the programs write to (every bpf_map_update_elem and
// bpf_map_delete_elem target in bpf/, plus metrics and events): DryRun
// gives the copy scratch maps instead. LRU maps are always scratch too.
var scratchMaps = map[string]bool{mapConntrack: true, "lb_affinity": true, "nodeport_fwd": true, "nodeport_rev": true,
	mapMetrics: true, mapEvents: true}

// ScratchMaps returns the names of the maps DryRun never hands to a copy
// live (it gets scratch copies): the maps the datapath writes to.
func ScratchMaps() []string {
	out := make([]string, 0, len(scratchMaps))
	for n := range scratchMaps {
		out = append(out, n)
	}
	return out
}

// DryRun judges in.Packet the way the attached program in.ProgramID would,
// without side effects on the lab: it loads a fresh copy of the program's
// object (the test wrapper of bpf/tunnel_probe.c for from-container and
// from-overlay, which reads back or supplies tunnel metadata around the
// same handler), hands it the attached program's live read-only maps
// (config, endpoints, ipcache, policy, services) through MapReplacements,
// and scratch maps for everything the programs write: conntrack and
// lb_affinity seeded with the live entries between the packet's two
// addresses, an empty metrics array and a small ring buffer for events. The
// copy runs once with BPF_PROG_TEST_RUN on a thread inside in.NS; the packet
// goes nowhere (a redirect only sets the run's return code). DryRunner
// does the same and reuses its copies.
func DryRun(in DryRunInput) (*DryRunResult, error) {
	r := NewDryRunner()
	defer r.Close()
	return r.Run(in)
}

// DryRunner runs dry runs (see DryRun), loading the copy of each attached
// program once and reusing it, with its scratch maps emptied and seeded
// afresh, for later packets. It is not safe for concurrent use.
type DryRunner struct {
	copies map[ebpf.ProgramID]*dryCopy
}

// dryCopy is a loaded copy of one attached program.
type dryCopy struct {
	role     string
	coll     *ebpf.Collection
	prog     *ebpf.Program
	live     *LiveMaps
	scratch  []*ebpf.Map
	seeds    map[string][2]*ebpf.Map // scratch map, live map to seed it from
	seedIDs  map[string]ebpf.MapID   // kernel ID of the live map
	empty    []string
	sameCode bool
	events   *ringbuf.Reader
	r        *EventReader
}

// NewDryRunner returns a DryRunner without copies.
func NewDryRunner() *DryRunner { return &DryRunner{copies: map[ebpf.ProgramID]*dryCopy{}} }

// Close releases every copy.
func (r *DryRunner) Close() {
	for id, c := range r.copies {
		c.close()
		delete(r.copies, id)
	}
}

func (c *dryCopy) close() {
	if c.events != nil {
		c.events.Close()
	}
	if c.coll != nil {
		c.coll.Close()
	}
	for _, m := range c.scratch {
		m.Close()
	}
	c.live.Close()
}

// load builds the copy of the attached program in.ProgramID.
func (r *DryRunner) load(in DryRunInput) (*dryCopy, error) {
	live, err := OpenProgramMaps(in.ProgramID)
	if err != nil {
		return nil, err
	}
	if in.Lab != "" && in.Node != "" {
		live.AddPinned(in.Lab, in.Node)
	}
	c := &dryCopy{role: in.Role, live: live, seeds: map[string][2]*ebpf.Map{}, seedIDs: map[string]ebpf.MapID{}}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	var specFn func() (*ebpf.CollectionSpec, error)
	var progName string
	switch in.Role {
	case roleFromContainer:
		specFn, progName = loadTunnelProbe, "test_tunnel_probe"
	case roleFromOverlay:
		specFn, progName = loadTunnelProbe, "test_overlay_probe"
	default:
		o, found := roleObjects[in.Role]
		if !found {
			return nil, fmt.Errorf("unknown role %q", in.Role)
		}
		specFn, progName = o.spec, o.prog
	}
	spec, err := specFn()
	if err != nil {
		return nil, err
	}
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") || name == "tunnel_probe" || name == "overlay_input" {
			continue
		}
		lm := live.maps[name]
		if lm != nil && !scratchMaps[name] && ms.Type != ebpf.LRUHash {
			ms.MaxEntries = lm.MaxEntries()
			repl[name] = lm
			continue
		}
		cp := ms.Copy()
		cp.Pinning = ebpf.PinNone
		switch {
		case name == mapEvents:
			cp.MaxEntries = 1 << 16
		case cp.Type == ebpf.LRUHash || cp.Type == ebpf.Hash:
			cp.MaxEntries = 4096
		}
		m, err := ebpf.NewMap(cp)
		if err != nil {
			return nil, fmt.Errorf("scratch map %s: %w", name, err)
		}
		c.scratch = append(c.scratch, m)
		ms.MaxEntries = cp.MaxEntries
		repl[name] = m
		if lm == nil {
			c.empty = append(c.empty, name)
			continue
		}
		if cp.Type == ebpf.LRUHash || cp.Type == ebpf.Hash {
			c.seeds[name] = [2]*ebpf.Map{m, lm}
			if info, err := lm.Info(); err == nil {
				c.seedIDs[name], _ = info.ID()
			}
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("load a copy: %w", err)
	}
	c.coll = coll
	if c.prog = coll.Programs[progName]; c.prog == nil {
		return nil, fmt.Errorf("program %s missing from the object", progName)
	}
	c.sameCode = sameCode(in.ProgramID, in.Role, repl)
	if ev := repl[mapEvents]; ev != nil {
		if c.events, err = ringbuf.NewReader(ev); err != nil {
			return nil, fmt.Errorf("read scratch events: %w", err)
		}
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return nil, fmt.Errorf("read monotonic clock: %w", err)
		}
		c.r = &EventReader{monoToWall: time.Duration(time.Now().UnixNano() - ts.Nano())}
	}
	ok = true
	return c, nil
}

// Run judges in.Packet with the copy of in.ProgramID (loaded on first use).
func (r *DryRunner) Run(in DryRunInput) (*DryRunResult, error) {
	if len(in.Packet) < 14 {
		return nil, errors.New("dry run: packet shorter than an Ethernet header")
	}
	c := r.copies[in.ProgramID]
	if c != nil && c.role != in.Role {
		c.close()
		delete(r.copies, in.ProgramID)
		c = nil
	}
	if c == nil {
		var err error
		if c, err = r.load(in); err != nil {
			return nil, fmt.Errorf("dry run %s: %w", in.Role, err)
		}
		r.copies[in.ProgramID] = c
	}
	res, err := c.run(in)
	if err != nil {
		return nil, fmt.Errorf("dry run %s on ifindex %d: %w", in.Role, in.Ifindex, err)
	}
	return res, nil
}

func (c *dryCopy) run(in DryRunInput) (*DryRunResult, error) {
	res := &DryRunResult{SameCode: c.sameCode, Empty: c.empty, Written: map[ebpf.MapID][]MapRecord{}}
	// Scratch state of an earlier run goes; the live state is copied in.
	if _, err := drainRing(c.events, c.r); err != nil {
		return nil, err
	}
	src, dst := packetAddrs(in.Packet)
	for name, pair := range c.seeds {
		if err := clearScratch(pair[0]); err != nil {
			return nil, fmt.Errorf("reset scratch %s: %w", name, err)
		}
		n, err := seedTuples(pair[0], pair[1], src, dst, name == mapConntrack || name == "lb_affinity")
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", name, err)
		}
		res.Seeded += n
		if id := c.seedIDs[name]; id != 0 {
			for _, rec := range in.Carry[id] {
				if err := pair[0].Put(rec.Key, rec.Value); err != nil {
					return nil, fmt.Errorf("seed %s: %w", name, err)
				}
			}
		}
	}
	if m := c.coll.Maps["tunnel_probe"]; m != nil {
		if err := m.Put(uint32(0), &tunnelProbeTunnelProbeResult{KeyRet: -1}); err != nil {
			return nil, fmt.Errorf("reset tunnel probe: %w", err)
		}
	}
	if in.Role == roleFromOverlay {
		oi := tunnelProbeOverlayInput{Vni: in.TunnelID, RemoteIpv4: 0}
		if in.TunnelRemote.Is4() {
			b := in.TunnelRemote.As4()
			oi.RemoteIpv4 = binary.BigEndian.Uint32(b[:])
		}
		if err := c.coll.Maps["overlay_input"].Put(uint32(0), &oi); err != nil {
			return nil, fmt.Errorf("tunnel input: %w", err)
		}
	}
	// struct __sk_buff: mark at word 2, ingress_ifindex 9, ifindex 10.
	var ctx, ctxOut [48]uint32
	ctx[2] = in.Mark
	ctx[9] = uint32(in.Ifindex)
	ctx[10] = uint32(in.Ifindex)
	out := make([]byte, len(in.Packet)+256)
	opts := &ebpf.RunOptions{Data: in.Packet, DataOut: out, Context: ctx, ContextOut: &ctxOut}
	run := func() error {
		ret, err := c.prog.Run(opts)
		res.Verdict = ret
		return err
	}
	var err error
	if in.NS != nil {
		err = topo.Do(in.NS, run)
	} else {
		err = run()
	}
	if err != nil {
		return nil, err
	}
	res.Packet = opts.DataOut
	res.Mark = ctxOut[2]
	for name, pair := range c.seeds {
		id := c.seedIDs[name]
		if id == 0 {
			continue
		}
		m := pair[0]
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		recs := []MapRecord{}
		it := m.Iterate()
		for it.Next(&k, &v) {
			recs = append(recs, MapRecord{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read scratch %s: %w", name, err)
		}
		res.Written[id] = recs
	}
	if in.Role == roleFromContainer {
		var tr tunnelProbeTunnelProbeResult
		if err := c.coll.Maps["tunnel_probe"].Lookup(uint32(0), &tr); err == nil && tr.KeyRet == 0 && tr.RemoteIpv4 != 0 {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], tr.RemoteIpv4)
			res.TunnelSet, res.TunnelRemote, res.TunnelID = true, netip.AddrFrom4(b), tr.TunnelId
		}
	}
	evs, err := drainRing(c.events, c.r)
	if err != nil {
		return nil, err
	}
	res.Events = evs
	return res, nil
}

// clearScratch deletes every entry of a hash map.
func clearScratch(m *ebpf.Map) error {
	var keys [][]byte
	k := make([]byte, m.KeySize())
	it := m.Iterate()
	v := make([]byte, m.ValueSize())
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, key := range keys {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// packetAddrs returns the IPv4 addresses of an Ethernet frame (invalid when
// it is not IPv4).
func packetAddrs(p []byte) (src, dst netip.Addr) {
	if len(p) < 34 || p[12] != 0x08 || p[13] != 0x00 {
		return
	}
	return netip.AddrFrom4([4]byte(p[26:30])), netip.AddrFrom4([4]byte(p[30:34]))
}

// seedTuples copies entries of live into m: with tuples, those whose key
// (a ct_key: saddr, daddr first) joins a and b; otherwise every entry, up
// to m's capacity.
func seedTuples(m, live *ebpf.Map, a, b netip.Addr, tuples bool) (int, error) {
	if tuples && !a.IsValid() {
		return 0, nil
	}
	ks, vs := int(live.KeySize()), int(live.ValueSize())
	if tuples && ks < 8 {
		return 0, nil
	}
	k, v := make([]byte, ks), make([]byte, vs)
	ab, bb := a.As4(), b.As4()
	n := 0
	it := live.Iterate()
	for it.Next(&k, &v) {
		if tuples {
			s, d := [4]byte(k[0:4]), [4]byte(k[4:8])
			if !(s == ab && d == bb || s == bb && d == ab) {
				continue
			}
		}
		if err := m.Put(k, v); err != nil {
			return n, err
		}
		n++
		if n >= int(m.MaxEntries()) {
			break
		}
	}
	return n, it.Err()
}

// sameCode compares the attached program's tag with the tag of the role's
// own object loaded against the same maps.
func sameCode(id ebpf.ProgramID, role string, maps map[string]*ebpf.Map) bool {
	att, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer att.Close()
	ai, err := att.Info()
	if err != nil {
		return false
	}
	o, ok := roleObjects[role]
	if !ok {
		return false
	}
	specFn, name := o.spec, o.prog
	spec, err := specFn()
	if err != nil {
		return false
	}
	repl := map[string]*ebpf.Map{}
	for n, ms := range spec.Maps {
		if m, ok := maps[n]; ok {
			ms.MaxEntries = m.MaxEntries()
			repl[n] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return false
	}
	defer coll.Close()
	p := coll.Programs[name]
	if p == nil {
		return false
	}
	pi, err := p.Info()
	if err != nil {
		return false
	}
	return pi.Tag == ai.Tag
}

// drainRing decodes every pending record of a scratch ring buffer.
func drainRing(rd *ringbuf.Reader, r *EventReader) ([]Event, error) {
	if rd == nil {
		return nil, nil
	}
	var out []Event
	for {
		rd.SetDeadline(time.Now().Add(-time.Second))
		rec, err := rd.Read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out, nil
			}
			return out, fmt.Errorf("read scratch events: %w", err)
		}
		ev, next, err := r.decode(rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, ev)
		if next != nil {
			out = append(out, next)
		}
	}
}

// MarkJudged is the skb mark of packets a redirect path already judged
// (to-container lets them pass).
const MarkJudged = markJudged

// Frontend is a service frontend found in the lb_services map.
type Frontend struct {
	Addr     netip.AddrPort
	Proto    uint8
	Backends int
	// Kind is ClusterIP, NodePort or hostPort (from the entry's flags).
	Kind string
}

// Frontends returns the service frontends on address ip.
func (l *LiveMaps) Frontends(ip netip.Addr) ([]Frontend, error) {
	m := l.maps["lb_services"]
	if m == nil || !ip.Is4() {
		return nil, nil
	}
	if m.KeySize() < 7 || m.ValueSize() < 4 {
		return nil, fmt.Errorf("lb_services: unexpected layout (key %d, value %d bytes)", m.KeySize(), m.ValueSize())
	}
	want := ip.As4()
	k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
	var out []Frontend
	it := m.Iterate()
	for it.Next(&k, &v) {
		if [4]byte(k[0:4]) != want {
			continue
		}
		f := Frontend{
			Addr:     netip.AddrPortFrom(ip, binary.BigEndian.Uint16(k[4:6])),
			Proto:    k[6],
			Backends: int(binary.NativeEndian.Uint16(v[0:2])),
		}
		switch flags := binary.NativeEndian.Uint16(v[2:4]); {
		case flags&(1<<1) != 0:
			f.Kind = "NodePort"
		case flags&(1<<2) != 0:
			f.Kind = "hostPort"
		default:
			f.Kind = "ClusterIP"
		}
		out = append(out, f)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read lb_services: %w", err)
	}
	return out, nil
}
