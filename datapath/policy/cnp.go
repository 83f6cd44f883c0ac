package policy

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/identity"

	"github.com/podlab/podlab/internal/yamldiag"
)

// ciliumRule decodes one CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy
// rule (spec or specs[i]). namespace is empty for clusterwide policies.
//
// Namespace defaults follow Cilium: the subject of a namespaced policy only
// selects endpoints of the policy's namespace; a peer selector that names no
// namespace (k8s:io.kubernetes.pod.namespace) is restricted to the policy's
// namespace (namespaced policy, unless it selects by namespace labels) or
// to Kubernetes pods of any namespace (clusterwide policy); peer selectors
// on reserved labels are left alone.
func (d *decoder) ciliumRule(n *yaml.Node, path, namespace string) (Rule, error) {
	r := Rule{Path: path}
	if yamldiag.IsNull(yamldiag.Resolve(n)) {
		return r, d.errf(n, path, "empty rule: endpointSelector is required")
	}
	var subject *Selector
	var ingress, ingressDeny, egress, egressDeny *yaml.Node
	var ingressPath, ingressDenyPath, egressPath, egressDenyPath string
	var dd struct{ ingress, egress *bool }
	err := d.fields(n, path, map[string]fieldFunc{
		"endpointSelector": func(v *yaml.Node, p string) error {
			s, err := d.selector(v, p, identity.SourceAny)
			subject = &s
			return err
		},
		"nodeSelector": func(v *yaml.Node, p string) error {
			return d.errf(v, p, notSupported+"nodeSelector (host policies)")
		},
		"ingress":     func(v *yaml.Node, p string) error { ingress, ingressPath = v, p; return nil },
		"ingressDeny": func(v *yaml.Node, p string) error { ingressDeny, ingressDenyPath = v, p; return nil },
		"egress":      func(v *yaml.Node, p string) error { egress, egressPath = v, p; return nil },
		"egressDeny":  func(v *yaml.Node, p string) error { egressDeny, egressDenyPath = v, p; return nil },
		"labels":      nil,
		"description": func(v *yaml.Node, p string) error { _, err := d.str(v, p); return err },
		"enableDefaultDeny": func(v *yaml.Node, p string) error {
			return d.fields(v, p, map[string]fieldFunc{
				"ingress": func(v *yaml.Node, p string) error {
					b, err := d.boolean(v, p)
					dd.ingress = &b
					return err
				},
				"egress": func(v *yaml.Node, p string) error {
					b, err := d.boolean(v, p)
					dd.egress = &b
					return err
				},
			})
		},
		"log": func(v *yaml.Node, p string) error { return d.errf(v, p, notSupported+"policy logging") },
	})
	if err != nil {
		return r, err
	}
	if subject == nil {
		return r, d.errf(n, yamldiag.Join(path, "endpointSelector"), "missing field")
	}
	r.Subject = *subject
	if namespace != "" {
		// The subject always lives in the policy's namespace (Cilium drops
		// any other namespace match from it).
		r.Subject = r.Subject.without(identity.PodNamespaceKey, identity.SourceK8s, identity.SourceAny).
			with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpIn, values: []string{namespace}})
	}
	matchesInit := subject.hasKey("init", identity.SourceReserved)
	pc := peerContext{namespace: namespace, matchesInit: matchesInit}

	sections := []struct {
		node *yaml.Node
		path string
		dir  Direction
		deny bool
	}{
		{ingress, ingressPath, Ingress, false},
		{ingressDeny, ingressDenyPath, Ingress, true},
		{egress, egressPath, Egress, false},
		{egressDeny, egressDenyPath, Egress, true},
	}
	for _, s := range sections {
		if s.path == "" {
			continue // section absent
		}
		// A present section (even empty) puts the subject into default deny.
		if s.dir == Ingress {
			r.IngressDefaultDeny = dd.ingress == nil || *dd.ingress
		} else {
			r.EgressDefaultDeny = dd.egress == nil || *dd.egress
		}
		err := d.list(s.node, s.path, func(it *yaml.Node, p string) error {
			pr, err := d.ciliumPeerRule(it, p, s.dir, s.deny, pc)
			if err != nil {
				return err
			}
			pr.Name = strings.TrimPrefix(p, "spec.")
			r.Peers = append(r.Peers, pr)
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

type peerContext struct {
	namespace   string
	matchesInit bool
}

// peerSelector applies Cilium's namespace defaults to a peer selector.
func (pc peerContext) peerSelector(s Selector) Selector {
	if s.hasSource(identity.SourceReserved) {
		return s
	}
	if s.hasKey(identity.PodNamespaceKey, identity.SourceK8s, identity.SourceAny) {
		return s
	}
	if pc.namespace == "" {
		if pc.matchesInit {
			return s
		}
		return s.with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpExists})
	}
	if s.hasKeyPrefix(identity.NamespaceLabelsPrefix, identity.SourceK8s, identity.SourceAny) {
		return s
	}
	return s.with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpIn, values: []string{pc.namespace}})
}

