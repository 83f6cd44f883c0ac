package scenarios

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// decoder walks yaml.v3 nodes of one file and records diagnostics with the
// file name, the line of the offending node and its field path.
type decoder struct {
	file string
	ds   *diagnostics
	// prefix is prepended to every path (inline manifests inside steps).
	prefix string
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.ds.add(Diagnostic{File: d.file, Line: line, Path: d.fullPath(path), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.ds.warn(Diagnostic{File: d.file, Line: line, Path: d.fullPath(path), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) fullPath(path string) string {
	if d.prefix == "" {
		return path
	}
	if path == "" || path[0] == '[' {
		return d.prefix + path
	}
	return d.prefix + "." + path
}

// mapping is a checked YAML mapping: its keys were compared against the
// fields a kind supports.
type mapping struct {
	d      *decoder
	node   *yaml.Node
	path   string
	values map[string]*yaml.Node
	keys   map[string]*yaml.Node
	// unknown is set when a key was rejected.
	unknown bool
}

// fields lists what a mapping may hold: Known fields are decoded, Ignored
// fields are accepted and do not matter for networking.
type fields struct {
	Known   []string
	Ignored []string
}

// mapping checks that n is a mapping holding only allowed keys. Unknown keys
// are reported as typos when close to an allowed one, otherwise as "not
// supported yet". It returns nil (after reporting) when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, f fields) *mapping {
	n = yamldiag.Resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil {
			d.errorf(n, path, "expected a mapping, got %s", yamldiag.KindName(n))
		}
		return nil
	}
	m := &mapping{d: d, node: n, path: path, values: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	allowed := map[string]bool{}
	for _, k := range f.Known {
		allowed[k] = true
	}
	for _, k := range f.Ignored {
		allowed[k] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamldiag.Resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be strings")
			continue
		}
		if k.Value == "<<" {
			d.errorf(k, path, "not supported yet: YAML merge keys (<<)")
			continue
		}
		fp := yamldiag.Join(path, k.Value)
		if prev, dup := m.keys[k.Value]; dup {
			d.errorf(k, fp, "duplicate field (first at line %d)", prev.Line)
			continue
		}
		m.keys[k.Value] = k
		if !allowed[k.Value] {
			m.unknown = true
			if s := yamldiag.Suggest(k.Value, f.Known); s != "" {
				d.errorf(k, fp, "unknown field %q; did you mean %q?", k.Value, s)
			} else {
				d.errorf(k, fp, "not supported yet: %s", fp)
			}
			continue
		}
		m.values[k.Value] = yamldiag.Resolve(v)
	}
	return m
}

// has reports whether key is present and not null.
func (m *mapping) has(key string) bool { return m != nil && !yamldiag.IsNull(m.values[key]) }

// get returns the value of key, nil when absent or null.
func (m *mapping) get(key string) *yaml.Node {
	if m == nil || yamldiag.IsNull(m.values[key]) {
		return nil
	}
	return m.values[key]
}

// keyNode returns the key node for key (for line numbers), or the mapping.
func (m *mapping) keyNode(key string) *yaml.Node {
	if k, ok := m.keys[key]; ok {
		return k
	}
	return m.node
}

func (m *mapping) sub(key string) string { return yamldiag.Join(m.path, key) }

// require reports a missing field and returns false.
func (m *mapping) require(key string) bool {
	if m.has(key) {
		return true
	}
	m.d.errorf(m.node, m.sub(key), "required field is missing")
	return false
}

func (m *mapping) str(key string) string {
	n := m.get(key)
	if n == nil {
		return ""
	}
	return m.d.scalar(n, m.sub(key))
}

func (m *mapping) integer(key string, min, max int) (int, bool) {
	n := m.get(key)
	if n == nil {
		return 0, false
	}
	return m.d.integer(n, m.sub(key), min, max)
}

func (m *mapping) boolean(key string) bool {
	n := m.get(key)
	if n == nil {
		return false
	}
	return m.d.boolean(n, m.sub(key))
}

func (m *mapping) stringMap(key string) map[string]string {
	n := m.get(key)
	if n == nil {
		return nil
	}
	return m.d.stringMap(n, m.sub(key))
}

func (m *mapping) stringList(key string) []string {
	n := m.get(key)
	if n == nil {
		return nil
	}
	return m.d.stringList(n, m.sub(key))
}

func (m *mapping) duration(key string) time.Duration {
	n := m.get(key)
	if n == nil {
		return 0
	}
	return m.d.duration(n, m.sub(key))
}

// scalar returns the value of a scalar node of any type.
func (d *decoder) scalar(n *yaml.Node, path string) string {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a string, got %s", yamldiag.KindName(n))
		return ""
	}
	return n.Value
}

func (d *decoder) integer(n *yaml.Node, path string, min, max int) (int, bool) {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		d.errorf(n, path, "expected an integer, got %s", yamldiag.KindName(n))
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil {
		d.errorf(n, path, "expected an integer, got %q", n.Value)
		return 0, false
	}
	if v < int64(min) || v > int64(max) {
		d.errorf(n, path, "%d is out of range [%d, %d]", v, min, max)
		return 0, false
	}
	return int(v), true
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	n = yamldiag.Resolve(n)
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true", "True", "TRUE":
			return true
		case "false", "False", "FALSE":
			return false
		}
	}
	d.errorf(n, path, "expected true or false, got %s", yamldiag.KindName(n))
	return false
}

func (d *decoder) stringMap(n *yaml.Node, path string) map[string]string {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of strings, got %s", yamldiag.KindName(n))
		return nil
	}
	out := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamldiag.Resolve(n.Content[i]), yamldiag.Resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
			d.errorf(k, yamldiag.Join(path, k.Value), "expected a string value, got %s", yamldiag.KindName(v))
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.errorf(k, yamldiag.Join(path, k.Value), "duplicate key")
			continue
		}
		out[k.Value] = v.Value
	}
	return out
}

func (d *decoder) stringList(n *yaml.Node, path string) []string {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list of strings, got %s", yamldiag.KindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		c = yamldiag.Resolve(c)
		if c.Kind != yaml.ScalarNode {
			d.errorf(c, yamldiag.Index(path, i), "expected a string, got %s", yamldiag.KindName(c))
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// list returns the items of a sequence node.
func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	n = yamldiag.Resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", yamldiag.KindName(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = yamldiag.Resolve(c)
	}
	return out
}

// duration accepts Go durations ("500ms", "5s") and plain numbers of seconds.
func (d *decoder) duration(n *yaml.Node, path string) time.Duration {
	n = yamldiag.Resolve(n)
	if n.Kind == yaml.ScalarNode {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && n.Tag != "!!str" {
			if f < 0 || f > math.MaxInt32 {
				d.errorf(n, path, "duration %s is out of range", n.Value)
				return 0
			}
			return time.Duration(f * float64(time.Second))
		}
		if v, err := time.ParseDuration(n.Value); err == nil {
			if v < 0 {
				d.errorf(n, path, "duration %s is negative", n.Value)
				return 0
			}
			return v
		}
	}
	d.errorf(n, path, "expected a duration such as 500ms, 5s or 2m, got %s", yamldiag.KindName(n))
	return 0
}
