// Package yamldiag is how podlab's YAML readers (scenarios, Kubernetes
// manifests, kind Cluster configs, policies, raw topologies) locate and
// word a problem: a Diagnostic names the file, the line YAML gives, the
// field path inside the document and what is wrong, rendered as
// "file:line: path: message"; List is every problem of one input. The
// node helpers (aliases, null values, kind names, field paths, typo
// suggestions, yaml.v3 syntax errors) are shared by those readers so that
// they word the same problem the same way.
package yamldiag

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Diagnostic is one problem in a YAML input.
type Diagnostic struct {
	File string
	// Line is 1-based; 0 when unknown (e.g. for input built in Go).
	Line int
	// Path is the field path inside the document, e.g.
	// "spec.template.spec.containers[0].image"; empty for whole documents.
	Path string
	Msg  string
}

// String renders "file:line: path: message", leaving out what is unknown
// ("line 3: ..." without a file).
func (d Diagnostic) String() string {
	var b strings.Builder
	switch {
	case d.File != "" && d.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", d.File, d.Line)
	case d.File != "":
		b.WriteString(d.File + ": ")
	case d.Line > 0:
		fmt.Fprintf(&b, "line %d: ", d.Line)
	}
	if d.Path != "" {
		b.WriteString(d.Path + ": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error implements error.
func (d Diagnostic) Error() string { return d.String() }

// List is every problem found in one input, in the order found.
type List []Diagnostic

// Error renders one diagnostic per line.
func (l List) Error() string {
	lines := make([]string, len(l))
	for i, d := range l {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each diagnostic (as *Diagnostic) to errors.Is and
// errors.As.
func (l List) Unwrap() []error {
	out := make([]error, len(l))
	for i := range l {
		out[i] = &l[i]
	}
	return out
}

// Resolve follows aliases and unwraps a document node to its content.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return nil
}

// IsNull reports whether n is absent or an explicit null (after aliases).
func IsNull(n *yaml.Node) bool {
	n = Resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// KindName words what a node is for "expected X, got Y" messages.
func KindName(n *yaml.Node) string {
	n = Resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected node"
}

// Join appends a field to a path ("spec" + "ports" = "spec.ports").
func Join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// Index appends a list index to a path ("ports", 2 = "ports[2]").
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Suggest returns the candidate closest to s when s is plausibly a typo of
// it (at most two edits, one more than a third of the length of s, and
// fewer than that length), or "".
func Suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > len(s)/3+1 || bestD >= len(s) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

var yamlLineRE = regexp.MustCompile(`line (\d+): `)

// SyntaxError splits an error of yaml.v3's parser into the line it names
// (0 when none) and its message without the "yaml: line N:" prefix.
func SyntaxError(err error) (line int, msg string) {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	return line, yamlLineRE.ReplaceAllString(s, "")
}