func (d *decoder) ciliumPeerRule(n *yaml.Node, path string, dir Direction, deny bool, pc peerContext) (PeerRule, error) {
	pr := PeerRule{Direction: dir, Deny: deny}
	if !yamldiag.IsNull(n) && n.Kind != yaml.MappingNode {
		return pr, d.errf(n, path, "expected a mapping, got %s", yamldiag.KindName(n))
	}
	l3 := false // an L3 field is present (even as an empty list)
	l4 := false
	from := "from"
	if dir == Egress {
		from = "to"
	}
	nsy := func(what string) fieldFunc {
		return func(v *yaml.Node, p string) error { return d.errf(v, p, "%s", notSupported+what) }
	}
	h := map[string]fieldFunc{
		from + "Endpoints": func(v *yaml.Node, p string) error {
			l3 = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				s, err := d.selector(it, p, identity.SourceAny)
				if err != nil {
					return err
				}
				pr.Endpoints = append(pr.Endpoints, pc.peerSelector(s))
				return nil
			})
		},
		from + "Entities": func(v *yaml.Node, p string) error {
			l3 = true
			ents, nodes, err := d.strList(v, p)
			if err != nil {
				return err
			}
			for i, e := range ents {
				ent, err := d.entity(nodes[i], yamldiag.Index(p, i), e)
				if err != nil {
					return err
				}
				pr.Entities = append(pr.Entities, ent)
			}
			return nil
		},
		from + "CIDR": func(v *yaml.Node, p string) error {
			l3 = true
			cidrs, nodes, err := d.strList(v, p)
			if err != nil {
				return err
			}
			for i, c := range cidrs {
				pfx, err := d.cidr(nodes[i], yamldiag.Index(p, i), c)
				if err != nil {
					return err
				}
				pr.CIDRs = append(pr.CIDRs, CIDRRule{Prefix: pfx})
			}
			return nil
		},
		from + "CIDRSet": func(v *yaml.Node, p string) error {
			l3 = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				c, err := d.cidrSet(it, p, "cidr")
				if err != nil {
					return err
				}
				pr.CIDRs = append(pr.CIDRs, c)
				return nil
			})
		},
		from + "Requires": nsy(from + "Requires (deprecated in Cilium)"),
		from + "Nodes":    nsy(from + "Nodes"),
		from + "Groups":   nsy(from + "Groups"),
		"toPorts": func(v *yaml.Node, p string) error {
			l4 = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				ports, err := d.ciliumPortRule(it, p, deny, dir)
				pr.Ports = append(pr.Ports, ports...)
				return err
			})
		},
		"icmps": func(v *yaml.Node, p string) error {
			l4 = true
			return d.list(v, p, func(it *yaml.Node, p string) error {
				return d.fields(it, p, map[string]fieldFunc{
					"fields": func(v *yaml.Node, p string) error {
						return d.list(v, p, func(it *yaml.Node, p string) error {
							t, err := d.icmpField(it, p)
							pr.ICMPs = append(pr.ICMPs, ICMPRule{Type: t})
							return err
						})
					},
				})
			})
		},
	}
	if !deny {
		h["authentication"] = nsy("authentication (mutual auth)")
	}
	if dir == Egress {
		h["toServices"] = nsy("toServices")
		if !deny {
			h["toFQDNs"] = func(v *yaml.Node, p string) error {
				l3 = true
				return d.list(v, p, func(it *yaml.Node, p string) error {
					s, err := d.fqdnSelector(it, p)
					pr.FQDNs = append(pr.FQDNs, s)
					return err
				})
			}
		}
	}
	if err := d.fields(n, path, h); err != nil {
		return pr, err
	}
	// Cilium refuses a rule that combines toFQDNs with another L3 selector.
	if present := keys(n); present["toFQDNs"] != nil {
		for _, other := range []string{"toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toServices", "toGroups", "toNodes", "toRequires"} {
			if k := present[other]; k != nil {
				return pr, d.errf(k, yamldiag.Join(path, other), "combining toFQDNs and %s in one rule is not supported (Cilium refuses it); write two egress rules", other)
			}
		}
	}
	// A rule without any L3 field but with ports applies to every peer
	// (Cilium's L4-only rule). A rule with neither allows nothing.
	if !l3 && l4 {
		pr.AnyPeer = true
	}
	return pr, nil
}

