package policy

import (
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/identity"

	"github.com/podlab/podlab/internal/yamldiag"
)

// networkPolicySpec decodes the spec of a networking.k8s.io/v1
// NetworkPolicy.
//
// Semantics, as Kubernetes documents them: podSelector selects pods of the
// policy's namespace ({} selects all of them); policyTypes defaults to
// Ingress, plus Egress when the spec has egress rules; a direction listed in
// policyTypes is isolated (default deny) and allows what its rules allow;
// rules of a direction not listed are ignored. A rule without from/to
// matches every peer, without ports every port. A peer is a podSelector
// (pods of the policy's namespace), a namespaceSelector (every pod of the
// matching namespaces), both (the matching pods of the matching
// namespaces) or an ipBlock (a CIDR minus exceptions).
func (d *decoder) networkPolicySpec(n *yaml.Node, path, namespace string) (Rule, error) {
	r := Rule{Path: path}
	var podSel *Selector
	var ingress, egress []PeerRule
	var types []string
	var typesNodes []*yaml.Node
	typesSet := false
	err := d.fields(n, path, map[string]fieldFunc{
		"podSelector": func(v *yaml.Node, p string) error {
			s, err := d.selector(v, p, identity.SourceK8s)
			podSel = &s
			return err
		},
		"ingress": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				pr, err := d.networkPolicyRule(it, p, Ingress, namespace)
				ingress = append(ingress, pr)
				return err
			})
		},
		"egress": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				pr, err := d.networkPolicyRule(it, p, Egress, namespace)
				egress = append(egress, pr)
				return err
			})
		},
		"policyTypes": func(v *yaml.Node, p string) error {
			var err error
			typesSet = true
			types, typesNodes, err = d.strList(v, p)
			return err
		},
	})
	if err != nil {
		return r, err
	}
	if podSel == nil {
		podSel = &Selector{}
	}
	r.Subject = podSel.with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpIn, values: []string{namespace}})
	if !typesSet {
		r.IngressDefaultDeny = true
		r.EgressDefaultDeny = len(egress) > 0
	}
	for i, t := range types {
		switch t {
		case "Ingress":
			r.IngressDefaultDeny = true
		case "Egress":
			r.EgressDefaultDeny = true
		default:
			return r, d.errf(typesNodes[i], yamldiag.Index(yamldiag.Join(path, "policyTypes"), i), "invalid policy type %q (want Ingress or Egress)", t)
		}
	}
	if r.IngressDefaultDeny {
		r.Peers = append(r.Peers, ingress...)
	}
	if r.EgressDefaultDeny {
		r.Peers = append(r.Peers, egress...)
	}
	return r, nil
}

func (d *decoder) networkPolicyRule(n *yaml.Node, path string, dir Direction, namespace string) (PeerRule, error) {
	pr := PeerRule{Direction: dir, Name: dir.String() + path[lastBracket(path):]}
	peersField := "from"
	if dir == Egress {
		peersField = "to"
	}
	havePeers := false
	err := d.fields(n, path, map[string]fieldFunc{
		peersField: func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				havePeers = true
				return d.networkPolicyPeer(it, p, namespace, &pr)
			})
		},
		"ports": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(it *yaml.Node, p string) error {
				port, err := d.networkPolicyPort(it, p)
				pr.Ports = append(pr.Ports, port)
				return err
			})
		},
	})
	if err != nil {
		return pr, err
	}
	// No peers (field missing or empty): every peer.
	pr.AnyPeer = !havePeers
	return pr, nil
}

func lastBracket(path string) int {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '[' {
			return i
		}
	}
	return len(path)
}

