package datapath

// Read-only inspection of a live datapath for tools that walk a lab (podlab
// trace, podlab whois): open the maps an attached program uses, decode
// endpoints, ipcache, policy and service entries. Judging a crafted packet
// with a copy of an attached program is in dryrun.go.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
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

// ProgramName returns the name of a loaded program, "" when it is gone.
func ProgramName(id ebpf.ProgramID) string {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return ""
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return ""
	}
	return info.Name
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
// the programs only read when a DryRunner hands them over). A node without pins
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
