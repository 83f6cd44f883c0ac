package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/pcap"

	"github.com/podlab/podlab/internal/yamldiag"
)

// PacketAssertion is one packet assertion on a captured device: the
// device, and a pcap.Expectation written inline next to it:
//
//   - on: kind-worker/eth0
//     match: {vxlan: {vni: "identity-of:pod-to-a"}, inner: {proto: tcp, dst: echo-a, flags: [SYN]}}
//     atLeast: 1        # or count: N, atMost: N, none: true, only: true (+ ignore), or inOrder: [...]
type PacketAssertion struct {
	Device Device
	// Ether, when set, narrows the device's frames to those with these
	// Ethernet addresses before Expect is checked (so none: true means no
	// such frame matches).
	Ether  *EtherMatch
	Expect pcap.Expectation
	// Spec is the assertion block as written.
	Spec   *yaml.Node
	File   string
	Source Source
}

// Check runs the expectation on the packets captured on the device,
// resolving lab names with r.
func (a *PacketAssertion) Check(src pcap.Source, r pcap.Resolver) error {
	if a.Ether != nil {
		filtered, err := a.Ether.Filter(src, r)
		if err != nil {
			return fmt.Errorf("%s: %w", a.Source, err)
		}
		src = filtered
	}
	if err := a.Expect.Check(src, r); err != nil {
		return fmt.Errorf("%s: %w", a.Source, err)
	}
	return nil
}

// Describe renders the assertion for reports: the Ethernet filter, if
// any, then the expectation.
func (a *PacketAssertion) Describe() string {
	if a.Ether == nil {
		return a.Expect.String()
	}
	return fmt.Sprintf("frames with %s: %s", a.Ether, a.Expect.String())
}

// Names returns the lab names the expectation refers to, with identity-of:
// VNIs reduced to the pod name.
func (a *PacketAssertion) Names() []string { return a.Expect.Names() }

// decodePacketSpec decodes the expectation of a packet assertion block
// (every key but "on") strictly, with lines, and validates it.
func (d *decoder) decodePacketSpec(a *PacketAssertion, n *yaml.Node, path string) bool {
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "on" && k != "ether" {
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	if !d.strictFields(rest, path, reflect.TypeOf(a.Expect)) {
		return false
	}
	if !d.decodeInto(rest, path, &a.Expect) {
		return false
	}
	if err := a.Expect.Validate(); err != nil {
		d.errorf(n, path, "%v", err)
		return false
	}
	return true
}

var typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeInto decodes n into out, turning yaml type errors into diagnostics.
func (d *decoder) decodeInto(n *yaml.Node, path string, out any) bool {
	err := n.Decode(out)
	if err == nil {
		return true
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			line := n.Line
			msg := e
			if m := typeErrorLine.FindStringSubmatch(e); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = m[2]
			}
			d.ds.add(Diagnostic{File: d.file, Line: line, Path: d.fullPath(path), Msg: msg})
		}
		return false
	}
	d.errorf(n, path, "%v", err)
	return false
}

// strictFields checks the keys of n (recursively) against the yaml tags of
// struct type t.
func (d *decoder) strictFields(n *yaml.Node, path string, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n = yamldiag.Resolve(n)
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a mapping, got %s", yamldiag.KindName(n))
			return false
		}
		byName := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			byName[name] = f.Type
			names = append(names, name)
		}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, known := byName[k.Value]
			fp := yamldiag.Join(path, k.Value)
			if !known {
				if s := yamldiag.Suggest(k.Value, names); s != "" {
					d.errorf(k, fp, "unknown field %q; did you mean %q?", k.Value, s)
				} else {
					d.errorf(k, fp, "unknown field %q; known fields: %s", k.Value, strings.Join(names, ", "))
				}
				ok = false
				continue
			}
			if !d.strictFields(n.Content[i+1], fp, ft) {
				ok = false
			}
		}
		return ok
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return true
		}
		if n.Kind == yaml.SequenceNode {
			ok := true
			for i, c := range n.Content {
				if !d.strictFields(c, yamldiag.Index(path, i), t.Elem()) {
					ok = false
				}
			}
			return ok
		}
	}
	return true
}

// EtherMatch selects frames by Ethernet address. Each side is a MAC
// literal (0a:58:0a:84:02:2e) or mac-of:NAMESPACE/DEVICE, the MAC a device
// of a raw topology has when the assertion is checked.
//
//   - on: podns/vxlan0
//     ether: {dst: "mac-of:pod/eth0"}
//     match: {proto: icmp, icmp: {type: echo-request}}
type EtherMatch struct {
	Src string
	Dst string
}

// MACOfPrefix starts an Ethernet address that names a device.
const MACOfPrefix = "mac-of:"

// MACResolver is implemented by resolvers that know the MAC address of a
// lab device ("NAMESPACE/DEVICE" in a raw topology lab).
type MACResolver interface {
	MACOf(device string) (net.HardwareAddr, error)
}

