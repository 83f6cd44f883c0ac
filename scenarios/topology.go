package scenarios

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/yamldiag"
)

// A scenario may hold a podlab.io/v1alpha1 Topology document (the raw
// topology format of package topo) instead of a cluster. Its steps then
// work on the topology's namespaces and devices:
//
//	probe:   {from: ns/worker, to: 10.132.2.46, icmp: {}}
//	capture: [podns/vxlan0, {device: worker/ens3, promiscuous: true}]
//	packets: [{on: podns/vxlan0, ether: {dst: "mac-of:pod/eth0"}, match: {...}}]
//	setMAC:  {device: podns/vxlan0, copyFrom: pod/eth0}   # or mac: 0a:58:...
//	sysctl:  {namespace: gw, key: net.ipv4.conf.gw-b.rp_filter, value: "2"}
//	mtu:     {device: client/eth0, mtu: 1450}
//	linkDown: gw/gw-b          linkUp: gw/gw-b
//	vxlan:   {device: node-b/vxlan0, port: 4789, df: set}
//	serve:   {namespace: podvm, workload: http-echo, port: 80}
//
// Kubernetes objects, a Cluster document and the cluster-only steps
// (apply, delete, scale, wait, deletePod, datapathReload) are refused, and
// so are flow and metric assertions: a raw lab has no datapath and records
// no flows.

// decodeTopology reads a Topology document with topo.ParseSpecNode, so its
// errors keep file, line and field.
func (d *decoder) decodeTopology(doc *yaml.Node, s *Scenario, first **docRef) {
	if *first != nil {
		d.errorf(doc, "kind", "a scenario holds one Topology document (the first is at %s:%d)", (*first).d.file, (*first).node.Line)
		return
	}
	*first = &docRef{d: d, node: doc}
	spec, err := topo.ParseSpecNode(d.file, doc)
	if err != nil {
		d.specErrors(err)
		return
	}
	s.Topology = spec
}

// specErrors turns the topology's errors into diagnostics.
func (d *decoder) specErrors(err error) {
	var list topo.SpecErrors
	if errors.As(err, &list) {
		for _, e := range list {
			file := e.File
			if file == "" {
				file = d.file
			}
			d.ds.add(Diagnostic{File: file, Line: e.Line, Path: e.Path, Msg: e.Msg})
		}
		return
	}
	var one *topo.SpecError
	if errors.As(err, &one) {
		d.ds.add(Diagnostic{File: d.file, Line: one.Line, Path: one.Path, Msg: one.Msg})
		return
	}
	d.ds.add(Diagnostic{File: d.file, Msg: "topology: " + err.Error()})
}

// checkTopologyScenario refuses what a raw lab cannot have (a cluster,
// Kubernetes objects, a datapath) and gives the scenario its empty
// cluster.
func checkTopologyScenario(s *Scenario, ref *docRef, sd *scenarioDecoder, ds *diagnostics) {
	src := srcOf(ref.d, ref.node)
	if s.Cluster != nil {
		ds.add(Diagnostic{File: s.Cluster.Source.File, Line: s.Cluster.Source.Line, Path: "kind", Msg: fmt.Sprintf("a scenario runs on a Topology (%s) or on a Cluster, not both", src)})
	}
	for _, o := range s.Objects {
		os := o.Origin()
		ds.add(Diagnostic{File: os.File, Line: os.Line, Path: "kind", Msg: fmt.Sprintf("%s needs a cluster; a scenario with a Topology document (%s) holds no Kubernetes objects", o.Ref(), src)})
	}
	if sd != nil && sd.doc != nil {
		if st := sd.doc.get("settings"); st != nil && st.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(st.Content); i += 2 {
				k, v := st.Content[i], yamldiag.Resolve(st.Content[i+1])
				switch k.Value {
				case "datapath":
					if v.Value != DatapathNone {
						sd.d.errorf(v, "settings.datapath", "a raw topology lab has no datapath; remove the setting or write none")
					}
				case "workers":
					sd.d.errorf(k, "settings.workers", "a raw topology lab has no nodes; its namespaces come from the Topology document (%s)", src)
				}
			}
		}
	}
	s.Settings.Datapath = DatapathNone
	name := "topology"
	if s.Topology != nil {
		name = s.Topology.Metadata.Name
	}
	s.Cluster = &Cluster{Name: name, Source: src}
}