var entityNames = map[string]Entity{
	"world":          EntityWorld,
	"world-ipv4":     EntityWorld,
	"cluster":        EntityCluster,
	"host":           EntityHost,
	"remote-node":    EntityRemoteNode,
	"all":            EntityAll,
	"kube-apiserver": EntityKubeAPIServer,
	"health":         EntityHealth,
	"init":           EntityInit,
	"unmanaged":      EntityUnmanaged,
}

func (d *decoder) entity(n *yaml.Node, path, s string) (Entity, error) {
	if e, ok := entityNames[s]; ok {
		return e, nil
	}
	switch s {
	case "ingress", "world-ipv6":
		return "", d.errf(n, path, notSupported+"entity %q", s)
	}
	return "", d.errf(n, path, "unknown entity %q (want world, cluster, host, remote-node, all, kube-apiserver, health, init or unmanaged)", s)
}

// cidr parses an IPv4 prefix ("10.0.0.0/8") or address ("1.2.3.4" = /32).
func (d *decoder) cidr(n *yaml.Node, path, s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, d.errf(n, path, "invalid CIDR %q", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, d.errf(n, path, notSupported+"IPv6 CIDR %q", s)
	}
	return p.Masked(), nil
}

// cidrSet decodes {cidr, except} (Cilium CIDRRule, field "cidr") or a
// NetworkPolicy ipBlock (same shape).
func (d *decoder) cidrSet(n *yaml.Node, path, field string) (CIDRRule, error) {
	var c CIDRRule
	var exceptNodes []*yaml.Node
	var excepts []string
	var cidrNode *yaml.Node
	h := map[string]fieldFunc{
		field: func(v *yaml.Node, p string) error {
			cidrNode = v
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			c.Prefix, err = d.cidr(v, p, s)
			return err
		},
		"except": func(v *yaml.Node, p string) error {
			var err error
			excepts, exceptNodes, err = d.strList(v, p)
			return err
		},
	}
	var groupNodes []*yaml.Node
	if field == "cidr" {
		h["cidrGroupRef"] = func(v *yaml.Node, p string) error {
			groupNodes = append(groupNodes, v)
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			if !dnsSubdomainRE.MatchString(s) {
				return d.errf(v, p, "%q is not a CiliumCIDRGroup name", s)
			}
			c.GroupRef = s
			return nil
		}
		h["cidrGroupSelector"] = func(v *yaml.Node, p string) error {
			groupNodes = append(groupNodes, v)
			sel, err := d.selector(v, p, identity.SourceAny)
			if err != nil {
				return err
			}
			c.GroupSelector = &sel
			return nil
		}
	}
	if err := d.fields(n, path, h); err != nil {
		return c, err
	}
	switch {
	case len(groupNodes) > 1 || (len(groupNodes) == 1 && cidrNode != nil):
		return c, d.errf(n, path, "give exactly one of cidr, cidrGroupRef and cidrGroupSelector")
	case cidrNode == nil && len(groupNodes) == 0:
		return c, d.errf(n, yamldiag.Join(path, field), "missing field")
	}
	for i, e := range excepts {
		p := yamldiag.Index(yamldiag.Join(path, "except"), i)
		ex, err := d.cidr(exceptNodes[i], p, e)
		if err != nil {
			return c, err
		}
		if c.IsGroup() {
			// Exceptions of a group apply to whichever of its CIDRs hold them.
			c.Except = append(c.Except, ex)
			continue
		}
		if ex.Bits() < c.Prefix.Bits() || !c.Prefix.Contains(ex.Addr()) {
			return c, d.errf(exceptNodes[i], p, "except %s is not inside %s", ex, c.Prefix)
		}
		c.Except = append(c.Except, ex)
	}
	return c, nil
}

// svcNameRE is IANA_SVC_NAME, the syntax of named container ports.
var svcNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)

func validPortName(s string) bool {
	return svcNameRE.MatchString(s) && !strings.Contains(s, "--") && strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz")
}

