package scenarios

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/pcap"
)

// PacketMode is what a packet assertion checks.
type PacketMode string

// Packet assertion modes, as the pcap package's assertions.
const (
	// PacketCount: the number of packets matching Match is in Count
	// (default: at least one).
	PacketCount PacketMode = "count"
	// PacketNone: no packet matches Match.
	PacketNone PacketMode = "none"
	// PacketOnly: some packet matches Match and every other one matches
	// one of Ignore.
	PacketOnly PacketMode = "only"
	// PacketInOrder: packets matching Sequence appear in this order.
	PacketInOrder PacketMode = "inOrder"
)

// PacketAssertion is one packet assertion on a captured device, decoded
// into the pcap package's types:
//
//   - on: kind-worker/eth0
//     match: {vxlan: {vni: "identity-of:pod-to-a"}, inner: {proto: tcp, dst: echo-a, flags: [SYN]}}
//     count: ">= 1"
type PacketAssertion struct {
	Device   Device
	Mode     PacketMode
	Match    pcap.Match
	Count    pcap.Count
	Ignore   []pcap.Match
	Sequence []pcap.Match
	// Spec is the assertion block as written.
	Spec   *yaml.Node
	File   string
	Source Source
}

// AssertOn checks the assertion against the packets of src, resolving lab
// names with r.
func (a *PacketAssertion) AssertOn(src pcap.Source, r pcap.Resolver) error {
	compile := func(m pcap.Match) (*pcap.Filter, error) { return pcap.Compile(m, r) }
	switch a.Mode {
	case PacketInOrder:
		filters := make([]*pcap.Filter, len(a.Sequence))
		for i, m := range a.Sequence {
			f, err := compile(m)
			if err != nil {
				return fmt.Errorf("%s: %w", a.Source, err)
			}
			filters[i] = f
		}
		return pcap.AssertInOrder(src, filters...)
	}
	f, err := compile(a.Match)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Source, err)
	}
	switch a.Mode {
	case PacketNone:
		return pcap.AssertNone(src, f)
	case PacketOnly:
		ignore := make([]*pcap.Filter, len(a.Ignore))
		for i, m := range a.Ignore {
			if ignore[i], err = compile(m); err != nil {
				return fmt.Errorf("%s: %w", a.Source, err)
			}
		}
		return pcap.AssertOnly(src, f, ignore...)
	}
	return pcap.AssertCount(src, f, a.Count)
}

// Names returns the lab names the assertion's matches refer to.
func (a *PacketAssertion) Names() []string {
	var out []string
	for _, m := range append(append([]pcap.Match{a.Match}, a.Ignore...), a.Sequence...) {
		out = append(out, m.Names()...)
	}
	return out
}

var packetFields = fields{Known: []string{"on", "match", "count", "none", "only", "ignore", "inOrder"}}