// String renders the match as written.
func (e *EtherMatch) String() string {
	var parts []string
	if e.Src != "" {
		parts = append(parts, "src "+e.Src)
	}
	if e.Dst != "" {
		parts = append(parts, "dst "+e.Dst)
	}
	return "ether " + strings.Join(parts, " ")
}

func resolveMAC(s string, r pcap.Resolver) (net.HardwareAddr, error) {
	if dev, ok := strings.CutPrefix(s, MACOfPrefix); ok {
		mr, ok := r.(MACResolver)
		if !ok {
			return nil, fmt.Errorf("%s: this lab cannot tell device MACs", s)
		}
		return mr.MACOf(dev)
	}
	return net.ParseMAC(s)
}

// Filter returns the frames of src whose Ethernet addresses match.
func (e *EtherMatch) Filter(src pcap.Source, r pcap.Resolver) (pcap.Source, error) {
	var srcMAC, dstMAC net.HardwareAddr
	var err error
	if e.Src != "" {
		if srcMAC, err = resolveMAC(e.Src, r); err != nil {
			return nil, fmt.Errorf("ether src: %w", err)
		}
	}
	if e.Dst != "" {
		if dstMAC, err = resolveMAC(e.Dst, r); err != nil {
			return nil, fmt.Errorf("ether dst: %w", err)
		}
	}
	var out []pcap.Packet
	for _, p := range src.Packets() {
		if (p.LinkType != 0 && p.LinkType != pcap.LinkTypeEthernet) || len(p.Data) < 14 {
			continue
		}
		if dstMAC != nil && !bytes.Equal(p.Data[0:6], dstMAC) {
			continue
		}
		if srcMAC != nil && !bytes.Equal(p.Data[6:12], srcMAC) {
			continue
		}
		out = append(out, p)
	}
	name := fmt.Sprintf("%s (frames with %s", src.Interface(), e)
	if dstMAC != nil {
		name += " = " + dstMAC.String()
	}
	name += ")"
	return pcap.NewRecording(name, src.Path(), out).WithResolver(r), nil
}

// decodeEther reads {src: MAC, dst: MAC}.
func (d *decoder) decodeEther(n *yaml.Node, path string) *EtherMatch {
	m := d.mapping(n, path, fields{Known: []string{"src", "dst"}})
	if m == nil {
		return nil
	}
	e := &EtherMatch{Src: m.str("src"), Dst: m.str("dst")}
	for _, side := range []string{"src", "dst"} {
		v := m.str(side)
		if v == "" || strings.HasPrefix(v, MACOfPrefix) {
			continue
		}
		if mac, err := net.ParseMAC(v); err != nil || len(mac) != 6 {
			d.errorf(m.get(side), m.sub(side), "bad MAC address %q: want six hex octets or mac-of:NAMESPACE/DEVICE", v)
		}
	}
	if e.Src == "" && e.Dst == "" {
		d.errorf(n, path, "expected src and/or dst")
		return nil
	}
	return e
}

// checkEther resolves mac-of: devices against the topology.
func (sd *scenarioDecoder) checkEther(e *EtherMatch, n *yaml.Node, path string) {
	for _, side := range []string{e.Src, e.Dst} {
		dev, ok := strings.CutPrefix(side, MACOfPrefix)
		if !ok {
			continue
		}
		if sd.s.Topology == nil {
			sd.d.errorf(n, path, "not supported yet: %s in a cluster scenario (it names a device of a Topology)", side)
			continue
		}
		ns, name, ok := strings.Cut(dev, "/")
		if !ok {
			sd.d.errorf(n, path, "expected mac-of:NAMESPACE/DEVICE, got %q", side)
			continue
		}
		d := Device{Node: ns, Name: name, Raw: dev}
		sd.resolveRawDevice(&d, n, path)
	}
}

// faultName describes a fault step: "setMAC podns/vxlan0 = MAC of pod/eth0".
func faultName(f *Fault) string {
	switch f.Kind {
	case FaultSetMAC:
		if f.MAC != nil {
			return fmt.Sprintf("setMAC %s = %s", f.Device.Raw, f.MAC)
		}
		return fmt.Sprintf("setMAC %s = MAC of %s", f.Device.Raw, f.CopyFrom.Raw)
	case FaultSysctl:
		return fmt.Sprintf("sysctl %s in %s = %s", f.Key, f.Namespace, f.Value)
	case FaultVXLAN:
		var ch []string
		if f.VXLAN != nil && f.VXLAN.Port != 0 {
			ch = append(ch, fmt.Sprintf("port %d", f.VXLAN.Port))
		}
		if f.VXLAN != nil && f.VXLAN.DF != "" {
			ch = append(ch, "df "+f.VXLAN.DF)
		}
		return fmt.Sprintf("vxlan %s %s", f.Device.Raw, strings.Join(ch, ", "))
	case FaultMTU:
		return fmt.Sprintf("mtu %s %d", f.Device.Raw, f.MTU)
	case FaultLinkDown, FaultLinkUp:
		return fmt.Sprintf("%s %s", f.Kind, f.Device.Raw)
	}
	return string(f.Kind)
}