func (d *decoder) networkPolicyPeer(n *yaml.Node, path, namespace string, pr *PeerRule) error {
	var podSel, nsSel *Selector
	var block *CIDRRule
	err := d.fields(n, path, map[string]fieldFunc{
		"podSelector": func(v *yaml.Node, p string) error {
			s, err := d.selector(v, p, identity.SourceK8s)
			podSel = &s
			return err
		},
		"namespaceSelector": func(v *yaml.Node, p string) error {
			s, err := d.selector(v, p, identity.SourceK8s)
			s = namespaceLabelsSelector(s)
			nsSel = &s
			return err
		},
		"ipBlock": func(v *yaml.Node, p string) error {
			c, err := d.cidrSet(v, p, "cidr")
			block = &c
			return err
		},
	})
	if err != nil {
		return err
	}
	switch {
	case block != nil && (podSel != nil || nsSel != nil):
		return d.errf(n, path, "ipBlock cannot be combined with podSelector or namespaceSelector")
	case block != nil:
		for _, ex := range block.Except {
			if ex.Bits() == block.Prefix.Bits() {
				return d.errf(n, yamldiag.Join(path, "ipBlock.except"), "except %s must be strictly inside %s", ex, block.Prefix)
			}
		}
		pr.CIDRs = append(pr.CIDRs, *block)
	case podSel == nil && nsSel == nil:
		return d.errf(n, path, "a peer needs podSelector, namespaceSelector or ipBlock")
	case nsSel == nil:
		pr.Endpoints = append(pr.Endpoints, podSel.with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpIn, values: []string{namespace}}))
	default:
		s := nsSel.with(requirement{source: identity.SourceK8s, key: identity.PodNamespaceKey, op: OpExists})
		if podSel != nil {
			s = podSel.and(s)
		}
		pr.Endpoints = append(pr.Endpoints, s)
	}
	return nil
}

// namespaceLabelsSelector turns a selector on namespace labels into one on
// the k8s:io.cilium.k8s.namespace.labels.<key> labels of pods.
func namespaceLabelsSelector(s Selector) Selector {
	out := Selector{reqs: make([]requirement, len(s.reqs))}
	for i, r := range s.reqs {
		r.source = identity.SourceK8s
		r.key = identity.NamespaceLabelsPrefix + r.key
		out.reqs[i] = r
	}
	return out
}

var k8sProtos = map[string]uint8{"TCP": ProtoTCP, "UDP": ProtoUDP, "SCTP": ProtoSCTP}

func (d *decoder) networkPolicyPort(n *yaml.Node, path string) (PortRule, error) {
	pr := PortRule{Proto: ProtoTCP}
	var endNode *yaml.Node
	var endPort int64
	err := d.fields(n, path, map[string]fieldFunc{
		"protocol": func(v *yaml.Node, p string) error {
			s, err := d.str(v, p)
			if err != nil {
				return err
			}
			proto, ok := k8sProtos[s]
			if !ok {
				return d.errf(v, p, "invalid protocol %q (want TCP, UDP or SCTP)", s)
			}
			pr.Proto = proto
			return nil
		},
		"port": func(v *yaml.Node, p string) error {
			if v == nil || v.Kind != yaml.ScalarNode {
				return d.errf(v, p, "invalid port: expected a number or a name")
			}
			if v.Tag == "!!int" {
				num, err := strconv.ParseUint(v.Value, 10, 16)
				if err != nil || num == 0 {
					return d.errf(v, p, "invalid port %s: want 1-65535", v.Value)
				}
				pr.Port = uint16(num)
				return nil
			}
			if !validPortName(v.Value) {
				return d.errf(v, p, "invalid port %q: want 1-65535 or a port name", v.Value)
			}
			pr.Name = v.Value
			return nil
		},
		"endPort": func(v *yaml.Node, p string) error {
			var err error
			endNode = v
			endPort, err = d.integer(v, p, 1, 65535)
			return err
		},
	})
	if err != nil {
		return pr, err
	}
	pr.EndPort = pr.Port
	if endNode != nil {
		p := yamldiag.Join(path, "endPort")
		switch {
		case pr.Name != "":
			return pr, d.errf(endNode, p, "endPort cannot be used with a named port")
		case pr.Port == 0:
			return pr, d.errf(endNode, p, "endPort needs port")
		case uint16(endPort) < pr.Port:
			return pr, d.errf(endNode, p, "endPort %d is below port %d", endPort, pr.Port)
		}
		pr.EndPort = uint16(endPort)
	}
	return pr, nil
}