var protoNames = map[string]uint8{"TCP": ProtoTCP, "UDP": ProtoUDP, "SCTP": ProtoSCTP, "ANY": ProtoAny, "": ProtoAny}

// ciliumPortRule decodes a toPorts entry into its ports.
func (d *decoder) ciliumPortRule(n *yaml.Node, path string, deny bool, dir Direction) ([]PortRule, error) {
	var out []PortRule
	var portNodes []*yaml.Node
	var l7 *L7Rules
	var l7Node *yaml.Node
	nsy := func(what string) fieldFunc {
		return func(v *yaml.Node, p string) error { return d.errf(v, p, "%s", notSupported+what) }
	}
	h := map[string]fieldFunc{
		"ports": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				pr, err := d.ciliumPort(it, p)
				out = append(out, pr)
				portNodes = append(portNodes, it)
				return err
			})
		},
	}
	if !deny {
		h["rules"] = func(v *yaml.Node, p string) error {
			var err error
			l7Node = v
			l7, err = d.l7Rules(v, p)
			return err
		}
		h["terminatingTLS"] = nsy("TLS interception (toPorts[].terminatingTLS)")
		h["originatingTLS"] = nsy("TLS interception (toPorts[].originatingTLS)")
		h["serverNames"] = nsy("TLS SNI rules (toPorts[].serverNames)")
		h["listener"] = nsy("Envoy listeners (toPorts[].listener)")
	}
	if err := d.fields(n, path, h); err != nil {
		return nil, err
	}
	if l7 != nil && len(l7.DNS) > 0 {
		return d.dnsPorts(out, portNodes, l7, l7Node, path, dir)
	}
	if l7 != nil {
		if len(out) == 0 {
			return nil, d.errf(l7Node, yamldiag.Join(path, "rules"), "L7 rules need ports (toPorts[].ports)")
		}
		for i := range out {
			p := yamldiag.Index(yamldiag.Join(path, "ports"), i)
			switch {
			case out[i].Proto == ProtoAny:
				// Cilium (PortRule.sanitize) refuses an omitted protocol too.
				return nil, d.errf(portNodes[i], yamldiag.Join(p, "protocol"), "L7 rules can only apply to TCP (not ANY) except for DNS rules: add protocol: TCP")
			case out[i].Proto != ProtoTCP:
				return nil, d.errf(portNodes[i], yamldiag.Join(p, "protocol"), "HTTP rules apply to TCP ports only, not %s", ProtoName(out[i].Proto))
			case out[i].Name == "" && out[i].Port == 0:
				return nil, d.errf(portNodes[i], yamldiag.Join(p, "port"), "L7 rules need a port (port 0 means every port)")
			}
			out[i].Proto = ProtoTCP
			out[i].L7 = l7
		}
	}
	return out, nil
}

func (d *decoder) ciliumPort(n *yaml.Node, path string) (PortRule, error) {
	var pr PortRule
	var endPort int64
	var endNode *yaml.Node
	err := d.fields(n, path, map[string]fieldFunc{
		"port": func(v *yaml.Node, p string) error {
			if v == nil || v.Kind != yaml.ScalarNode {
				return d.errf(v, p, "invalid port: expected a number or a name")
			}
			if num, err := strconv.ParseUint(v.Value, 10, 16); err == nil {
				pr.Port = uint16(num)
				return nil
			}
			if !validPortName(v.Value) {
				return d.errf(v, p, "invalid port %q: want 0-65535 or a port name", v.Value)
			}
			pr.Name = v.Value
			return nil
		},
		"endPort": func(v *yaml.Node, p string) error {
			var err error
			endNode = v
			endPort, err = d.integer(v, p, 0, 65535)
			return err
		},
		"protocol": func(v *yaml.Node, p string) error {
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			proto, ok := protoNames[s]
			if !ok {
				return d.errf(v, p, "invalid protocol %q (want TCP, UDP, SCTP or ANY)", s)
			}
			pr.Proto = proto
			return nil
		},
	})
	if err != nil {
		return pr, err
	}
	pr.EndPort = pr.Port
	if endNode != nil && pr.Name == "" && endPort != 0 {
		// Cilium ignores endPort on named ports.
		if pr.Port == 0 {
			return pr, d.errf(endNode, yamldiag.Join(path, "endPort"), "endPort needs a non-zero port")
		}
		if uint16(endPort) < pr.Port {
			return pr, d.errf(endNode, yamldiag.Join(path, "endPort"), "endPort %d is below port %d", endPort, pr.Port)
		}
		pr.EndPort = uint16(endPort)
	}
	return pr, nil
}

