package observer

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// ClusterName is the cluster name podlab reports (Cilium's default).
const ClusterName = "default"

// Match is a compiled flow predicate.
type Match func(*flowpb.Flow) bool

// BuildFilter compiles a GetFlows whitelist and blacklist the way Hubble
// does: a flow passes when it matches at least one whitelist filter (or the
// whitelist is empty) and none of the blacklist filters. Within one
// FlowFilter every set field must match; the values of one field are
// alternatives. Fields podlab cannot evaluate give an error naming them.
func BuildFilter(whitelist, blacklist []*flowpb.FlowFilter) (Match, error) {
	wl, err := compileList(whitelist)
	if err != nil {
		return nil, fmt.Errorf("whitelist: %w", err)
	}
	bl, err := compileList(blacklist)
	if err != nil {
		return nil, fmt.Errorf("blacklist: %w", err)
	}
	return func(f *flowpb.Flow) bool {
		if len(wl) > 0 && !slices.ContainsFunc(wl, func(m Match) bool { return m(f) }) {
			return false
		}
		return !slices.ContainsFunc(bl, func(m Match) bool { return m(f) })
	}, nil
}

func compileList(ffs []*flowpb.FlowFilter) ([]Match, error) {
	var out []Match
	for i, ff := range ffs {
		m, err := compile(ff)
		if err != nil {
			return nil, fmt.Errorf("filter %d: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// compile turns one FlowFilter into the AND of its set fields.
func compile(ff *flowpb.FlowFilter) (Match, error) {
	if ff == nil {
		return func(*flowpb.Flow) bool { return true }, nil
	}
	if err := unsupported(ff); err != nil {
		return nil, err
	}
	var ms []Match
	add := func(m Match, err error) error {
		if err != nil {
			return err
		}
		ms = append(ms, m)
		return nil
	}
	for _, step := range []func() error{
		func() error {
			if len(ff.Uuid) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool { return slices.Contains(ff.Uuid, f.GetUuid()) }, nil)
		},
		ipField(ff.SourceIp, "source_ip", func(f *flowpb.Flow) string { return f.GetIP().GetSource() }, add),
		ipField(ff.SourceIpXlated, "source_ip_xlated", func(f *flowpb.Flow) string { return f.GetIP().GetSourceXlated() }, add),
		ipField(ff.DestinationIp, "destination_ip", func(f *flowpb.Flow) string { return f.GetIP().GetDestination() }, add),
		nameField(ff.SourcePod, "source_pod", func(f *flowpb.Flow) (string, string) {
			return f.GetSource().GetNamespace(), f.GetSource().GetPodName()
		}, add),
		nameField(ff.DestinationPod, "destination_pod", func(f *flowpb.Flow) (string, string) {
			return f.GetDestination().GetNamespace(), f.GetDestination().GetPodName()
		}, add),
		nameField(ff.SourceService, "source_service", func(f *flowpb.Flow) (string, string) {
			return f.GetSourceService().GetNamespace(), f.GetSourceService().GetName()
		}, add),
		nameField(ff.DestinationService, "destination_service", func(f *flowpb.Flow) (string, string) {
			return f.GetDestinationService().GetNamespace(), f.GetDestinationService().GetName()
		}, add),
		fqdnField(ff.SourceFqdn, "source_fqdn", (*flowpb.Flow).GetSourceNames, add),
		fqdnField(ff.DestinationFqdn, "destination_fqdn", (*flowpb.Flow).GetDestinationNames, add),
		labelField(ff.SourceLabel, "source_label", func(f *flowpb.Flow) []string { return f.GetSource().GetLabels() }, add),
		labelField(ff.DestinationLabel, "destination_label", func(f *flowpb.Flow) []string { return f.GetDestination().GetLabels() }, add),
		workloadField(ff.SourceWorkload, func(f *flowpb.Flow) []*flowpb.Workload { return f.GetSource().GetWorkloads() }, add),
		workloadField(ff.DestinationWorkload, func(f *flowpb.Flow) []*flowpb.Workload { return f.GetDestination().GetWorkloads() }, add),
		clusterField(ff.SourceClusterName, func(f *flowpb.Flow) *flowpb.Endpoint { return f.GetSource() }, add),
		clusterField(ff.DestinationClusterName, func(f *flowpb.Flow) *flowpb.Endpoint { return f.GetDestination() }, add),
		func() error {
			if len(ff.TrafficDirection) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool { return slices.Contains(ff.TrafficDirection, f.GetTrafficDirection()) }, nil)
		},
		func() error {
			if len(ff.Verdict) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool { return slices.Contains(ff.Verdict, f.GetVerdict()) }, nil)
		},
		func() error {
			if len(ff.DropReasonDesc) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				return f.GetVerdict() == flowpb.Verdict_DROPPED && slices.Contains(ff.DropReasonDesc, f.GetDropReasonDesc())
			}, nil)
		},
		func() error {
			if len(ff.Interface) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				i := f.GetInterface()
				if i == nil {
					return false
				}
				return slices.ContainsFunc(ff.Interface, func(w *flowpb.NetworkInterface) bool {
					return (w.GetIndex() == 0 || w.GetIndex() == i.GetIndex()) && (w.GetName() == "" || w.GetName() == i.GetName())
				})
			}, nil)
		},
		func() error {
			if len(ff.EventType) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				et := f.GetEventType()
				if et == nil {
					return false
				}
				return slices.ContainsFunc(ff.EventType, func(w *flowpb.EventTypeFilter) bool {
					return (w.GetType() == 0 || w.GetType() == et.GetType()) && (!w.GetMatchSubType() || w.GetSubType() == et.GetSubType())
				})
			}, nil)
		},
		func() error { return add(protocolField(ff.Protocol)) },
		portField(ff.SourcePort, "source_port", true, add),
		portField(ff.DestinationPort, "destination_port", false, add),
		func() error {
			if len(ff.Reply) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				r := f.GetIsReply()
				return r != nil && slices.Contains(ff.Reply, r.GetValue())
			}, nil)
		},
		func() error {
			if len(ff.DnsQuery) == 0 {
				return nil
			}
			var res []*regexp.Regexp
			for _, q := range ff.DnsQuery {
				re, err := regexp.Compile(q)
				if err != nil {
					return fmt.Errorf("dns_query %q: %w", q, err)
				}
				res = append(res, re)
			}
			return add(func(f *flowpb.Flow) bool {
				d := f.GetL7().GetDns()
				return d != nil && slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(d.GetQuery()) })
			}, nil)
		},
		func() error {
			if len(ff.SourceIdentity) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool { return slices.Contains(ff.SourceIdentity, f.GetSource().GetIdentity()) }, nil)
		},
		func() error {
			if len(ff.DestinationIdentity) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				return slices.Contains(ff.DestinationIdentity, f.GetDestination().GetIdentity())
			}, nil)
		},
		func() error { return add(httpFields(ff)) },
		func() error {
			if len(ff.TcpFlags) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				have := f.GetL4().GetTCP().GetFlags()
				if have == nil {
					return false
				}
				return slices.ContainsFunc(ff.TcpFlags, func(w *flowpb.TCPFlags) bool {
					return !(w.FIN && !have.FIN || w.SYN && !have.SYN || w.RST && !have.RST || w.PSH && !have.PSH ||
						w.ACK && !have.ACK || w.URG && !have.URG || w.ECE && !have.ECE || w.CWR && !have.CWR || w.NS && !have.NS)
				})
			}, nil)
		},
		func() error {
			if len(ff.NodeName) == 0 {
				return nil
			}
			for _, p := range ff.NodeName {
				if _, err := path.Match(p, ""); err != nil || p == "" {
					return fmt.Errorf("node_name %q: not a valid pattern", p)
				}
			}
			return add(func(f *flowpb.Flow) bool {
				n := f.GetNodeName()
				if n == "" {
					return false
				}
				full := n
				if !strings.Contains(n, "/") {
					full = ClusterName + "/" + n
				}
				return slices.ContainsFunc(ff.NodeName, func(p string) bool {
					target := n
					if strings.Contains(p, "/") {
						target = full
					}
					ok, _ := path.Match(p, target)
					return ok
				})
			}, nil)
		},
		func() error {
			if len(ff.IpVersion) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				ip := f.GetIP()
				return ip != nil && slices.Contains(ff.IpVersion, ip.GetIpVersion())
			}, nil)
		},
		func() error {
			if len(ff.Encrypted) == 0 {
				return nil
			}
			return add(func(f *flowpb.Flow) bool {
				ip := f.GetIP()
				return ip != nil && slices.Contains(ff.Encrypted, ip.GetEncrypted())
			}, nil)
		},
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return func(f *flowpb.Flow) bool {
		for _, m := range ms {
			if !m(f) {
				return false
			}
		}
		return true
	}, nil
}