// Step actions that only make sense with a cluster, and those that only
// make sense with a raw topology.
var (
	clusterOnlyActions = []string{"apply", "delete", "scale", "wait", "flow", "metric", string(FaultDeletePod), string(FaultDatapathReload)}
	rawOnlyActions     = []string{"serve", string(FaultSetMAC), string(FaultSysctl), string(FaultVXLAN)}
)

// checkStepKinds refuses steps the scenario's lab cannot run.
func checkStepKinds(s *Scenario, raw bool, ds *diagnostics) {
	for i := range s.Steps {
		st := &s.Steps[i]
		a := st.Action()
		path := yamldiag.Index("steps", i) + "." + a
		switch {
		case raw && (a == "flow" || a == "metric"):
			ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: path, Msg: "a raw topology lab has no datapath, so it records no flows and no metrics; assert with packets instead"})
		case raw && contains(clusterOnlyActions, a):
			ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: path, Msg: fmt.Sprintf("%s needs a cluster; a raw topology lab has no pods or Kubernetes objects", a)})
		case !raw && contains(rawOnlyActions, a):
			ds.add(Diagnostic{File: st.Source.File, Line: st.Source.Line, Path: path, Msg: fmt.Sprintf("not supported yet: %s in a cluster scenario (it works on the namespaces of a Topology document)", a)})
		}
		if !raw {
			continue
		}
		for j := range st.Probes {
			p := &st.Probes[j]
			pp := yamldiag.Index("steps", i)
			switch {
			case p.Protocol == ProbeDNS:
				ds.add(Diagnostic{File: p.Source.File, Line: p.Source.Line, Path: pp, Msg: "a raw topology lab has no DNS; probe with icmp, tcp, udp or http to an IP address"})
			case p.DropReason != "":
				ds.add(Diagnostic{File: p.Source.File, Line: p.Source.Line, Path: pp, Msg: "dropReason needs the BPF datapath, which a raw topology lab does not have"})
			}
		}
	}
}

// topologyNamespaces returns the namespace names of the topology.
func topologyNamespaces(spec *topo.Spec) []string {
	var out []string
	for _, ns := range spec.Namespaces {
		out = append(out, ns.Name)
	}
	return out
}

// topologyDevice is a device of a topology: its kind and, for VXLAN, its
// spec.
type topologyDevice struct {
	kind topo.DeviceKind
	spec *topo.DeviceSpec
}

// topologyDevices returns the devices declared in namespace ns (devices
// and veth ends), by name.
func topologyDevices(spec *topo.Spec, ns string) map[string]topologyDevice {
	out := map[string]topologyDevice{}
	for i := range spec.Namespaces {
		n := &spec.Namespaces[i]
		if n.Name != ns {
			continue
		}
		for j := range n.Devices {
			out[n.Devices[j].Name] = topologyDevice{kind: n.Devices[j].Kind, spec: &n.Devices[j]}
		}
	}
	for _, l := range spec.Links {
		for _, e := range []topo.Endpoint{l.A, l.B} {
			if e.NS == ns {
				out[e.Name] = topologyDevice{kind: topo.DeviceVeth}
			}
		}
	}
	return out
}

