package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/podlab/podlab/datapath/identity"
)

// Operator of a selector requirement, as in Kubernetes label selectors.
type Operator string

// Selector operators.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one matchExpressions entry. Key may carry a label source
// ("k8s:app", "reserved:host", "any:app"); without one it matches labels of
// any source.
type Requirement struct {
	Key      string
	Operator Operator
	Values   []string
}

type requirement struct {
	source string // identity.SourceAny for any
	key    string
	op     Operator
	values []string // sorted
}

// Selector is a label selector (matchLabels and matchExpressions, ANDed).
// The zero value selects everything. Selectors are immutable.
type Selector struct {
	reqs []requirement
}

// NewSelector builds a selector from matchLabels and matchExpressions, in
// Cilium's notation: keys may carry a source prefix ("k8s:app"); keys
// without one match labels of any source. It is the selector of Services,
// Deployments and CiliumNetworkPolicies.
func NewSelector(matchLabels map[string]string, exprs ...Requirement) (Selector, error) {
	return newSelector(identity.SourceAny, matchLabels, exprs)
}

// newSelector is NewSelector with the source given to keys without prefix.
func newSelector(defaultSource string, matchLabels map[string]string, exprs []Requirement) (Selector, error) {
	var s Selector
	for _, k := range slices.Sorted(maps.Keys(matchLabels)) {
		src, key, err := splitKey(defaultSource, k)
		if err != nil {
			return Selector{}, err
		}
		v := matchLabels[k]
		if err := validLabelValue(v); err != nil {
			return Selector{}, fmt.Errorf("matchLabels[%s]: %w", k, err)
		}
		s.reqs = append(s.reqs, requirement{source: src, key: key, op: OpIn, values: []string{v}})
	}
	for i, e := range exprs {
		src, key, err := splitKey(defaultSource, e.Key)
		if err != nil {
			return Selector{}, fmt.Errorf("matchExpressions[%d].key: %w", i, err)
		}
		r := requirement{source: src, key: key, op: e.Operator, values: slices.Sorted(slices.Values(e.Values))}
		switch e.Operator {
		case OpIn, OpNotIn:
			if len(e.Values) == 0 {
				return Selector{}, fmt.Errorf("matchExpressions[%d].values: operator %s needs at least one value", i, e.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(e.Values) != 0 {
				return Selector{}, fmt.Errorf("matchExpressions[%d].values: operator %s takes no values", i, e.Operator)
			}
		default:
			return Selector{}, fmt.Errorf("matchExpressions[%d].operator: invalid operator %q (want In, NotIn, Exists or DoesNotExist)", i, e.Operator)
		}
		for _, v := range e.Values {
			if err := validLabelValue(v); err != nil {
				return Selector{}, fmt.Errorf("matchExpressions[%d].values: %w", i, err)
			}
		}
		s.reqs = append(s.reqs, r)
	}
	return s, nil
}

// MustSelector is NewSelector for selectors known to be valid (tests,
// constants); it panics on error.
func MustSelector(matchLabels map[string]string, exprs ...Requirement) Selector {
	s, err := NewSelector(matchLabels, exprs...)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	labelNameRE  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	dnsPrefixRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// splitKey splits "source:key" and validates key as a Kubernetes qualified
// name (an optional DNS prefix and "/", then a name). Reserved and CIDR keys
// are taken as they are.
func splitKey(defaultSource, k string) (string, string, error) {
	src, key := defaultSource, k
	if s, rest, ok := strings.Cut(k, ":"); ok {
		src, key = s, rest
	}
	if src == "" || !labelNameRE.MatchString(src) {
		return "", "", fmt.Errorf("invalid label key %q: bad source", k)
	}
	if key == "" {
		return "", "", fmt.Errorf("invalid label key %q: empty", k)
	}
	if src == identity.SourceReserved || src == identity.SourceCIDR {
		return src, key, nil
	}
	name := key
	if p, n, ok := strings.Cut(key, "/"); ok {
		if len(p) > 253 || !dnsPrefixRE.MatchString(p) {
			return "", "", fmt.Errorf("invalid label key %q: bad prefix %q", k, p)
		}
		name = n
	}
	if !labelNameRE.MatchString(name) {
		return "", "", fmt.Errorf("invalid label key %q", k)
	}
	return src, key, nil
}

func validLabelValue(v string) error {
	if !labelValueRE.MatchString(v) {
		return fmt.Errorf("invalid label value %q", v)
	}
	return nil
}

// IsEmpty reports whether the selector has no requirement (selects all).
func (s Selector) IsEmpty() bool { return len(s.reqs) == 0 }

// with returns a copy of s with r added.
func (s Selector) with(r requirement) Selector {
	out := Selector{reqs: make([]requirement, 0, len(s.reqs)+1)}
	out.reqs = append(out.reqs, s.reqs...)
	out.reqs = append(out.reqs, r)
	return out
}

// without returns a copy of s without requirements on key (any source in
// sources).
func (s Selector) without(key string, sources ...string) Selector {
	out := Selector{}
	for _, r := range s.reqs {
		if r.key == key && slices.Contains(sources, r.source) {
			continue
		}
		out.reqs = append(out.reqs, r)
	}
	return out
}

// and returns the conjunction of s and o.
func (s Selector) and(o Selector) Selector {
	out := Selector{reqs: make([]requirement, 0, len(s.reqs)+len(o.reqs))}
	out.reqs = append(out.reqs, s.reqs...)
	out.reqs = append(out.reqs, o.reqs...)
	return out
}

// hasKey reports whether a requirement names key with one of sources.
func (s Selector) hasKey(key string, sources ...string) bool {
	for _, r := range s.reqs {
		if r.key == key && slices.Contains(sources, r.source) {
			return true
		}
	}
	return false
}

// hasKeyPrefix reports whether a requirement's key starts with prefix, with
// one of sources.
func (s Selector) hasKeyPrefix(prefix string, sources ...string) bool {
	for _, r := range s.reqs {
		if strings.HasPrefix(r.key, prefix) && slices.Contains(sources, r.source) {
			return true
		}
	}
	return false
}

// hasSource reports whether a requirement names a key of source.
func (s Selector) hasSource(source string) bool {
	for _, r := range s.reqs {
		if r.source == source {
			return true
		}
	}
	return false
}

// Requirements returns the selector's requirements, keys written
// "source:key" (matchLabels entries become In with one value).
func (s Selector) Requirements() []Requirement {
	out := make([]Requirement, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = Requirement{Key: r.source + ":" + r.key, Operator: r.op, Values: slices.Clone(r.values)}
	}
	return out
}

// String renders the selector ("k8s:app=echo,any:tier in (a,b)"), or
// "all" for the empty selector.
func (s Selector) String() string {
	if len(s.reqs) == 0 {
		return "all"
	}
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		k := r.source + ":" + r.key
		switch {
		case r.op == OpIn && len(r.values) == 1:
			parts[i] = k + "=" + r.values[0]
		case r.op == OpIn:
			parts[i] = k + " in (" + strings.Join(r.values, ",") + ")"
		case r.op == OpNotIn:
			parts[i] = k + " notin (" + strings.Join(r.values, ",") + ")"
		case r.op == OpExists:
			parts[i] = k
		default:
			parts[i] = "!" + k
		}
	}
	return strings.Join(parts, ",")
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels identity.Labels) bool {
	for i := range s.reqs {
		r := &s.reqs[i]
		v, ok := labels.Lookup(r.source, r.key)
		if !r.matches(v, ok) {
			return false
		}
	}
	return true
}

// MatchesMap reports whether plain Kubernetes labels (a pod's or a
// Service's) satisfy every requirement; they count as labels of source
// k8s.
func (s Selector) MatchesMap(labels map[string]string) bool {
	for i := range s.reqs {
		r := &s.reqs[i]
		v, ok := "", false
		if r.source == identity.SourceAny || r.source == identity.SourceK8s {
			v, ok = labels[r.key]
		}
		if !r.matches(v, ok) {
			return false
		}
	}
	return true
}

func (r *requirement) matches(v string, ok bool) bool {
	switch r.op {
	case OpIn:
		return ok && slices.Contains(r.values, v)
	case OpNotIn:
		return !ok || !slices.Contains(r.values, v)
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	}
	return false
}
