package topo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// LoadSpec reads, parses and validates the raw topology file at path.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	return ParseSpec(path, data)
}

// ParseSpec parses and validates a raw topology document; file names it in
// errors. Every problem found is reported (as SpecErrors), each with the
// file, line and field path.
func ParseSpec(file string, data []byte) (*Spec, error) {
	d := &specDecoder{p: problems{file: file, lines: map[string]int{}}}
	root, err := parseYAML(data)
	if err != nil {
		line, msg := yamldiag.SyntaxError(err)
		d.p.add(line, "", "%s", msg)
		return nil, d.p.err()
	}
	return d.decode(root)
}

// ParseSpecNode decodes and validates a raw topology from an already parsed
// YAML document (its root mapping, or the document node), for callers that
// read a multi-document file and dispatch on kind. Line numbers are those
// of the node, so errors still point into file.
func ParseSpecNode(file string, root *yaml.Node) (*Spec, error) {
	d := &specDecoder{p: problems{file: file, lines: map[string]int{}}}
	if root == nil {
		d.p.add(0, "", "empty document")
		return nil, d.p.err()
	}
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			d.p.add(root.Line, "", "empty document")
			return nil, d.p.err()
		}
		root = root.Content[0]
	}
	return d.decode(root)
}

func (d *specDecoder) decode(root *yaml.Node) (*Spec, error) {
	s := d.spec(root)
	s.File = d.p.file
	s.lines = d.p.lines
	if err := d.p.err(); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: a topology file holds one document; found another", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, errors.New("empty document")
}

// specDecoder turns the YAML node tree into a Spec, recording the line of
// every field and reporting structural problems: wrong types, unknown or
// duplicate fields, missing required fields, values that do not parse.
type specDecoder struct {
	p problems
}

// fields is a YAML mapping being read; done reports the keys nobody asked
// for.
type fields struct {
	d      *specDecoder
	path   string
	line   int
	values map[string]*yaml.Node
	keys   []*yaml.Node
	used   map[string]bool
	ok     bool
}

func (d *specDecoder) mapping(n *yaml.Node, path string) *fields {
	n = yamldiag.Resolve(n)
	f := &fields{d: d, path: path, line: n.Line, values: map[string]*yaml.Node{}, used: map[string]bool{}}
	d.p.lines[path] = n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		f.ok = true
		return f
	}
	if n.Kind != yaml.MappingNode {
		d.p.add(n.Line, path, "want a mapping (field: value), got %s", yamldiag.KindName(n))
		return f
	}
	f.ok = true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			d.p.add(k.Line, yamldiag.Join(path, "<<"), "merge keys are not supported")
			continue
		}
		if _, dup := f.values[k.Value]; dup {
			d.p.add(k.Line, yamldiag.Join(path, k.Value), "field given twice")
			continue
		}
		f.values[k.Value] = v
		f.keys = append(f.keys, k)
		d.p.lines[yamldiag.Join(path, k.Value)] = k.Line
	}
	return f
}

// get returns the value node of key (resolved), or nil.
func (f *fields) get(key string) *yaml.Node {
	f.used[key] = true
	v, ok := f.values[key]
	if !ok {
		return nil
	}
	v = yamldiag.Resolve(v)
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	return v
}

func (f *fields) missing(key string) {
	f.d.p.add(f.line, yamldiag.Join(f.path, key), "required field missing")
}

// done reports unknown fields, suggesting a close known one.
func (f *fields) done(known ...string) {
	if !f.ok {
		return
	}
	for _, k := range f.keys {
		if f.used[k.Value] {
			continue
		}
		msg := "unknown field"
		if s := yamldiag.Suggest(k.Value, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if len(known) > 0 {
			msg += fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
		}
		f.d.p.add(k.Line, yamldiag.Join(f.path, k.Value), "%s", msg)
	}
}

func (f *fields) scalar(key string, required bool) (string, string, bool) {
	path := yamldiag.Join(f.path, key)
	v := f.get(key)
	if v == nil {
		if required {
			f.missing(key)
		}
		return "", path, false
	}
	if v.Kind != yaml.ScalarNode {
		f.d.p.add(v.Line, path, "want a single value, got %s", yamldiag.KindName(v))
		return "", path, false
	}
	return v.Value, path, true
}

func (f *fields) str(key string, required bool) string {
	s, _, _ := f.scalar(key, required)
	return s
}

func (f *fields) boolean(key string, def bool) bool {
	s, path, ok := f.scalar(key, false)
	if !ok {
		return def
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	f.d.p.errf(path, "want true or false, got %q", s)
	return def
}

func (f *fields) integer(key string, lo, hi int64, what string) int64 {
	s, path, ok := f.scalar(key, false)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < lo || n > hi {
		f.d.p.errf(path, "bad %s %q: want an integer from %d to %d", what, s, lo, hi)
		return 0
	}
	return n
}

func (f *fields) mac(key string) net.HardwareAddr {
	s, path, ok := f.scalar(key, false)
	if !ok {
		return nil
	}
	m, err := parseMAC(s)
	if err != nil {
		f.d.p.errf(path, "%v", err)
		return nil
	}
	return m
}

func (f *fields) addr(key string, required bool) netip.Addr {
	s, path, ok := f.scalar(key, required)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			f.d.p.errf(path, "bad IP address %q: want an address without prefix length", s)
		} else {
			f.d.p.errf(path, "bad IP address %q", s)
		}
		return netip.Addr{}
	}
	return a.Unmap()
}

