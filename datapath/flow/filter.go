package flow

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Filter selects flows the way `hubble observe` flags do. Values of one
// field are alternatives (OR); set fields must all match (AND). The zero
// Filter matches every flow.
type Filter struct {
	// FromPod, ToPod and Pod hold "[namespace/]pod-name-prefix" patterns
	// (namespace "default" when omitted; "namespace/" matches the whole
	// namespace). Pod matches either side.
	FromPod []string
	ToPod   []string
	Pod     []string
	// Namespace matches either side's namespace.
	Namespace []string
	// Verdict lists accepted verdicts.
	Verdict []Verdict
	// Protocol lists "tcp", "udp", "icmp" (v4 or v6), "icmpv4", "icmpv6",
	// "sctp" (case-insensitive).
	Protocol []string
	// Port matches the source or destination L4 port.
	Port []uint16
	// Node lists node names or path.Match patterns ("kind-worker*").
	Node []string
	// Type lists event types: "drop", "trace", "policy-verdict", optionally
	// with a sub-type: "trace:to-endpoint", "drop:POLICY_DENIED".
	Type []string
}

var protocols = map[string]bool{"tcp": true, "udp": true, "icmp": true, "icmpv4": true, "icmpv6": true, "sctp": true}

// Validate reports the first malformed value.
func (f *Filter) Validate() error {
	for _, p := range f.Protocol {
		if !protocols[strings.ToLower(p)] {
			return fmt.Errorf("filter protocol %q: want one of tcp, udp, icmp, icmpv4, icmpv6, sctp", p)
		}
	}
	for _, n := range f.Node {
		if _, err := path.Match(n, ""); err != nil {
			return fmt.Errorf("filter node %q: %w", n, err)
		}
	}
	for _, t := range f.Type {
		if _, _, err := parseType(t); err != nil {
			return err
		}
	}
	for _, v := range f.Verdict {
		if _, ok := verdictEnum.names[int32(v)]; !ok {
			return fmt.Errorf("filter verdict %d: unknown", v)
		}
	}
	return nil
}

// parseType splits "trace:to-endpoint" into the event type and the
// sub-type value (-1 for any).
func parseType(s string) (EventType, int32, error) {
	name, sub, hasSub := strings.Cut(strings.ToLower(s), ":")
	var et EventType
	switch name {
	case "drop":
		et = EventDrop
	case "trace":
		et = EventTrace
	case "policy-verdict":
		et = EventPolicyVerdict
	case "capture":
		et = EventCapture
	case "debug":
		et = EventDebug
	case "l7":
		et = EventL7
	default:
		return 0, 0, fmt.Errorf("filter type %q: want drop, trace, policy-verdict, l7 (optionally with :sub-type)", s)
	}
	if !hasSub {
		return et, -1, nil
	}
	switch et {
	case EventTrace:
		if p, ok := ParseObsPoint(sub); ok {
			return et, int32(p), nil
		}
	case EventDrop:
		if r, ok := ParseDropReason(strings.ToUpper(sub)); ok {
			return et, int32(r), nil
		}
	}
	return 0, 0, fmt.Errorf("filter type %q: unknown sub-type %q", s, sub)
}

// Match reports whether fl passes the filter. Malformed values (see
// Validate) never match.
func (f *Filter) Match(fl *Flow) bool {
	if fl == nil {
		return false
	}
	if len(f.FromPod) > 0 && !matchPods(f.FromPod, fl.Source) {
		return false
	}
	if len(f.ToPod) > 0 && !matchPods(f.ToPod, fl.Destination) {
		return false
	}
	if len(f.Pod) > 0 && !matchPods(f.Pod, fl.Source) && !matchPods(f.Pod, fl.Destination) {
		return false
	}
	if len(f.Namespace) > 0 && !matchNamespace(f.Namespace, fl.Source) && !matchNamespace(f.Namespace, fl.Destination) {
		return false
	}
	if len(f.Verdict) > 0 && !contains(f.Verdict, fl.Verdict) {
		return false
	}
	if len(f.Protocol) > 0 && !matchProtocol(f.Protocol, fl) {
		return false
	}
	if len(f.Port) > 0 {
		sp, dp := fl.Ports()
		ok := false
		for _, p := range f.Port {
			if uint32(p) == sp || uint32(p) == dp {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Node) > 0 {
		ok := false
		for _, n := range f.Node {
			if m, _ := path.Match(n, fl.NodeName); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Type) > 0 {
		ok := false
		for _, t := range f.Type {
			et, sub, err := parseType(t)
			if err != nil || fl.EventType == nil || EventType(fl.EventType.Type) != et {
				continue
			}
			if sub < 0 || sub == fl.EventType.SubType {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func matchPods(patterns []string, ep *Endpoint) bool {
	if ep == nil || (ep.PodName == "" && ep.Namespace == "") {
		return false
	}
	for _, p := range patterns {
		ns, pod, ok := strings.Cut(p, "/")
		if !ok {
			ns, pod = "default", p
		}
		if ep.Namespace == ns && strings.HasPrefix(ep.PodName, pod) && (pod != "" || ok) {
			return true
		}
	}
	return false
}

func matchNamespace(names []string, ep *Endpoint) bool {
	return ep != nil && ep.Namespace != "" && contains(names, ep.Namespace)
}

func matchProtocol(protos []string, fl *Flow) bool {
	got := strings.ToLower(fl.Protocol())
	for _, p := range protos {
		p = strings.ToLower(p)
		if p == got || (p == "icmp" && (got == "icmpv4" || got == "icmpv6")) {
			return true
		}
	}
	return false
}

// FilterFlags are the filter values of `podlab observe` as the command
// line gives them.
type FilterFlags struct {
	FromPod, ToPod, Pod, Namespace []string
	// Verdict holds verdict names (FORWARDED, DROPPED...; any case).
	Verdict []string
	// Protocol holds tcp, udp, icmp, icmpv4, icmpv6, sctp.
	Protocol []string
	// Port holds port numbers.
	Port []string
	Node []string
	Type []string
}

// ParseFilter builds a validated Filter from command-line values.
func ParseFilter(ff FilterFlags) (Filter, error) {
	f := Filter{FromPod: ff.FromPod, ToPod: ff.ToPod, Pod: ff.Pod, Namespace: ff.Namespace, Protocol: ff.Protocol, Node: ff.Node, Type: ff.Type}
	for _, v := range ff.Verdict {
		verdict, ok := ParseVerdict(strings.ToUpper(v))
		if !ok {
			return Filter{}, fmt.Errorf("filter verdict %q: want FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED or TRANSLATED", v)
		}
		f.Verdict = append(f.Verdict, verdict)
	}
	for _, p := range ff.Port {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return Filter{}, fmt.Errorf("filter port %q: want a number 0-65535", p)
		}
		f.Port = append(f.Port, uint16(n))
	}
	if err := f.Validate(); err != nil {
		return Filter{}, err
	}
	return f, nil
}