var icmpTypeNames = map[string]uint8{
	"EchoReply":              0,
	"DestinationUnreachable": 3,
	"Redirect":               5,
	"Echo":                   8,
	"EchoRequest":            8,
	"RouterAdvertisement":    9,
	"RouterSelection":        10,
	"TimeExceeded":           11,
	"ParameterProblem":       12,
	"Timestamp":              13,
	"TimestampReply":         14,
	"Photuris":               40,
	"ExtendedEchoRequest":    42,
	"ExtendedEchoReply":      43,
}

func (d *decoder) icmpField(n *yaml.Node, path string) (uint8, error) {
	var t uint8
	var typeNode *yaml.Node
	err := d.fields(n, path, map[string]fieldFunc{
		"family": func(v *yaml.Node, p string) error {
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			switch s {
			case "", "IPv4":
				return nil
			case "IPv6":
				return d.errf(v, p, notSupported+"ICMPv6 (family IPv6)")
			}
			return d.errf(v, p, "invalid family %q (want IPv4 or IPv6)", s)
		},
		"type": func(v *yaml.Node, p string) error {
			typeNode = v
			if v == nil || v.Kind != yaml.ScalarNode {
				return d.errf(v, p, "invalid ICMP type: expected a number or a name")
			}
			if num, err := strconv.ParseUint(v.Value, 10, 8); err == nil {
				t = uint8(num)
				return nil
			}
			num, ok := icmpTypeNames[v.Value]
			if !ok {
				return d.errf(v, p, "invalid ICMP type %q: want 0-255 or an ICMP type name (EchoRequest, ...)", v.Value)
			}
			t = num
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	if typeNode == nil {
		return 0, d.errf(n, yamldiag.Join(path, "type"), "missing field")
	}
	return t, nil
}

// selector decodes a label selector; keys without a source get
// defaultSource.
func (d *decoder) selector(n *yaml.Node, path, defaultSource string) (Selector, error) {
	var ml map[string]string
	var mlNode *yaml.Node
	var exprs []Requirement
	var exprNodes []*yaml.Node
	err := d.fields(n, path, map[string]fieldFunc{
		"matchLabels": func(v *yaml.Node, p string) error {
			var err error
			mlNode = v
			ml, err = d.strMap(v, p)
			return err
		},
		"matchExpressions": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				var r Requirement
				var keyNode *yaml.Node
				err := d.fields(it, p, map[string]fieldFunc{
					"key": func(v *yaml.Node, p string) error {
						keyNode = v
						s, err := d.str(v, p)
						r.Key = s
						return err
					},
					"operator": func(v *yaml.Node, p string) error {
						s, err := d.str(v, p)
						r.Operator = Operator(s)
						return err
					},
					"values": func(v *yaml.Node, p string) error {
						vals, _, err := d.strList(v, p)
						r.Values = vals
						return err
					},
				})
				if err != nil {
					return err
				}
				if keyNode == nil {
					return d.errf(it, yamldiag.Join(p, "key"), "missing field")
				}
				exprs = append(exprs, r)
				exprNodes = append(exprNodes, it)
				return nil
			})
		},
	})
	if err != nil {
		return Selector{}, err
	}
	// Validate piece by piece so the error points at the right entry.
	for k := range ml {
		if _, err := newSelector(defaultSource, map[string]string{k: ml[k]}, nil); err != nil {
			return Selector{}, d.errf(valueNode(mlNode, k), yamldiag.Join(yamldiag.Join(path, "matchLabels"), k), "%s", strings.TrimPrefix(err.Error(), "matchLabels["+k+"]: "))
		}
	}
	for i, e := range exprs {
		if _, err := newSelector(defaultSource, nil, []Requirement{e}); err != nil {
			msg := strings.TrimPrefix(err.Error(), "matchExpressions[0]")
			msg = strings.TrimPrefix(msg, ": ")
			p := yamldiag.Index(yamldiag.Join(path, "matchExpressions"), i)
			if f, rest, ok := strings.Cut(msg, ": "); ok && (f == ".key" || f == ".values" || f == ".operator") {
				p, msg = p+f, rest
			}
			return Selector{}, d.errf(exprNodes[i], p, "%s", msg)
		}
	}
	return newSelector(defaultSource, ml, exprs)
}
