package trace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/topo"
)

// Lab is a running lab as trace sees it: every namespace it owns, with a
// netlink handle in each, and what each namespace is (pod, node, world...).
// It only reads.
type Lab struct {
	// Name is the lab's name.
	Name string
	// State is the lab's state file.
	State *topo.LabState

	spaces []*space
	byFull map[string]*space
	// runner keeps the copies of attached programs for dry runs, live
	// the maps of attached programs, by program ID.
	runner *datapath.DryRunner
	live   map[ebpf.ProgramID]*datapath.LiveMaps
}

// Role says what a namespace is in the lab.
type Role string

// Namespace roles.
const (
	RolePod      Role = "pod"
	RoleNode     Role = "node"
	RoleWorld    Role = "world"
	RoleFabric   Role = "fabric"
	RoleTopology Role = "namespace" // a namespace of a raw topology
)

// space is one namespace of the lab.
type space struct {
	ns    *topo.Namespace
	label string // what trace prints: node name, pod namespace/name, short name
	role  Role
	node  string // node name for nodes and pods
	h     *netlink.Handle
	// nsids maps netnsids as this namespace sees them to the lab's spaces.
	nsids map[int]*space
}

// Open reads the state of a running lab and opens its namespaces.
func Open(lab string) (*Lab, error) {
	s, err := topo.ReadState(lab)
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", lab, err)
	}
	return OpenState(s)
}

