package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/identity"

	"github.com/podlab/podlab/internal/yamldiag"
)

// FQDNSelector is one toFQDNs entry or one DNS rule (toPorts[].rules.dns):
// an exact name (MatchName) or a wildcard pattern (MatchPattern) with
// Cilium's semantics: "*" stands for any run of DNS characters inside one
// label, a leading "**." for one or more whole labels, and a pattern made
// of stars only for every name. Names compare case-insensitively, with or
// without their trailing dot.
type FQDNSelector struct {
	MatchName    string `json:"matchName,omitempty"`
	MatchPattern string `json:"matchPattern,omitempty"`

	re *regexp.Regexp
}

// String renders the selector as written ("matchPattern: *.example.com").
func (s *FQDNSelector) String() string {
	if s.MatchName != "" {
		return "matchName: " + s.MatchName
	}
	return "matchPattern: " + s.MatchPattern
}

// Matches reports whether the DNS name matches the selector.
func (s *FQDNSelector) Matches(name string) bool {
	if s.re == nil {
		if err := s.compile(); err != nil {
			return false
		}
	}
	return s.re.MatchString(canonicalFQDN(name))
}

// canonicalFQDN lower-cases a name and gives it its trailing dot.
func canonicalFQDN(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// maxFQDNLength bounds matchName and matchPattern (Cilium's limit).
const maxFQDNLength = 255

var (
	// Shapes the CiliumNetworkPolicy CRD accepts: labels of DNS characters
	// (and stars in patterns) separated by single dots.
	matchNameRE    = regexp.MustCompile(`^([-a-zA-Z0-9_]+[.]?)+$`)
	matchPatternRE = regexp.MustCompile(`^([-a-zA-Z0-9_*]+[.]?)+$`)
	// allStarsRE is the match-everything pattern ("*", "**.", ...).
	allStarsRE = regexp.MustCompile(`^[*]+[.]?$`)
)

// dnsLabelChars is a regular-expression class of the characters a DNS
// label may hold.
const dnsLabelChars = `[-a-z0-9_]`

// patternRegexp translates a matchPattern into an anchored regular
// expression over canonical names (lower case, trailing dot).
func patternRegexp(pattern string) string {
	p := strings.ToLower(strings.TrimSpace(pattern))
	if allStarsRE.MatchString(p) {
		return `^(` + dnsLabelChars + `+\.)+$`
	}
	if !strings.HasSuffix(p, ".") {
		p += "."
	}
	var b strings.Builder
	b.WriteString("^")
	// A leading run of two or more stars followed by a dot stands for one
	// or more whole labels.
	if i := strings.IndexFunc(p, func(r rune) bool { return r != '*' }); i >= 2 && p[i] == '.' {
		b.WriteString(`(` + dnsLabelChars + `+\.)+`)
		p = p[i+1:]
	}
	for _, r := range p {
		switch r {
		case '*':
			b.WriteString(dnsLabelChars + `*`)
		case '.':
			b.WriteString(`\.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// validate checks the selector the way Cilium's API validation and CRD
// schema do; it returns the field at fault and what is wrong.
func (s *FQDNSelector) validate() (field string, err error) {
	switch {
	case s.MatchName != "" && s.MatchPattern != "":
		return "matchPattern", fmt.Errorf("only one of matchName or matchPattern is allowed")
	case s.MatchName == "" && s.MatchPattern == "":
		return "", fmt.Errorf("needs matchName or matchPattern")
	case s.MatchName != "":
		if len(s.MatchName) > maxFQDNLength {
			return "matchName", fmt.Errorf("invalid matchName %q: longer than %d characters", s.MatchName, maxFQDNLength)
		}
		if !matchNameRE.MatchString(s.MatchName) {
			return "matchName", fmt.Errorf("invalid matchName %q: only letters, digits, '-', '_' and single dots between labels are allowed", s.MatchName)
		}
	default:
		if len(s.MatchPattern) > maxFQDNLength {
			return "matchPattern", fmt.Errorf("invalid matchPattern %q: longer than %d characters", s.MatchPattern, maxFQDNLength)
		}
		if !matchPatternRE.MatchString(s.MatchPattern) {
			return "matchPattern", fmt.Errorf("invalid matchPattern %q: only letters, digits, '-', '_', '*' and single dots between labels are allowed", s.MatchPattern)
		}
	}
	return "", s.compile()
}

func (s *FQDNSelector) compile() error {
	expr := "^" + regexp.QuoteMeta(canonicalFQDN(s.MatchName)) + "$"
	if s.MatchName == "" {
		expr = patternRegexp(s.MatchPattern)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return fmt.Errorf("compile %s: %w", s, err)
	}
	s.re = re
	return nil
}

// fqdnSelector decodes one {matchName | matchPattern} mapping.
func (d *decoder) fqdnSelector(n *yaml.Node, path string) (FQDNSelector, error) {
	var s FQDNSelector
	str := func(dst *string) fieldFunc {
		return func(v *yaml.Node, p string) error {
			var err error
			*dst, err = d.str(v, p)
			return err
		}
	}
	if err := d.fields(n, path, map[string]fieldFunc{
		"matchName":    str(&s.MatchName),
		"matchPattern": str(&s.MatchPattern),
	}); err != nil {
		return s, err
	}
	if field, err := s.validate(); err != nil {
		at, p := n, path
		if v := keys(n)[field]; v != nil && field != "" {
			at, p = v, yamldiag.Join(path, field)
		}
		return s, d.errf(at, p, "%v", err)
	}
	return s, nil
}

// DNSRules are the DNS rules of one toPorts entry (rules.dns): a query on
// such a port goes through the node's DNS proxy, which answers REFUSED
// unless one selector matches the name asked for.
type DNSRules []FQDNSelector

// Allows reports whether a query for name is allowed.
func (r DNSRules) Allows(name string) bool {
	return slices.ContainsFunc(r, func(s FQDNSelector) bool { return s.Matches(name) })
}

// FQDNNames are DNS answers the policy has seen: per canonical name (lower
// case, trailing dot), the addresses it resolved to and are still valid.
type FQDNNames map[string][]netip.Addr

// fqdnAddrs returns the addresses whose names match one of sels.
func (n FQDNNames) match(sels []FQDNSelector) []netip.Addr {
	var out []netip.Addr
	for name, addrs := range n {
		for i := range sels {
			if sels[i].Matches(name) {
				out = append(out, addrs...)
				break
			}
		}
	}
	return out
}

// fqdnAddr is one address a DNS answer gave a selected name.
type fqdnAddr struct {
	id      identity.ID
	expires time.Time
}

// SelectsFQDN reports whether any policy's toFQDNs selects name: only
// then do its DNS answers matter to policy.
func (r *Repository) SelectsFQDN(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.selectsFQDNLocked(canonicalFQDN(name))
}

func (r *Repository) selectsFQDNLocked(name string) bool {
	for _, p := range r.policies {
		for i := range p.Rules {
			for j := range p.Rules[i].Peers {
				pr := &p.Rules[i].Peers[j]
				for k := range pr.FQDNs {
					if pr.FQDNs[k].Matches(name) {
						return true
					}
				}
			}
		}
	}
	return false
}

// ObserveDNS records a DNS answer: name resolved to addrs for ttl. When a
// toFQDNs selector of some policy matches name, each address gets a CIDR
// identity (its /32) that the selecting rules allow, valid until the TTL
// runs out (a later answer extends it; ExpireDNS removes it). It reports
// whether the policy changed (a new address), in which case the caller
// recompiles and pushes the new ipcache entries and policy before it
// releases the answer to the client.
func (r *Repository) ObserveDNS(name string, addrs []netip.Addr, ttl time.Duration, now time.Time) (bool, error) {
	name = canonicalFQDN(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(addrs) == 0 || !r.selectsFQDNLocked(name) {
		return false, nil
	}
	if r.fqdn == nil {
		r.fqdn = map[string]map[netip.Addr]fqdnAddr{}
	}
	known := r.fqdn[name]
	if known == nil {
		known = map[netip.Addr]fqdnAddr{}
		r.fqdn[name] = known
	}
	changed := false
	exp := now.Add(ttl)
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() {
			continue
		}
		if e, ok := known[a]; ok {
			if exp.After(e.expires) {
				e.expires = exp
				known[a] = e
			}
			continue
		}
		id, err := r.alloc.AllocateCIDR(netip.PrefixFrom(a, 32))
		if err != nil {
			return changed, fmt.Errorf("DNS answer %s -> %s: %w", name, a, err)
		}
		known[a] = fqdnAddr{id: id, expires: exp}
		changed = true
	}
	if changed {
		r.revision++
	}
	return changed, nil
}

// ExpireDNS forgets the addresses whose TTL ran out by now, releasing
// their identities. It reports whether the policy changed.
func (r *Repository) ExpireDNS(now time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	var errs []error
	for name, known := range r.fqdn {
		for a, e := range known {
			if e.expires.After(now) {
				continue
			}
			delete(known, a)
			changed = true
			if _, err := r.alloc.ReleaseCIDR(netip.PrefixFrom(a, 32)); err != nil {
				errs = append(errs, err)
			}
		}
		if len(known) == 0 {
			delete(r.fqdn, name)
		}
	}
	if changed {
		r.revision++
	}
	return changed, errors.Join(errs...)
}

// NextDNSExpiry returns when the first learned address expires (zero when
// none is known).
func (r *Repository) NextDNSExpiry() time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var next time.Time
	for _, known := range r.fqdn {
		for _, e := range known {
			if next.IsZero() || e.expires.Before(next) {
				next = e.expires
			}
		}
	}
	return next
}

// FQDNLabels returns the labels Cilium gives the identity of an address
// learned through toFQDNs: "fqdn:<matchName or matchPattern>" for every
// toFQDNs selector that selects a name currently resolving to a, sorted
// (none when no learned name resolves to a).
func (r *Repository) FQDNLabels(a netip.Addr) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var names []string
	for name, known := range r.fqdn {
		if _, ok := known[a]; ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range r.policies {
		for i := range p.Rules {
			for j := range p.Rules[i].Peers {
				for _, sel := range p.Rules[i].Peers[j].FQDNs {
					v := sel.MatchName
					if v == "" {
						v = sel.MatchPattern
					}
					if seen[v] {
						continue
					}
					for _, n := range names {
						if sel.Matches(n) {
							seen[v] = true
							out = append(out, "fqdn:"+v)
							break
						}
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// DNSNames returns the learned names and their valid addresses.
func (r *Repository) DNSNames() FQDNNames {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.dnsNamesLocked()
}

func (r *Repository) dnsNamesLocked() FQDNNames {
	out := FQDNNames{}
	for name, known := range r.fqdn {
		addrs := make([]netip.Addr, 0, len(known))
		for a := range known {
			addrs = append(addrs, a)
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		out[name] = addrs
	}
	return out
}

// dnsPorts gives the ports of a toPorts entry its DNS rules, checked as
// Cilium checks them: egress only, a single port (not 0, not a range) on
// UDP, TCP or ANY (which stands for both: the proxy serves DNS over UDP
// and TCP).
func (d *decoder) dnsPorts(ports []PortRule, nodes []*yaml.Node, l7 *L7Rules, l7Node *yaml.Node, path string, dir Direction) ([]PortRule, error) {
	if dir == Ingress {
		return nil, d.errf(l7Node, yamldiag.Join(yamldiag.Join(path, "rules"), "dns"), "DNS rules are not allowed on ingress (Cilium refuses them)")
	}
	if len(ports) == 0 {
		return nil, d.errf(l7Node, yamldiag.Join(path, "rules"), "L7 rules need ports (toPorts[].ports)")
	}
	var out []PortRule
	for i, pr := range ports {
		p := yamldiag.Index(yamldiag.Join(path, "ports"), i)
		switch {
		case pr.Proto != ProtoUDP && pr.Proto != ProtoTCP && pr.Proto != ProtoAny:
			return nil, d.errf(nodes[i], yamldiag.Join(p, "protocol"), "DNS rules apply to UDP and TCP ports only, not %s", ProtoName(pr.Proto))
		case pr.Name == "" && pr.Port == 0:
			return nil, d.errf(nodes[i], yamldiag.Join(p, "port"), "L7 rules need a port (port 0 means every port)")
		case pr.EndPort != pr.Port && pr.Name == "":
			return nil, d.errf(nodes[i], yamldiag.Join(p, "endPort"), "DNS rules do not support port ranges (Cilium refuses them)")
		}
		pr.L7 = l7
		if pr.Proto == ProtoAny {
			udp, tcp := pr, pr
			udp.Proto, tcp.Proto = ProtoUDP, ProtoTCP
			out = append(out, udp, tcp)
			continue
		}
		out = append(out, pr)
	}
	return out, nil
}
