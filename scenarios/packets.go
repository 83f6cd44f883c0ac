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

// PacketAssertion is one packet assertion on a captured device: the
// device, and a pcap.Expectation written inline next to it:
//
//   - on: kind-worker/eth0
//     match: {vxlan: {vni: "identity-of:pod-to-a"}, inner: {proto: tcp, dst: echo-a, flags: [SYN]}}
//     atLeast: 1        # or count: N, atMost: N, none: true, only: true (+ ignore), or inOrder: [...]
type PacketAssertion struct {
	Device Device
	Expect pcap.Expectation
	// Spec is the assertion block as written.
	Spec   *yaml.Node
	File   string
	Source Source
}

// Check runs the expectation on the packets captured on the device,
// resolving lab names with r.
func (a *PacketAssertion) Check(src pcap.Source, r pcap.Resolver) error {
	if err := a.Expect.Check(src, r); err != nil {
		return fmt.Errorf("%s: %w", a.Source, err)
	}
	return nil
}

// Names returns the lab names the expectation refers to, with identity-of:
// VNIs reduced to the pod name.
func (a *PacketAssertion) Names() []string { return a.Expect.Names() }

// decodePacketSpec decodes the expectation of a packet assertion block
// (every key but "on") strictly, with lines, and validates it.
func (d *decoder) decodePacketSpec(a *PacketAssertion, n *yaml.Node, path string) bool {
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "on" {
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
				if !d.strictFields(c, indexPath(path, i), t.Elem()) {
					ok = false
				}
			}
			return ok
		}
	}
	return true
}