// OpenState opens the namespaces a lab state names. Close releases them.
func OpenState(s *topo.LabState) (*Lab, error) {
	l := &Lab{Name: s.Name, State: s, byFull: map[string]*space{}, runner: datapath.NewDryRunner(), live: map[ebpf.ProgramID]*datapath.LiveMaps{}}
	add := func(full, label string, role Role, node string) error {
		if full == "" || l.byFull[full] != nil {
			return nil
		}
		short := strings.TrimPrefix(full, topo.NSName(s.Name, ""))
		ns := &topo.Namespace{Name: full, Short: short}
		h, err := ns.Handle()
		if err != nil {
			return fmt.Errorf("open namespace %s of lab %s: %w", full, s.Name, err)
		}
		sp := &space{ns: ns, label: label, role: role, node: node, h: h}
		l.spaces = append(l.spaces, sp)
		l.byFull[full] = sp
		return nil
	}
	var err error
	for _, n := range s.Nodes {
		err = errors.Join(err, add(n.NetNS, n.Name, RoleNode, n.Name))
	}
	for _, p := range s.Pods {
		if p.HostNetwork {
			continue
		}
		err = errors.Join(err, add(p.NetNS, p.Namespace+"/"+p.Name, RolePod, p.Node))
	}
	shorts := make([]string, 0, len(s.Namespaces))
	for k := range s.Namespaces {
		shorts = append(shorts, k)
	}
	sort.Strings(shorts)
	for _, k := range shorts {
		role := RoleTopology
		switch {
		case s.Kind != "topology" && k == "world":
			role = RoleWorld
		case s.Kind != "topology" && k == "fabric":
			role = RoleFabric
		}
		err = errors.Join(err, add(s.Namespaces[k], k, role, ""))
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	if len(l.spaces) == 0 {
		return nil, fmt.Errorf("lab %s has no namespaces", s.Name)
	}
	return l, nil
}

// Close releases the netlink handles, maps and program copies.
func (l *Lab) Close() {
	for _, sp := range l.spaces {
		sp.h.Close()
	}
	l.runner.Close()
	for id, m := range l.live {
		m.Close()
		delete(l.live, id)
	}
}

// liveMaps returns the maps of attached program id (plus the pinned maps
// of node its object leaves out), opened once per Lab.
func (l *Lab) liveMaps(id ebpf.ProgramID, node string) (*datapath.LiveMaps, error) {
	if m := l.live[id]; m != nil {
		return m, nil
	}
	m, err := datapath.OpenProgramMaps(id)
	if err != nil {
		return nil, err
	}
	if node != "" {
		m.AddPinned(l.Name, node)
	}
	l.live[id] = m
	return m, nil
}

// Namespaces returns the labels of the lab's namespaces, in lab order.
func (l *Lab) Namespaces() []string {
	out := make([]string, len(l.spaces))
	for i, sp := range l.spaces {
		out[i] = sp.label
	}
	return out
}

// find resolves a pod (namespace/name or name), node or namespace name.
func (l *Lab) find(name string) (*space, error) {
	var matches []*space
	for _, sp := range l.spaces {
		if sp.label == name || sp.ns.Short == name || sp.ns.Name == name {
			return sp, nil
		}
		if sp.role == RolePod && strings.HasSuffix(sp.label, "/"+name) {
			matches = append(matches, sp)
		}
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	if len(matches) > 1 {
		return nil, fmt.Errorf("pod name %q is ambiguous in lab %s: use namespace/name", name, l.Name)
	}
	return nil, fmt.Errorf("lab %s has no pod, node or namespace %q (known: %s)", l.Name, name, strings.Join(l.Namespaces(), ", "))
}

// resolveAddr turns --to into an address: an IP, a pod, node or namespace
// (its first global IPv4 address), or a world host name.
func (l *Lab) resolveAddr(to string) (netip.Addr, string, error) {
	if a, err := netip.ParseAddr(to); err == nil {
		return a.Unmap(), to, nil
	}
	for _, p := range l.State.Pods {
		if p.Name == to || p.Namespace+"/"+p.Name == to {
			a, err := netip.ParseAddr(p.IP)
			if err == nil {
				return a, p.Namespace + "/" + p.Name, nil
			}
		}
	}
	for _, n := range l.State.Nodes {
		if n.Name == to {
			if a, err := netip.ParseAddr(n.IP); err == nil {
				return a, n.Name, nil
			}
		}
	}
	if a, ok := topo.WorldHosts[strings.TrimSuffix(to, ".")]; ok {
		return a, to, nil
	}
	if sp, err := l.find(to); err == nil {
		if a, ok := sp.firstIPv4(); ok {
			return a, sp.label, nil
		}
		return netip.Addr{}, "", fmt.Errorf("namespace %s has no global IPv4 address to trace to", sp.label)
	}
	return netip.Addr{}, "", fmt.Errorf("--to %q is not an IP address, nor a pod, node, namespace or world host of lab %s", to, l.Name)
}

func (sp *space) firstIPv4() (netip.Addr, bool) {
	addrs, err := sp.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && !ip.Unmap().IsLoopback() {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// link returns the link with index idx in sp.
func (sp *space) link(idx int) (netlink.Link, error) {
	ln, err := sp.h.LinkByIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("link %d in %s: %w", idx, sp.label, err)
	}
	return ln, nil
}

func (sp *space) linkByName(name string) (netlink.Link, error) {
	ln, err := sp.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s in %s: %w", name, sp.label, err)
	}
	return ln, nil
}

// peerSpace returns the space a netnsid seen from sp designates (-1: sp
// itself).
func (l *Lab) peerSpace(sp *space, nsid int) *space {
	if nsid < 0 {
		return sp
	}
	if sp.nsids == nil {
		sp.nsids = map[int]*space{}
		for _, o := range l.spaces {
			if o == sp {
				continue
			}
			fd, err := o.ns.Open()
			if err != nil {
				continue
			}
			id, err := sp.h.GetNetNsIdByFd(int(fd))
			fd.Close()
			if err == nil && id >= 0 {
				sp.nsids[id] = o
			}
		}
	}
	return sp.nsids[nsid]
}

// holder returns the spaces and links holding address a.
type holding struct {
	sp   *space
	link netlink.Link
	pfx  netip.Prefix
}

func (l *Lab) holders(a netip.Addr) []holding {
	var out []holding
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	for _, sp := range l.spaces {
		addrs, err := sp.h.AddrList(nil, fam)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok || ip.Unmap() != a {
				continue
			}
			ones, _ := ad.Mask.Size()
			ln, err := sp.link(ad.LinkIndex)
			if err != nil {
				continue
			}
			out = append(out, holding{sp: sp, link: ln, pfx: netip.PrefixFrom(a, ones)})
		}
	}
	return out
}

func macEqual(a, b net.HardwareAddr) bool {
	return len(a) == len(b) && a.String() == b.String()
}

func isGroupMAC(m net.HardwareAddr) bool { return len(m) > 0 && m[0]&1 == 1 }

// linkUp reports whether a link can carry packets, and why not.
func linkUp(ln netlink.Link) (bool, string) {
	a := ln.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return false, "administratively down"
	}
	if a.RawFlags&unix.IFF_LOWER_UP == 0 && a.OperState != netlink.OperUnknown && a.OperState != netlink.OperUp {
		return false, fmt.Sprintf("up but without carrier (state %s)", a.OperState)
	}
	return true, ""
}
