package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// Error is a problem in a policy manifest, located by file, line and field
// path: "cnp.yaml:12: spec.ingress[0].toPorts[0].ports[0].port: invalid port \"x\"".
type Error = yamldiag.Diagnostic

// notSupported is the message prefix of constructs podlab does not implement.
const notSupported = "not supported yet: "

// decoder walks yaml.Nodes and reports errors with file, line and path.
type decoder struct {
	file string
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

// fieldFunc decodes the value of one mapping field.
type fieldFunc func(v *yaml.Node, path string) error

// fields decodes a mapping, calling the handler of each key; unknown and
// duplicate keys are errors. A null node is an empty mapping.
func (d *decoder) fields(n *yaml.Node, path string, handlers map[string]fieldFunc) error {
	n = yamldiag.Resolve(n)
	if yamldiag.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, path, "expected a mapping, got %s", yamldiag.KindName(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], yamldiag.Resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, path, "expected a field name, got %s", yamldiag.KindName(k))
		}
		p := yamldiag.Join(path, k.Value)
		if seen[k.Value] {
			return d.errf(k, p, "duplicate field")
		}
		seen[k.Value] = true
		h, ok := handlers[k.Value]
		if !ok {
			return d.errf(k, p, "unknown field %q", k.Value)
		}
		if h == nil {
			continue // accepted and ignored
		}
		if err := h(v, p); err != nil {
			// Point "not supported yet" errors about the field itself at
			// its name rather than at its (possibly multi-line) value.
			var e *Error
			if errors.As(err, &e) && e.Path == p && strings.HasPrefix(e.Msg, notSupported) {
				e.Line = k.Line
			}
			return err
		}
	}
	return nil
}

// keys returns the field names present in a mapping node.
func keys(n *yaml.Node) map[string]*yaml.Node {
	n = yamldiag.Resolve(n)
	out := map[string]*yaml.Node{}
	if n == nil || n.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out[n.Content[i].Value] = n.Content[i]
	}
	return out
}

// list calls fn for each item of a sequence; null is an empty list.
func (d *decoder) list(n *yaml.Node, path string, fn func(item *yaml.Node, path string) error) error {
	n = yamldiag.Resolve(n)
	if yamldiag.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return d.errf(n, path, "expected a list, got %s", yamldiag.KindName(n))
	}
	for i, it := range n.Content {
		if err := fn(yamldiag.Resolve(it), yamldiag.Index(path, i)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) str(n *yaml.Node, path string) (string, error) {
	n = yamldiag.Resolve(n)
	if yamldiag.IsNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", d.errf(n, path, "expected a string, got %s", yamldiag.KindName(n))
	}
	return n.Value, nil
}

func (d *decoder) strList(n *yaml.Node, path string) ([]string, []*yaml.Node, error) {
	var out []string
	var nodes []*yaml.Node
	err := d.list(n, path, func(it *yaml.Node, p string) error {
		s, err := d.str(it, p)
		if err != nil {
			return err
		}
		out = append(out, s)
		nodes = append(nodes, it)
		return nil
	})
	return out, nodes, err
}

func (d *decoder) strMap(n *yaml.Node, path string) (map[string]string, error) {
	n = yamldiag.Resolve(n)
	out := map[string]string{}
	if yamldiag.IsNull(n) {
		return out, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(n, path, "expected a mapping, got %s", yamldiag.KindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], yamldiag.Resolve(n.Content[i+1])
		p := yamldiag.Join(path, k.Value)
		if _, dup := out[k.Value]; dup {
			return nil, d.errf(k, p, "duplicate field")
		}
		s, err := d.str(v, p)
		if err != nil {
			return nil, err
		}
		out[k.Value] = s
	}
	return out, nil
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, error) {
	n = yamldiag.Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		return false, d.errf(n, path, "expected true or false")
	}
	b, err := strconv.ParseBool(n.Value)
	if err != nil || (n.Tag != "!!bool" && n.Tag != "!!str") {
		return false, d.errf(n, path, "expected true or false, got %q", n.Value)
	}
	return b, nil
}

// integer decodes an integer scalar in [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64) (int64, error) {
	n = yamldiag.Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		v := ""
		if n != nil {
			v = n.Value
		}
		return 0, d.errf(n, path, "expected an integer, got %q", v)
	}
	i, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || i < lo || i > hi {
		return 0, d.errf(n, path, "invalid value %s: must be in %d-%d", n.Value, lo, hi)
	}
	return i, nil
}

// valueNode returns the value node of field name in mapping n, or n itself
// when absent (for error lines).
func valueNode(n *yaml.Node, name string) *yaml.Node {
	m := yamldiag.Resolve(n)
	if m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == name {
				return m.Content[i+1]
			}
		}
	}
	return n
}