// unsupported names the filter fields podlab does not evaluate: refusing
// them is better than silently returning flows that do not match.
func unsupported(ff *flowpb.FlowFilter) error {
	var names []string
	if len(ff.NodeLabels) > 0 {
		names = append(names, "node_labels")
	}
	if len(ff.TraceId) > 0 {
		names = append(names, "trace_id")
	}
	if len(ff.IpTraceId) > 0 {
		names = append(names, "ip_trace_id")
	}
	if len(ff.GetExperimental().GetCelExpression()) > 0 {
		names = append(names, "experimental.cel_expression")
	}
	if len(names) > 0 {
		return fmt.Errorf("not supported by podlab yet: %s", strings.Join(names, ", "))
	}
	return nil
}

type adder func(Match, error) error

func ipField(vals []string, name string, get func(*flowpb.Flow) string, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		var addrs []netip.Addr
		var prefixes []netip.Prefix
		for _, v := range vals {
			if strings.Contains(v, "/") {
				p, err := netip.ParsePrefix(v)
				if err != nil {
					return fmt.Errorf("%s %q: %w", name, v, err)
				}
				prefixes = append(prefixes, p)
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil {
				return fmt.Errorf("%s %q: %w", name, v, err)
			}
			addrs = append(addrs, a)
		}
		return add(func(f *flowpb.Flow) bool {
			s := get(f)
			if s == "" {
				return false
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return false
			}
			return slices.Contains(addrs, a) || slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
		}, nil)
	}
}

