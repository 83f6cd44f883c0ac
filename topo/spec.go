package topo

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/podlab/podlab/internal/yamldiag"
)

// SpecAPIVersion and SpecKind identify a raw topology document.
const (
	SpecAPIVersion = "podlab.io/v1alpha1"
	SpecKind       = "Topology"
)

// Spec is a raw topology: the namespaces of a lab, the devices inside them,
// the veth links between them, their addresses, routes, neighbours, sysctls
// and tc mirred rules. It is the user's single source of truth for a lab
// that is not a Kubernetes-shaped cluster (see testdata/peer-pods.yaml for a
// commented example of the YAML form).
//
// A Spec is read from YAML with ParseSpec or LoadSpec, or built in Go; either
// way Validate checks it as a whole before anything is created.
type Spec struct {
	// File is where the spec was read from ("" when built in Go); errors
	// name it.
	File string
	// APIVersion must be SpecAPIVersion.
	APIVersion string
	// Kind must be SpecKind.
	Kind string
	// Metadata names and describes the topology.
	Metadata SpecMetadata
	// Namespaces are the network namespaces of the lab, created in order.
	Namespaces []NamespaceSpec
	// Links are veth pairs, each end in a namespace.
	Links []LinkSpec
	// TC are tc mirred rules.
	TC []TCRule

	// lines maps a field path (as errors name it) to its line in File.
	lines map[string]int
}

// SpecMetadata names and describes a topology.
type SpecMetadata struct {
	// Name of the topology (a DNS label); not the lab name, which is chosen
	// at bring-up so that one spec can run as several labs.
	Name string
	// Description says what the topology shows, for people.
	Description string
}

// NamespaceSpec is one network namespace and what lives in it.
type NamespaceSpec struct {
	// Name is the lab-local name; the namespace is created as
	// podlab-<lab>-<name> (see NSName).
	Name string
	// Sysctls are net.* sysctls set inside the namespace, in order.
	Sysctls []Sysctl
	// Devices are the bridges, VXLAN and dummy devices living in the
	// namespace (veth ends are declared by Links).
	Devices []DeviceSpec
	// Routes go into the namespace's main table.
	Routes []RouteSpec
	// Neighbours are static neighbour (ARP/NDP) entries.
	Neighbours []NeighbourSpec
}

// Sysctl is one key=value setting.
type Sysctl struct {
	// Key in dotted form, e.g. net.ipv4.ip_forward or
	// net.ipv4.conf.eth0.rp_filter.
	Key   string
	Value string
}

// DeviceKind is the type of a network device.
type DeviceKind string

// Device kinds a raw topology can create.
const (
	DeviceVeth   DeviceKind = "veth"
	DeviceBridge DeviceKind = "bridge"
	DeviceVXLAN  DeviceKind = "vxlan"
	DeviceDummy  DeviceKind = "dummy"
)

// DeviceSpec is a device declared inside a namespace: a bridge, a VXLAN
// device or a dummy.
type DeviceSpec struct {
	Name string
	Kind DeviceKind
	// MAC is the hardware address; nil: chosen by the kernel.
	MAC net.HardwareAddr
	// MTU; 0: the kernel's default.
	MTU int
	// Addresses are assigned with their prefix length (10.0.0.1/24).
	Addresses []netip.Prefix
	// Down leaves the device administratively down (YAML: up: false).
	Down bool

	// Ports are the devices of the same namespace enslaved to a bridge.
	Ports []string

	// VXLAN only:

	// VNI is the VXLAN network identifier (0..16777215).
	VNI uint32
	// Port is the UDP destination port (default 4789).
	Port int
	// Remote is the unicast peer of a classic point-to-point device.
	Remote netip.Addr
	// Local is the source address of encapsulated packets; zero: chosen by
	// routing.
	Local netip.Addr
	// Dev is the underlay device, in the CreateIn namespace.
	Dev string
	// External makes a collect-metadata device (the tunnel key comes per
	// packet, from BPF); Remote and VNI must then be unset.
	External bool
	// Learning lets the device learn remote MACs from received packets.
	Learning bool
	// CreateIn is the namespace the device is created in, where its UDP
	// socket stays; "" means the device's own namespace. When it differs,
	// the device is moved afterwards (the kernel's cross-netns VXLAN).
	CreateIn string
}

// LinkSpec is a veth pair.
type LinkSpec struct {
	A, B Endpoint
}

// Endpoint is one end of a veth pair.
type Endpoint struct {
	// NS is the lab-local namespace name.
	NS string
	// Name is the interface name (at most 15 bytes).
	Name      string
	MAC       net.HardwareAddr
	MTU       int
	Addresses []netip.Prefix
	// Down leaves the end administratively down (YAML: up: false).
	Down bool
}

// RouteType is the kind of a route.
type RouteType string

// Route types.
const (
	RouteUnicast     RouteType = "unicast"
	RouteBlackhole   RouteType = "blackhole"
	RouteUnreachable RouteType = "unreachable"
	RouteProhibit    RouteType = "prohibit"
)

// RouteSpec is a route in a namespace's main table.
type RouteSpec struct {
	// Dst is the destination; the zero prefix is the default route (YAML:
	// dst: default), IPv4 unless Via is IPv6.
	Dst netip.Prefix
	// Via is the gateway; zero: a directly connected route (Dev required).
	Via netip.Addr
	// Dev is the output device.
	Dev string
	// Src is the preferred source address.
	Src netip.Addr
	// OnLink uses Via even though no subnet of Dev covers it.
	OnLink bool
	// Type defaults to unicast.
	Type RouteType
}

// NeighbourSpec is a static neighbour entry.
type NeighbourSpec struct {
	IP  netip.Addr
	MAC net.HardwareAddr
	Dev string
	// Stale makes a non-permanent entry (YAML: permanent: false): it starts
	// stale and the kernel revalidates it on use, as a learned entry. The
	// default is a permanent entry that never expires.
	Stale bool
}

// TCRule is a tc mirred rule: every packet at Hook of Dev is redirected
// (or mirrored) to To, entering it at ToDirection.
type TCRule struct {
	NS   string
	Dev  string
	Hook TCHook
	// Action is redirect or mirror.
	Action MirredMode
	To     string
	// ToDirection is where the packet enters To (default egress).
	ToDirection TCHook
}

// SpecError is one problem in a spec: the file, the line (0 when unknown,
// e.g. for specs built in Go), the field path (links[2].a.ns) and what is
// wrong.
type SpecError = yamldiag.Diagnostic

// SpecErrors is every problem found in a spec, in file order. errors.As
// finds the individual *SpecError values.
type SpecErrors = yamldiag.List

// problems collects SpecErrors for one spec.
type problems struct {
	file  string
	lines map[string]int
	errs  SpecErrors
	seen  map[string]bool
}

// lineOf finds the line of path, or of its closest ancestor that has one.
func (p *problems) lineOf(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func (p *problems) add(line int, field, format string, args ...any) {
	e := SpecError{File: p.file, Line: line, Path: field, Msg: fmt.Sprintf(format, args...)}
	key := e.Error()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	p.errs = append(p.errs, e)
}

// errf records a problem with the field at path.
func (p *problems) errf(path, format string, args ...any) {
	p.add(p.lineOf(path), path, format, args...)
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	return p.errs
}