// list returns the items of a list field, with their paths.
func (f *fields) list(key string) ([]*yaml.Node, []string) {
	path := yamldiag.Join(f.path, key)
	v := f.get(key)
	if v == nil {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		f.d.p.add(v.Line, path, "want a list, got %s", yamldiag.KindName(v))
		return nil, nil
	}
	var items []*yaml.Node
	var paths []string
	for i, it := range v.Content {
		it = yamldiag.Resolve(it)
		p := fmt.Sprintf("%s[%d]", path, i)
		f.d.p.lines[p] = it.Line
		items = append(items, it)
		paths = append(paths, p)
	}
	return items, paths
}

func (f *fields) strings(key string) []string {
	items, paths := f.list(key)
	var out []string
	for i, it := range items {
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			f.d.p.add(it.Line, paths[i], "want a name, got %s", yamldiag.KindName(it))
			continue
		}
		out = append(out, it.Value)
	}
	return out
}

func (f *fields) prefixes(key string) []netip.Prefix {
	items, paths := f.list(key)
	var out []netip.Prefix
	for i, it := range items {
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			f.d.p.add(it.Line, paths[i], "want an address with prefix length, got %s", yamldiag.KindName(it))
			continue
		}
		p, err := parseIfAddr(it.Value)
		if err != nil {
			f.d.p.add(it.Line, paths[i], "%v", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// parseIfAddr parses an interface address with its prefix length.
func parseIfAddr(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: missing prefix length (e.g. %s/24)", s, s)
		}
		return netip.Prefix{}, fmt.Errorf("bad address %q: want address/prefix-length (e.g. 10.0.0.1/24)", s)
	}
	a := p.Addr()
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("bad address %q: IPv4-mapped IPv6 addresses are not interface addresses", s)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Prefix{}, fmt.Errorf("bad address %q: not a unicast address", s)
	}
	return p, nil
}

// parseMAC parses a unicast Ethernet address.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("bad MAC address %q: want six hex octets like 0a:58:0a:84:02:2e", s)
	}
	if m[0]&1 != 0 {
		return nil, fmt.Errorf("bad MAC address %q: multicast bit set (first octet odd); a device needs a unicast address", s)
	}
	if bytes.Equal(m, make([]byte, 6)) {
		return nil, fmt.Errorf("bad MAC address %q: all zero", s)
	}
	return m, nil
}

func (d *specDecoder) spec(root *yaml.Node) *Spec {
	s := &Spec{}
	f := d.mapping(root, "")
	d.p.lines[""] = 1
	s.APIVersion = f.str("apiVersion", true)
	s.Kind = f.str("kind", true)
	if m := f.get("metadata"); m != nil {
		mf := d.mapping(m, "metadata")
		s.Metadata.Name = mf.str("name", true)
		s.Metadata.Description = mf.str("description", false)
		mf.done("name", "description")
	} else {
		f.missing("metadata")
	}
	items, paths := f.list("namespaces")
	if f.get("namespaces") == nil {
		f.missing("namespaces")
	}
	for i, it := range items {
		s.Namespaces = append(s.Namespaces, d.namespace(it, paths[i]))
	}
	items, paths = f.list("links")
	for i, it := range items {
		s.Links = append(s.Links, d.link(it, paths[i]))
	}
	items, paths = f.list("tc")
	for i, it := range items {
		s.TC = append(s.TC, d.tcRule(it, paths[i]))
	}
	f.done("apiVersion", "kind", "metadata", "namespaces", "links", "tc")
	return s
}