// nameField matches "namespace/name-prefix" (either part may be empty: "ns/"
// is the whole namespace, "name" any namespace).
func nameField(vals []string, field string, get func(*flowpb.Flow) (string, string), add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		type nf struct{ ns, prefix string }
		var fs []nf
		for _, v := range vals {
			if v == "" {
				return fmt.Errorf("%s: name must not be empty", field)
			}
			ns, name, ok := strings.Cut(v, "/")
			if !ok {
				ns, name = "", v
			}
			fs = append(fs, nf{ns, name})
		}
		return add(func(f *flowpb.Flow) bool {
			ns, name := get(f)
			if ns == "" && name == "" {
				return false
			}
			return slices.ContainsFunc(fs, func(w nf) bool {
				return (w.prefix == "" || strings.HasPrefix(name, w.prefix)) && (w.ns == "" || w.ns == ns)
			})
		}, nil)
	}
}

// fqdnField matches DNS names with "*" wildcards, case-insensitively.
func fqdnField(vals []string, field string, get func(*flowpb.Flow) []string, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		var parts []string
		for _, v := range vals {
			v = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(v)), ".")
			if v == "" {
				return fmt.Errorf("%s: empty pattern", field)
			}
			parts = append(parts, strings.ReplaceAll(regexp.QuoteMeta(v), `\*`, `[-.0-9a-z]*`))
		}
		re, err := regexp.Compile(`\A(?:` + strings.Join(parts, "|") + `)\z`)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return add(func(f *flowpb.Flow) bool {
			return slices.ContainsFunc(get(f), func(n string) bool { return re.MatchString(strings.TrimSuffix(strings.ToLower(n), ".")) })
		}, nil)
	}
}

