package policy

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// L7Parser names the L7 protocol of a set of L7 rules (Cilium's parser
// types): the node's proxy has one listener per parser and direction.
type L7Parser string

// L7 parsers.
const (
	ParserHTTP L7Parser = "http"
	ParserDNS  L7Parser = "dns"
)

// L7Rules are the L7 rules of one toPorts entry (its rules: field). A
// connection on such a port is redirected to the node's proxy, which lets a
// request through when one rule matches it.
type L7Rules struct {
	// HTTP rules (rules.http): a request is allowed when one matches.
	HTTP []HTTPRule
	// DNS rules (rules.dns): a query is allowed when one matches its name;
	// the others are answered REFUSED.
	DNS DNSRules
	// Wildcard is set when another rule allows the same peer and port at
	// L4 only: the connection still goes through the proxy (flows are
	// still reported) but every request is allowed.
	Wildcard bool
}

// Parser returns the L7 protocol of the rules.
func (r *L7Rules) Parser() L7Parser {
	if len(r.DNS) > 0 {
		return ParserDNS
	}
	return ParserHTTP
}

// HTTPRule is one entry of rules.http. Method, Path and Host are regular
// expressions (RE2, as Envoy's) anchored at both ends, as Cilium applies
// them; empty fields match anything.
type HTTPRule struct {
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Host   string `json:"host,omitempty"`
	// Headers are "Name" (present) or "Name: value" (exact value).
	Headers []string `json:"headers,omitempty"`
	// HeaderMatches compare a header with a value; Mismatch says what
	// happens when it differs (empty: the request is denied).
	HeaderMatches []HeaderMatch `json:"headerMatches,omitempty"`

	method, path, host *regexp.Regexp
}

// HeaderMatch is one entry of headerMatches.
type HeaderMatch struct {
	// Mismatch: "" (deny), LOG (allow, report), ADD (add the value),
	// DELETE (remove the header), REPLACE (set the value).
	Mismatch string `json:"mismatch,omitempty"`
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
}

// Header-match mismatch actions (Cilium's MismatchAction).
const (
	MismatchLog     = "LOG"
	MismatchAdd     = "ADD"
	MismatchDelete  = "DELETE"
	MismatchReplace = "REPLACE"
)

func anchored(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// Compile prepares the rule's regular expressions; it reports the first
// invalid one.
func (h *HTTPRule) Compile() error {
	var err error
	if h.method, err = anchored(h.Method); err != nil {
		return fmt.Errorf("method: %w", err)
	}
	if h.path, err = anchored(h.Path); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if h.host, err = anchored(h.Host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

// HTTPRequest is what an HTTP rule looks at.
type HTTPRequest struct {
	Method string
	// Path is the request target's path (with its query, as Envoy's :path).
	Path   string
	Host   string
	Header http.Header
}

// HeaderAction is a change a matching rule asks for (headerMatches with
// ADD, DELETE or REPLACE) or a mismatch to report (LOG).
type HeaderAction struct {
	Action, Name, Value string
}

// Match reports whether the rule allows req, and the header changes and
// logged mismatches that come with it.
func (h *HTTPRule) Match(req *HTTPRequest) (bool, []HeaderAction) {
	if h.method == nil && h.Method != "" || h.path == nil && h.Path != "" || h.host == nil && h.Host != "" {
		if err := h.Compile(); err != nil {
			return false, nil
		}
	}
	if h.method != nil && !h.method.MatchString(req.Method) {
		return false, nil
	}
	if h.path != nil && !h.path.MatchString(req.Path) {
		return false, nil
	}
	if h.host != nil && !h.host.MatchString(req.Host) {
		return false, nil
	}
	for _, hd := range h.Headers {
		name, value, hasValue := strings.Cut(hd, ":")
		name = strings.TrimSpace(name)
		vals, ok := headerValues(req, name)
		if !ok {
			return false, nil
		}
		if hasValue && !contains(vals, strings.TrimSpace(value)) {
			return false, nil
		}
	}
	var acts []HeaderAction
	for _, m := range h.HeaderMatches {
		vals, _ := headerValues(req, m.Name)
		if contains(vals, m.Value) || m.Value == "" && len(vals) > 0 {
			continue
		}
		switch m.Mismatch {
		case "":
			return false, nil
		default:
			acts = append(acts, HeaderAction{Action: m.Mismatch, Name: m.Name, Value: m.Value})
		}
	}
	return true, acts
}

func headerValues(req *HTTPRequest, name string) ([]string, bool) {
	if strings.EqualFold(name, "host") || strings.EqualFold(name, ":authority") {
		return []string{req.Host}, req.Host != ""
	}
	if strings.EqualFold(name, ":method") {
		return []string{req.Method}, true
	}
	if strings.EqualFold(name, ":path") {
		return []string{req.Path}, true
	}
	v, ok := req.Header[http.CanonicalHeaderKey(name)]
	return v, ok
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// Merge returns the L7 rules that allow what a or b allows (nil means an
// L4-only allow, which makes the merge a wildcard when the other side has
// L7 rules).
func (r *L7Rules) Merge(o *L7Rules) *L7Rules {
	switch {
	case r == nil && o == nil:
		return nil
	case r == nil || o == nil:
		return &L7Rules{Wildcard: true}
	}
	return &L7Rules{HTTP: append(append([]HTTPRule(nil), r.HTTP...), o.HTTP...), DNS: append(append(DNSRules(nil), r.DNS...), o.DNS...), Wildcard: r.Wildcard || o.Wildcard}
}

// l7Rules decodes toPorts[].rules.
func (d *decoder) l7Rules(n *yaml.Node, path string) (*L7Rules, error) {
	var out L7Rules
	set := false
	err := d.fields(n, path, map[string]fieldFunc{
		"http": func(v *yaml.Node, p string) error {
			set = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				h, err := d.httpRule(it, p)
				out.HTTP = append(out.HTTP, h)
				return err
			})
		},
		"kafka": func(v *yaml.Node, p string) error {
			return d.errf(v, p, "Kafka L7 rules are not supported: Cilium removed Kafka policy in 1.20 (use L3/L4 rules on the broker port)")
		},
		"dns": func(v *yaml.Node, p string) error {
			set = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				s, err := d.fqdnSelector(it, p)
				out.DNS = append(out.DNS, s)
				return err
			})
		},
		"l7proto": func(v *yaml.Node, p string) error {
			return d.errf(v, p, "%s", notSupported+"generic L7 parsers (toPorts[].rules.l7proto)")
		},
		"l7": func(v *yaml.Node, p string) error {
			return d.errf(v, p, "%s", notSupported+"generic L7 rules (toPorts[].rules.l7)")
		},
	})
	if err != nil {
		return nil, err
	}
	if !set {
		return nil, nil
	}
	if len(out.HTTP) > 0 && len(out.DNS) > 0 {
		return nil, d.errf(n, path, "one toPorts entry cannot hold both http and dns rules (Cilium allows one L7 protocol per port)")
	}
	return &out, nil
}