func (d *specDecoder) namespace(n *yaml.Node, path string) NamespaceSpec {
	var ns NamespaceSpec
	f := d.mapping(n, path)
	ns.Name = f.str("name", true)
	if v := f.get("sysctls"); v != nil {
		sp := yamldiag.Join(path, "sysctls")
		if v.Kind != yaml.MappingNode {
			d.p.add(v.Line, sp, "want a mapping of sysctl: value, got %s", yamldiag.KindName(v))
		} else {
			seen := map[string]bool{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, val := v.Content[i], yamldiag.Resolve(v.Content[i+1])
				kp := fmt.Sprintf("%s[%s]", sp, k.Value)
				d.p.lines[kp] = k.Line
				if seen[k.Value] {
					d.p.add(k.Line, kp, "sysctl given twice")
					continue
				}
				seen[k.Value] = true
				if val.Kind != yaml.ScalarNode || val.Tag == "!!null" {
					d.p.add(val.Line, kp, "want a value, got %s", yamldiag.KindName(val))
					continue
				}
				ns.Sysctls = append(ns.Sysctls, Sysctl{Key: k.Value, Value: val.Value})
			}
		}
	}
	items, paths := f.list("devices")
	for i, it := range items {
		ns.Devices = append(ns.Devices, d.device(it, paths[i]))
	}
	items, paths = f.list("routes")
	for i, it := range items {
		ns.Routes = append(ns.Routes, d.route(it, paths[i]))
	}
	items, paths = f.list("neighbours")
	for i, it := range items {
		ns.Neighbours = append(ns.Neighbours, d.neighbour(it, paths[i]))
	}
	f.done("name", "sysctls", "devices", "routes", "neighbours")
	return ns
}

var (
	commonDeviceFields = []string{"name", "kind", "mac", "mtu", "addresses", "up"}
	bridgeFields       = []string{"ports"}
	vxlanFields        = []string{"vni", "port", "remote", "local", "dev", "external", "learning", "createIn"}
)

func (d *specDecoder) device(n *yaml.Node, path string) DeviceSpec {
	var dev DeviceSpec
	f := d.mapping(n, path)
	dev.Name = f.str("name", true)
	kind, kpath, _ := f.scalar("kind", true)
	dev.Kind = DeviceKind(kind)
	dev.MAC = f.mac("mac")
	dev.MTU = int(f.integer("mtu", 68, 65535, "MTU"))
	dev.Addresses = f.prefixes("addresses")
	dev.Down = !f.boolean("up", true)
	known := append([]string{}, commonDeviceFields...)
	switch dev.Kind {
	case DeviceBridge:
		dev.Ports = f.strings("ports")
		known = append(known, bridgeFields...)
	case DeviceVXLAN:
		known = append(known, vxlanFields...)
		dev.VNI = uint32(f.integer("vni", 0, 1<<24-1, "VNI"))
		if _, _, ok := f.scalar("port", false); ok {
			dev.Port = int(f.integer("port", 1, 65535, "UDP port"))
		} else {
			dev.Port = 4789
		}
		dev.Remote = f.addr("remote", false)
		dev.Local = f.addr("local", false)
		dev.Dev = f.str("dev", false)
		dev.External = f.boolean("external", false)
		dev.Learning = f.boolean("learning", false)
		dev.CreateIn = f.str("createIn", false)
	case DeviceDummy:
	case DeviceVeth:
		d.p.errf(kpath, "veth pairs are declared under links (both ends at once), not as a device")
	case "":
	default:
		d.p.errf(kpath, "unknown device kind %q (want bridge, vxlan or dummy; veths go under links)", kind)
	}
	// Fields of another kind: say so rather than "unknown field".
	var other []string
	switch dev.Kind {
	case DeviceDummy:
		other = append(append(other, bridgeFields...), vxlanFields...)
	case DeviceBridge:
		other = vxlanFields
	case DeviceVXLAN:
		other = bridgeFields
	default:
		// Kind missing or wrong (already reported): ignore kind fields.
		for _, k := range append(append([]string{}, bridgeFields...), vxlanFields...) {
			f.used[k] = true
		}
	}
	for _, k := range other {
		if _, ok := f.values[k]; ok {
			f.used[k] = true
			d.p.errf(yamldiag.Join(path, k), "field %s does not apply to a %s device", k, dev.Kind)
		}
	}
	f.done(known...)
	return dev
}