func labelField(vals []string, field string, get func(*flowpb.Flow) []string, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		var sels []selector
		for _, v := range vals {
			s, err := parseSelector(v)
			if err != nil {
				return fmt.Errorf("%s %q: %w", field, v, err)
			}
			sels = append(sels, s)
		}
		return add(func(f *flowpb.Flow) bool {
			ls := parseLabels(get(f))
			return slices.ContainsFunc(sels, func(s selector) bool { return s.matches(ls) })
		}, nil)
	}
}

func workloadField(vals []*flowpb.Workload, get func(*flowpb.Flow) []*flowpb.Workload, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		return add(func(f *flowpb.Flow) bool {
			return slices.ContainsFunc(get(f), func(have *flowpb.Workload) bool {
				return slices.ContainsFunc(vals, func(w *flowpb.Workload) bool {
					return (w.GetName() == "" || w.GetName() == have.GetName()) && (w.GetKind() == "" || w.GetKind() == have.GetKind())
				})
			})
		}, nil)
	}
}

func clusterField(vals []string, get func(*flowpb.Flow) *flowpb.Endpoint, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		return add(func(f *flowpb.Flow) bool {
			ep := get(f)
			return ep != nil && slices.Contains(vals, ep.GetClusterName())
		}, nil)
	}
}

func protocolField(vals []string) (Match, error) {
	if len(vals) == 0 {
		return func(*flowpb.Flow) bool { return true }, nil
	}
	var want []string
	for _, p := range vals {
		p = strings.ToLower(p)
		switch p {
		case "icmp", "icmpv4", "icmpv6", "tcp", "udp", "sctp", "vrrp", "igmp", "dns", "http":
			want = append(want, p)
		default:
			return nil, fmt.Errorf("protocol %q: unknown", p)
		}
	}
	return func(f *flowpb.Flow) bool {
		l4, l7 := f.GetL4(), f.GetL7()
		for _, p := range want {
			switch {
			case p == "icmp" && (l4.GetICMPv4() != nil || l4.GetICMPv6() != nil),
				p == "icmpv4" && l4.GetICMPv4() != nil,
				p == "icmpv6" && l4.GetICMPv6() != nil,
				p == "tcp" && l4.GetTCP() != nil,
				p == "udp" && l4.GetUDP() != nil,
				p == "sctp" && l4.GetSCTP() != nil,
				p == "vrrp" && l4.GetVRRP() != nil,
				p == "igmp" && l4.GetIGMP() != nil,
				p == "dns" && l7.GetDns() != nil,
				p == "http" && l7.GetHttp() != nil:
				return true
			}
		}
		return false
	}, nil
}

func portField(vals []string, field string, source bool, add adder) func() error {
	return func() error {
		if len(vals) == 0 {
			return nil
		}
		var ports []uint32
		for _, v := range vals {
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return fmt.Errorf("%s %q: %w", field, v, err)
			}
			ports = append(ports, uint32(n))
		}
		return add(func(f *flowpb.Flow) bool {
			p, ok := flowPort(f, source)
			return ok && slices.Contains(ports, p)
		}, nil)
	}
}

// flowPort returns the L4 port of a flow (from L4, or from the L7 record's
// own L4 part is not tracked separately in podlab).
func flowPort(f *flowpb.Flow, source bool) (uint32, bool) {
	l4 := f.GetL4()
	var sp, dp uint32
	switch {
	case l4.GetTCP() != nil:
		sp, dp = l4.GetTCP().GetSourcePort(), l4.GetTCP().GetDestinationPort()
	case l4.GetUDP() != nil:
		sp, dp = l4.GetUDP().GetSourcePort(), l4.GetUDP().GetDestinationPort()
	case l4.GetSCTP() != nil:
		sp, dp = l4.GetSCTP().GetSourcePort(), l4.GetSCTP().GetDestinationPort()
	default:
		return 0, false
	}
	if source {
		return sp, true
	}
	return dp, true
}