// decodePacketSpec fills the mode and matches of a from its block.
func (d *decoder) decodePacketSpec(a *PacketAssertion, n *yaml.Node, path string) bool {
	m := d.mapping(n, path, packetFields)
	if m == nil {
		return false
	}
	var modes []string
	for _, k := range []string{"match", "none", "only", "inOrder"} {
		if _, ok := m.values[k]; ok {
			modes = append(modes, k)
		}
	}
	if len(modes) != 1 {
		d.errorf(n, path, "a packet assertion needs exactly one of match (with optional count), none, only (with optional ignore), inOrder")
		return false
	}
	ok := true
	switch modes[0] {
	case "match":
		a.Mode = PacketCount
		ok = d.decodeMatch(m.get("match"), m.sub("match"), &a.Match)
		a.Count = pcap.AtLeast(1)
		if cn := m.get("count"); cn != nil {
			c, err := parseCount(cn)
			if err != nil {
				d.errorf(cn, m.sub("count"), "%v", err)
				ok = false
			}
			a.Count = c
		}
	case "none":
		a.Mode = PacketNone
		ok = d.decodeMatch(m.get("none"), m.sub("none"), &a.Match)
	case "only":
		a.Mode = PacketOnly
		ok = d.decodeMatch(m.get("only"), m.sub("only"), &a.Match)
		for i, in := range d.list(m.get("ignore"), m.sub("ignore")) {
			var im pcap.Match
			if d.decodeMatch(in, indexPath(m.sub("ignore"), i), &im) {
				a.Ignore = append(a.Ignore, im)
			} else {
				ok = false
			}
		}
	case "inOrder":
		a.Mode = PacketInOrder
		items := d.list(m.get("inOrder"), m.sub("inOrder"))
		if len(items) < 2 {
			d.errorf(m.keyNode("inOrder"), m.sub("inOrder"), "inOrder needs at least two matches")
			ok = false
		}
		for i, in := range items {
			var im pcap.Match
			if d.decodeMatch(in, indexPath(m.sub("inOrder"), i), &im) {
				a.Sequence = append(a.Sequence, im)
			} else {
				ok = false
			}
		}
	}
	if m.has("count") && a.Mode != PacketCount {
		d.errorf(m.keyNode("count"), m.sub("count"), "count goes with match")
		ok = false
	}
	if m.has("ignore") && a.Mode != PacketOnly {
		d.errorf(m.keyNode("ignore"), m.sub("ignore"), "ignore goes with only")
		ok = false
	}
	return ok
}

var typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

var countRE = regexp.MustCompile(`^\s*(>=|<=|=|==)?\s*(\d+)\s*(?:-\s*(\d+))?\s*$`)

// parseCount reads a packet count: 3 (exactly), ">= 1", "<= 2", "1-3".
func parseCount(n *yaml.Node) (pcap.Count, error) {
	if n.Kind != yaml.ScalarNode {
		return pcap.Count{}, fmt.Errorf("expected a count such as 3, \">= 1\", \"<= 2\" or \"1-3\"")
	}
	m := countRE.FindStringSubmatch(n.Value)
	if m == nil {
		return pcap.Count{}, fmt.Errorf("expected a count such as 3, \">= 1\", \"<= 2\" or \"1-3\", got %q", n.Value)
	}
	a, _ := strconv.Atoi(m[2])
	var c pcap.Count
	switch {
	case m[3] != "":
		if m[1] != "" {
			return pcap.Count{}, fmt.Errorf("bad count %q", n.Value)
		}
		b, _ := strconv.Atoi(m[3])
		c = pcap.Between(a, b)
	case m[1] == ">=":
		c = pcap.AtLeast(a)
	case m[1] == "<=":
		c = pcap.AtMost(a)
	default:
		c = pcap.Exactly(a)
	}
	return c, c.Validate()
}

// decodeMatch decodes a pcap.Match strictly (unknown fields are errors with
// their line) and validates it.
func (d *decoder) decodeMatch(n *yaml.Node, path string, out *pcap.Match) bool {
	if n == nil {
		d.errorf(nil, path, "expected a packet match")
		return false
	}
	if !d.strictFields(n, path, reflect.TypeOf(*out)) {
		return false
	}
	if err := n.Decode(out); err != nil {
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
	if err := out.Validate(); err != nil {
		d.errorf(n, path, "%v", err)
		return false
	}
	return true
}

// strictFields checks the keys of n (recursively) against the yaml tags of
// struct type t.
func (d *decoder) strictFields(n *yaml.Node, path string, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n = resolveAlias(n)
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a mapping, got %s", kindName(n))
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
			fp := joinPath(path, k.Value)
			if !known {
				if s := suggest(k.Value, names); s != "" {
					d.errorf(k, fp, "unknown field %q; did you mean %q?", k.Value, s)
				} else {
					d.errorf(k, fp, "unknown field %q; packet matches have %s", k.Value, strings.Join(names, ", "))
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
		if n.Kind == yaml.SequenceNode {
			ok := true
			for i, c := range n.Content {
				if !d.strictFields(c, indexPath(path, i), t.Elem()) {
					ok = false
				}
			}
			return ok
		}
	}
	return true
}