func (d *specDecoder) endpoint(n *yaml.Node, path string) Endpoint {
	var e Endpoint
	f := d.mapping(n, path)
	e.NS = f.str("ns", true)
	e.Name = f.str("name", true)
	e.MAC = f.mac("mac")
	e.MTU = int(f.integer("mtu", 68, 65535, "MTU"))
	e.Addresses = f.prefixes("addresses")
	e.Down = !f.boolean("up", true)
	f.done("ns", "name", "mac", "mtu", "addresses", "up")
	return e
}

func (d *specDecoder) link(n *yaml.Node, path string) LinkSpec {
	var l LinkSpec
	f := d.mapping(n, path)
	if k, kp, ok := f.scalar("kind", false); ok && k != string(DeviceVeth) {
		d.p.errf(kp, "unknown link kind %q (only veth links are supported; other devices go under a namespace's devices)", k)
	}
	if a := f.get("a"); a != nil {
		l.A = d.endpoint(a, yamldiag.Join(path, "a"))
	} else {
		f.missing("a")
	}
	if b := f.get("b"); b != nil {
		l.B = d.endpoint(b, yamldiag.Join(path, "b"))
	} else {
		f.missing("b")
	}
	f.done("kind", "a", "b")
	return l
}

func (d *specDecoder) route(n *yaml.Node, path string) RouteSpec {
	var r RouteSpec
	f := d.mapping(n, path)
	if s, p, ok := f.scalar("dst", true); ok {
		if s == "default" {
			r.Dst = netip.Prefix{}
		} else if pf, err := netip.ParsePrefix(s); err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				d.p.errf(p, "bad destination %q: missing prefix length (e.g. %s/%d)", s, s, a.BitLen())
			} else {
				d.p.errf(p, "bad destination %q: want a CIDR (10.0.0.0/8) or default", s)
			}
		} else if pf.Masked() != pf {
			d.p.errf(p, "bad destination %q: host bits set (did you mean %s?)", s, pf.Masked())
		} else {
			r.Dst = pf
		}
	}
	r.Via = f.addr("via", false)
	r.Dev = f.str("dev", false)
	r.Src = f.addr("src", false)
	r.OnLink = f.boolean("onlink", false)
	if s, p, ok := f.scalar("type", false); ok {
		switch t := RouteType(s); t {
		case RouteUnicast, RouteBlackhole, RouteUnreachable, RouteProhibit:
			r.Type = t
		default:
			d.p.errf(p, "unknown route type %q (want unicast, blackhole, unreachable or prohibit)", s)
		}
	}
	f.done("dst", "via", "dev", "src", "onlink", "type")
	return r
}

func (d *specDecoder) neighbour(n *yaml.Node, path string) NeighbourSpec {
	var nb NeighbourSpec
	f := d.mapping(n, path)
	nb.IP = f.addr("ip", true)
	if _, _, ok := f.scalar("mac", false); ok {
		nb.MAC = f.mac("mac")
	} else {
		f.missing("mac")
	}
	nb.Dev = f.str("dev", true)
	nb.Stale = !f.boolean("permanent", true)
	f.done("ip", "mac", "dev", "permanent")
	return nb
}

func (d *specDecoder) tcRule(n *yaml.Node, path string) TCRule {
	var t TCRule
	f := d.mapping(n, path)
	t.NS = f.str("ns", true)
	t.Dev = f.str("dev", true)
	if s, p, ok := f.scalar("hook", true); ok {
		if h := TCHook(s); h == HookIngress || h == HookEgress {
			t.Hook = h
		} else {
			d.p.errf(p, "unknown hook %q (want ingress or egress)", s)
		}
	}
	if s, p, ok := f.scalar("action", true); ok {
		if a := MirredMode(s); a == MirredRedirect || a == MirredMirror {
			t.Action = a
		} else {
			d.p.errf(p, "unknown action %q (want redirect or mirror)", s)
		}
	}
	t.To = f.str("to", true)
	t.ToDirection = HookEgress
	if s, p, ok := f.scalar("toDirection", false); ok {
		if h := TCHook(s); h == HookIngress || h == HookEgress {
			t.ToDirection = h
		} else {
			d.p.errf(p, "unknown direction %q (want egress or ingress)", s)
		}
	}
	f.done("ns", "dev", "hook", "action", "to", "toDirection")
	return t
}