// httpFields evaluates the HTTP filters against l7.http records.
func httpFields(ff *flowpb.FlowFilter) (Match, error) {
	if len(ff.HttpStatusCode)+len(ff.HttpMethod)+len(ff.HttpPath)+len(ff.HttpUrl)+len(ff.HttpHeader) == 0 {
		return func(*flowpb.Flow) bool { return true }, nil
	}
	var codes []func(uint32) bool
	for _, c := range ff.HttpStatusCode {
		m, err := statusCodeMatcher(c)
		if err != nil {
			return nil, err
		}
		codes = append(codes, m)
	}
	compileAll := func(field string, pats []string) ([]*regexp.Regexp, error) {
		var out []*regexp.Regexp
		for _, p := range pats {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", field, p, err)
			}
			out = append(out, re)
		}
		return out, nil
	}
	paths, err := compileAll("http_path", ff.HttpPath)
	if err != nil {
		return nil, err
	}
	urls, err := compileAll("http_url", ff.HttpUrl)
	if err != nil {
		return nil, err
	}
	anyRE := func(res []*regexp.Regexp, s string) bool {
		return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(s) })
	}
	return func(f *flowpb.Flow) bool {
		h := f.GetL7().GetHttp()
		if h == nil {
			return false
		}
		if len(codes) > 0 {
			if f.GetL7().GetType() != flowpb.L7FlowType_RESPONSE {
				return false
			}
			if !slices.ContainsFunc(codes, func(m func(uint32) bool) bool { return m(h.GetCode()) }) {
				return false
			}
		}
		if len(ff.HttpMethod) > 0 && !slices.ContainsFunc(ff.HttpMethod, func(m string) bool { return strings.EqualFold(m, h.GetMethod()) }) {
			return false
		}
		if len(paths) > 0 {
			p := h.GetUrl()
			if i := strings.IndexAny(p, "?#"); i >= 0 {
				p = p[:i]
			}
			if u := strings.Index(p, "://"); u >= 0 {
				if s := strings.IndexByte(p[u+3:], '/'); s >= 0 {
					p = p[u+3+s:]
				} else {
					p = "/"
				}
			}
			if !anyRE(paths, p) {
				return false
			}
		}
		if len(urls) > 0 && !anyRE(urls, h.GetUrl()) {
			return false
		}
		for _, want := range ff.HttpHeader {
			if !slices.ContainsFunc(h.GetHeaders(), func(have *flowpb.HTTPHeader) bool {
				return strings.EqualFold(have.GetKey(), want.GetKey()) && have.GetValue() == want.GetValue()
			}) {
				return false
			}
		}
		return true
	}, nil
}

// statusCodeMatcher parses "200" or "5+" (any 5xx) as Hubble does.
func statusCodeMatcher(s string) (func(uint32) bool, error) {
	if strings.HasSuffix(s, "+") {
		d, err := strconv.ParseUint(strings.TrimSuffix(s, "+"), 10, 16)
		if err != nil || len(s) > 4 {
			return nil, fmt.Errorf("http_status_code %q: want a code (200) or prefix (5+, 40+)", s)
		}
		prefix := strings.TrimSuffix(s, "+")
		_ = d
		return func(c uint32) bool { return strings.HasPrefix(strconv.FormatUint(uint64(c), 10), prefix) }, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < 100 || n > 599 {
		return nil, fmt.Errorf("http_status_code %q: want a code (200) or prefix (5+, 40+)", s)
	}
	return func(c uint32) bool { return c == uint32(n) }, nil
}