// NamespaceAddress returns the first IPv4 address the topology gives a
// device of namespace ns (devices first, then veth ends, in file order):
// what a probe to ns/NAME targets.
func (s *Scenario) NamespaceAddress(ns string) (netip.Addr, bool) {
	if s.Topology == nil {
		return netip.Addr{}, false
	}
	for _, n := range s.Topology.Namespaces {
		if n.Name != ns {
			continue
		}
		for _, d := range n.Devices {
			for _, a := range d.Addresses {
				if a.Addr().Is4() {
					return a.Addr(), true
				}
			}
		}
	}
	for _, l := range s.Topology.Links {
		for _, e := range []topo.Endpoint{l.A, l.B} {
			if e.NS != ns {
				continue
			}
			for _, a := range e.Addresses {
				if a.Addr().Is4() {
					return a.Addr(), true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// NamespaceAddresses returns every address the topology gives devices of
// namespace ns.
func (s *Scenario) NamespaceAddresses(ns string) []netip.Addr {
	if s.Topology == nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range s.Topology.Namespaces {
		if n.Name == ns {
			for _, d := range n.Devices {
				for _, a := range d.Addresses {
					out = append(out, a.Addr())
				}
			}
		}
	}
	for _, l := range s.Topology.Links {
		for _, e := range []topo.Endpoint{l.A, l.B} {
			if e.NS == ns {
				for _, a := range e.Addresses {
					out = append(out, a.Addr())
				}
			}
		}
	}
	return out
}

func (s *Scenario) hasTopologyNamespace(ns string) bool {
	return s.Topology != nil && contains(topologyNamespaces(s.Topology), ns)
}

// resolveRawDevice checks NAMESPACE/DEVICE against the topology.
func (sd *scenarioDecoder) resolveRawDevice(dev *Device, n *yaml.Node, path string) bool {
	d, spec := sd.d, sd.s.Topology
	switch dev.Kind {
	case DeviceWorld:
		dev.Node = "world"
	case DevicePod, DevicePodVeth:
		d.errorf(n, path, "%s names a pod; a raw topology lab has none (devices are NAMESPACE/DEVICE)", dev.Raw)
		return false
	}
	ns := dev.Node
	if !contains(topologyNamespaces(spec), ns) {
		msg := fmt.Sprintf("unknown namespace %q in %s", ns, dev.Raw)
		if s := yamldiag.Suggest(ns, topologyNamespaces(spec)); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; namespaces of the topology: " + strings.Join(topologyNamespaces(spec), ", ")
		}
		d.errorf(n, path, "%s", msg)
		return false
	}
	devs := topologyDevices(spec, ns)
	if _, ok := devs[dev.Name]; !ok {
		msg := fmt.Sprintf("namespace %s has no device %q", ns, dev.Name)
		if s := yamldiag.Suggest(dev.Name, keys(devs)); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else if len(devs) > 0 {
			msg += "; its devices: " + strings.Join(keys(devs), ", ")
		}
		d.errorf(n, path, "%s", msg)
		return false
	}
	dev.Kind, dev.Namespace, dev.Node = DeviceRaw, ns, ""
	return true
}

// resolveRawPeer resolves a probe endpoint of a raw scenario: ns/NAME (or
// a bare namespace name), or, as a target, an IP address.
func (st *state) resolveRawPeer(d *decoder, p *Peer, n *yaml.Node, path string, target bool) {
	spec := st.s.Topology
	switch p.Kind {
	case PeerIP:
		if target {
			return
		}
	case PeerNetns, "":
		if st.s.hasTopologyNamespace(p.Name) {
			p.Kind = PeerNetns
			if target {
				if _, ok := st.s.NamespaceAddress(p.Name); !ok {
					d.errorf(n, path, "namespace %s has no IPv4 address in the topology; probe an IP address", p.Name)
				}
			}
			return
		}
		msg := fmt.Sprintf("unknown namespace %q", p.Name)
		if s := yamldiag.Suggest(p.Name, topologyNamespaces(spec)); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; namespaces of the topology: " + strings.Join(topologyNamespaces(spec), ", ")
		}
		d.errorf(n, path, "%s", msg)
		return
	}
	if target {
		d.errorf(n, path, "a raw topology lab is probed at an IP address or ns/NAME (its first IPv4 address), not %s", p.Raw)
	} else {
		d.errorf(n, path, "a probe in a raw topology lab runs from a namespace (ns/NAME), not %s", p.Raw)
	}
}

// knowsRawName reports whether a packet match names something of the
// topology: an address, a CIDR, or a namespace (its addresses).
func (s *Scenario) knowsRawName(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if _, err := netip.ParsePrefix(name); err == nil {
		return true
	}
	return s.hasTopologyNamespace(strings.TrimPrefix(name, "ns/"))
}

// parseCapture reads a capture entry: a device name, or {device: NAME,
// promiscuous: BOOL}. It returns the node to report reference errors at.
func (sd *scenarioDecoder) parseCapture(n *yaml.Node, path string) (Device, *yaml.Node, string, bool) {
	if n == nil || n.Kind != yaml.MappingNode {
		dev, ok := sd.parseDevice(n, path)
		return dev, n, path, ok
	}
	m := sd.d.mapping(n, path, fields{Known: []string{"device", "promiscuous"}})
	if m == nil || !m.require("device") {
		return Device{}, nil, "", false
	}
	dn, dp := m.get("device"), m.sub("device")
	dev, ok := sd.parseDevice(dn, dp)
	if ok && m.has("promiscuous") {
		v := m.boolean("promiscuous")
		dev.Promiscuous = &v
	}
	return dev, dn, dp, ok
}

// rawDeviceField reads a device field and schedules its check against the
// topology; kinds, when given, restricts the device kinds accepted.
func (sd *scenarioDecoder) rawDeviceField(m *mapping, key string, target *Device, kinds ...topo.DeviceKind) bool {
	if !m.require(key) {
		return false
	}
	n, p := m.get(key), m.sub(key)
	dev, ok := sd.parseDevice(n, p)
	if !ok {
		return false
	}
	*target = dev
	sd.checks = append(sd.checks, func(st *state) {
		if st.s.Topology == nil || !sd.resolveRawDevice(target, n, p) || len(kinds) == 0 {
			return
		}
		got := topologyDevices(st.s.Topology, target.Namespace)[target.Name].kind
		for _, k := range kinds {
			if got == k {
				return
			}
		}
		sd.d.errorf(n, p, "%s is a %s device; %s needs a %s device", target.Raw, got, strings.TrimSuffix(m.path, "."+key), kinds[0])
	})
	return true
}

// decodeSetMAC reads {device: NS/DEV, mac: MAC} or {device, copyFrom: NS/DEV}.
func (sd *scenarioDecoder) decodeSetMAC(f *Fault, n *yaml.Node, path string, keyNode *yaml.Node) {
	d := sd.d
	m := d.mapping(n, path, fields{Known: []string{"device", "mac", "copyFrom"}})
	if m == nil {
		if n == nil || n.Kind == yaml.ScalarNode {
			d.errorf(keyNode, path, "expected {device: NAMESPACE/DEVICE, mac: MAC} or {device, copyFrom: NAMESPACE/DEVICE}")
		}
		return
	}
	sd.rawDeviceField(m, "device", &f.Device)
	switch {
	case m.has("mac") && m.has("copyFrom"):
		d.errorf(m.node, path, "mac and copyFrom are exclusive")
	case m.has("mac"):
		s := m.str("mac")
		mac, err := net.ParseMAC(s)
		switch {
		case err != nil || len(mac) != 6:
			d.errorf(m.get("mac"), m.sub("mac"), "bad MAC address %q: want six hex octets like 0a:58:0a:84:02:2e", s)
		case mac[0]&1 != 0:
			d.errorf(m.get("mac"), m.sub("mac"), "bad MAC address %q: multicast bit set; a device needs a unicast address", s)
		default:
			f.MAC = mac
		}
	case m.has("copyFrom"):
		sd.rawDeviceField(m, "copyFrom", &f.CopyFrom)
	default:
		d.errorf(m.node, path, "expected mac: MAC or copyFrom: NAMESPACE/DEVICE")
	}
}

// decodeSysctl reads {namespace: NS, key: net.KEY, value: V}.
func (sd *scenarioDecoder) decodeSysctl(f *Fault, n *yaml.Node, path string, keyNode *yaml.Node) {
	d := sd.d
	m := d.mapping(n, path, fields{Known: []string{"namespace", "key", "value"}})
	if m == nil {
		if n == nil || n.Kind == yaml.ScalarNode {
			d.errorf(keyNode, path, "expected {namespace: NAME, key: net.KEY, value: VALUE}")
		}
		return
	}
	if m.require("namespace") {
		f.Namespace = m.str("namespace")
	}
	if m.require("key") {
		f.Key = m.str("key")
		switch {
		case !strings.HasPrefix(f.Key, "net."):
			d.errorf(m.get("key"), m.sub("key"), "sysctl %q is not under net.* (only net.* sysctls belong to a network namespace)", f.Key)
			f.Key = ""
		case strings.Contains(f.Key, "/") || strings.Contains(f.Key, "..") || strings.HasSuffix(f.Key, "."):
			d.errorf(m.get("key"), m.sub("key"), "bad sysctl key %q: want dotted form like net.ipv4.ip_forward", f.Key)
			f.Key = ""
		}
	}
	if m.require("value") {
		f.Value = m.str("value")
	}
	nn, kn := m.get("namespace"), m.get("key")
	sd.checks = append(sd.checks, func(st *state) {
		if st.s.Topology == nil || f.Namespace == "" {
			return
		}
		if !st.s.hasTopologyNamespace(f.Namespace) {
			msg := fmt.Sprintf("unknown namespace %q", f.Namespace)
			if s := yamldiag.Suggest(f.Namespace, topologyNamespaces(st.s.Topology)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.errorf(nn, m.sub("namespace"), "%s", msg)
			return
		}
		// A per-device key (net.ipv4.conf.DEV.x) must name a device of the
		// namespace (or all/default).
		parts := strings.Split(f.Key, ".")
		if len(parts) >= 5 && (parts[1] == "ipv4" || parts[1] == "ipv6") && (parts[2] == "conf" || parts[2] == "neigh") {
			rest := strings.Join(parts[3:], ".")
			names := append([]string{"all", "default", "lo"}, keys(topologyDevices(st.s.Topology, f.Namespace))...)
			for _, c := range names {
				if strings.HasPrefix(rest, c+".") {
					return
				}
			}
			d.errorf(kn, m.sub("key"), "sysctl %q names device %q, which namespace %s does not have (devices: %s)", f.Key, parts[3], f.Namespace, strings.Join(names, ", "))
		}
	})
}

// VXLAN outer DF policies a vxlan step accepts.
const (
	DFUnset   = "unset"
	DFSet     = "set"
	DFInherit = "inherit"
)

// decodeVXLAN reads {device: NS/DEV, port: N, df: unset|set|inherit}.
func (sd *scenarioDecoder) decodeVXLAN(f *Fault, n *yaml.Node, path string, keyNode *yaml.Node) {
	d := sd.d
	f.VXLAN = &VXLANChange{}
	m := d.mapping(n, path, fields{Known: []string{"device", "port", "df"}})
	if m == nil {
		if n == nil || n.Kind == yaml.ScalarNode {
			d.errorf(keyNode, path, "expected {device: NAMESPACE/DEVICE, port: N, df: unset|set|inherit}")
		}
		return
	}
	sd.rawDeviceField(m, "device", &f.Device, topo.DeviceVXLAN)
	if m.has("port") {
		f.VXLAN.Port, _ = m.integer("port", 1, 65535)
	}
	if m.has("df") {
		switch v := m.str("df"); v {
		case DFUnset, DFSet, DFInherit:
			f.VXLAN.DF = v
		default:
			d.errorf(m.get("df"), m.sub("df"), "df must be unset, set or inherit; got %q", v)
		}
	}
	if !m.has("port") && !m.has("df") {
		d.errorf(m.node, path, "a vxlan step changes port and/or df")
	}
}

// decodeServe reads {namespace: NS, workload: KIND, port: N | ports: [N], address: IP}.
func (sd *scenarioDecoder) decodeServe(n *yaml.Node, path string, keyNode *yaml.Node) *ServeStep {
	d := sd.d
	sv := &ServeStep{}
	m := d.mapping(n, path, fields{Known: []string{"namespace", "workload", "port", "ports", "address"}})
	if m == nil {
		if n == nil || n.Kind == yaml.ScalarNode {
			d.errorf(keyNode, path, "expected {namespace: NAME, workload: http-echo|tcp-echo|udp-echo, port: N}")
		}
		return sv
	}
	if m.require("namespace") {
		sv.Namespace = m.str("namespace")
	}
	if m.require("workload") {
		sv.Workload = m.str("workload")
		switch workload.Kind(sv.Workload) {
		case workload.KindHTTPEcho, workload.KindTCPEcho, workload.KindUDPEcho:
		default:
			d.errorf(m.get("workload"), m.sub("workload"), "workload must be %s, %s or %s; got %q", workload.KindHTTPEcho, workload.KindTCPEcho, workload.KindUDPEcho, sv.Workload)
		}
	}
	if m.has("port") && m.has("ports") {
		d.errorf(m.node, path, "port and ports are exclusive")
	}
	if m.has("port") {
		if p, ok := m.integer("port", 1, 65535); ok {
			sv.Ports = []int{p}
		}
	}
	for i, pn := range d.list(m.get("ports"), m.sub("ports")) {
		if p, ok := d.integer(pn, yamldiag.Index(m.sub("ports"), i), 1, 65535); ok {
			sv.Ports = append(sv.Ports, p)
		}
	}
	if m.has("address") {
		s := m.str("address")
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
			d.errorf(m.get("address"), m.sub("address"), "expected an IPv4 address, got %q", s)
		} else {
			sv.Addrs = []netip.Addr{a}
		}
	}
	nn := m.get("namespace")
	sd.checks = append(sd.checks, func(st *state) {
		if st.s.Topology == nil || sv.Namespace == "" {
			return
		}
		if !st.s.hasTopologyNamespace(sv.Namespace) {
			msg := fmt.Sprintf("unknown namespace %q", sv.Namespace)
			if s := yamldiag.Suggest(sv.Namespace, topologyNamespaces(st.s.Topology)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.errorf(nn, m.sub("namespace"), "%s", msg)
			return
		}
		for _, a := range sv.Addrs {
			if !containsAddr(st.s.NamespaceAddresses(sv.Namespace), a) {
				d.errorf(m.get("address"), m.sub("address"), "namespace %s has no address %s in the topology", sv.Namespace, a)
			}
		}
	})
	return sv
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}
