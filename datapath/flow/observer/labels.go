package observer

import (
	"fmt"
	"slices"
	"strings"
)

// label is one Cilium label "source:key=value".
type label struct{ source, key, value string }

// parseLabels splits Cilium label strings ("k8s:app=echo",
// "reserved:world").
func parseLabels(ls []string) []label {
	out := make([]label, 0, len(ls))
	for _, l := range ls {
		src, rest, ok := strings.Cut(l, ":")
		if !ok {
			src, rest = "unspec", l
		}
		k, v, _ := strings.Cut(rest, "=")
		out = append(out, label{src, k, v})
	}
	return out
}

type op int

const (
	opExists op = iota
	opNotExists
	opEquals
	opNotEquals
	opIn
	opNotIn
)

// requirement is one term of a Kubernetes label selector over Cilium
// labels; source "any" matches every label source.
type requirement struct {
	source, key string
	op          op
	values      []string
}

// selector is the AND of its requirements.
type selector []requirement

// parseSelector parses a Kubernetes label selector whose keys may carry a
// Cilium source prefix ("k8s:app=echo,reserved:world", "app in (a, b)",
// "!k8s:foo"), as `hubble observe --label` sends it.
func parseSelector(s string) (selector, error) {
	var sel selector
	for _, term := range splitTerms(s) {
		term = strings.TrimSpace(term)
		if term == "" {
			return nil, fmt.Errorf("empty requirement")
		}
		var r requirement
		var key string
		switch {
		case strings.HasPrefix(term, "!"):
			key, r.op = strings.TrimSpace(term[1:]), opNotExists
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			key, r.op, r.values = k, opNotEquals, []string{strings.TrimSpace(v)}
		case strings.Contains(term, "=="):
			k, v, _ := strings.Cut(term, "==")
			key, r.op, r.values = k, opEquals, []string{strings.TrimSpace(v)}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			key, r.op, r.values = k, opEquals, []string{strings.TrimSpace(v)}
		case strings.Contains(term, " notin "), strings.Contains(term, " in "):
			sep, o := " in ", opIn
			if strings.Contains(term, " notin ") {
				sep, o = " notin ", opNotIn
			}
			k, list, _ := strings.Cut(term, sep)
			list = strings.TrimSpace(list)
			if !strings.HasPrefix(list, "(") || !strings.HasSuffix(list, ")") {
				return nil, fmt.Errorf("%q: want a value list in parentheses", term)
			}
			for _, v := range strings.Split(list[1:len(list)-1], ",") {
				r.values = append(r.values, strings.TrimSpace(v))
			}
			key, r.op = k, o
		default:
			key, r.op = term, opExists
		}
		key = strings.TrimSpace(key)
		if key == "" || strings.ContainsAny(key, " ()") {
			return nil, fmt.Errorf("%q: invalid label key", term)
		}
		r.source, r.key = "any", key
		if src, k, ok := strings.Cut(key, ":"); ok {
			r.source, r.key = src, k
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// splitTerms splits at commas outside parentheses.
func splitTerms(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func (s selector) matches(ls []label) bool {
	for _, r := range s {
		if !r.matches(ls) {
			return false
		}
	}
	return true
}

func (r requirement) matches(ls []label) bool {
	var vals []string
	found := false
	for _, l := range ls {
		if l.key == r.key && (r.source == "any" || r.source == l.source) {
			found = true
			vals = append(vals, l.value)
		}
	}
	switch r.op {
	case opExists:
		return found
	case opNotExists:
		return !found
	case opEquals, opIn:
		return slices.ContainsFunc(vals, func(v string) bool { return slices.Contains(r.values, v) })
	case opNotEquals, opNotIn:
		return !slices.ContainsFunc(vals, func(v string) bool { return slices.Contains(r.values, v) })
	}
	return false
}