func (d *decoder) httpRule(n *yaml.Node, path string) (HTTPRule, error) {
	var h HTTPRule
	re := func(dst *string) fieldFunc {
		return func(v *yaml.Node, p string) error {
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			if _, err := anchored(s); err != nil {
				return d.errf(v, p, "invalid regular expression %q: %v", s, err)
			}
			*dst = s
			return nil
		}
	}
	err := d.fields(n, path, map[string]fieldFunc{
		"method": re(&h.Method),
		"path":   re(&h.Path),
		"host":   re(&h.Host),
		"headers": func(v *yaml.Node, p string) error {
			hs, nodes, err := d.strList(v, p)
			if err != nil {
				return err
			}
			for i, s := range hs {
				name, _, _ := strings.Cut(s, ":")
				if strings.TrimSpace(name) == "" {
					return d.errf(nodes[i], yamldiag.Index(p, i), "empty header name in %q", s)
				}
			}
			h.Headers = hs
			return nil
		},
		"headerMatches": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				var m HeaderMatch
				err := d.fields(it, p, map[string]fieldFunc{
					"name": func(v *yaml.Node, p string) error {
						var err error
						m.Name, err = d.str(v, p)
						if err == nil && m.Name == "" {
							return d.errf(v, p, "empty header name")
						}
						return err
					},
					"value": func(v *yaml.Node, p string) error {
						var err error
						m.Value, err = d.str(v, p)
						return err
					},
					"mismatch": func(v *yaml.Node, p string) error {
						s, err := d.str(v, p)
						if err != nil {
							return err
						}
						switch s {
						case MismatchLog, MismatchAdd, MismatchDelete, MismatchReplace:
						default:
							return d.errf(v, p, "invalid mismatch action %q (want LOG, ADD, DELETE or REPLACE)", s)
						}
						m.Mismatch = s
						return nil
					},
					"secret": func(v *yaml.Node, p string) error {
						return d.errf(v, p, "%s", notSupported+"header values from secrets (headerMatches[].secret)")
					},
				})
				if err == nil && m.Name == "" {
					return d.errf(it, yamldiag.Join(p, "name"), "missing field")
				}
				h.HeaderMatches = append(h.HeaderMatches, m)
				return err
			})
		},
	})
	if err != nil {
		return h, err
	}
	return h, h.Compile()
}
