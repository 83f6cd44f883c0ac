package scenarios

import (
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"

	"github.com/podlab/podlab/internal/yamldiag"
)

// KindCiliumCIDRGroup is Cilium's CiliumCIDRGroup: named, labelled CIDRs
// that policies reference with cidrGroupRef or cidrGroupSelector.
const KindCiliumCIDRGroup = "CiliumCIDRGroup"

// CIDRGroup is a CiliumCIDRGroup (cilium.io/v2 or v2alpha1).
type CIDRGroup struct {
	APIVersion string
	Meta       ObjectMeta
	// CIDRs are spec.externalCIDRs (IPv6 ones are kept out: the lab is
	// IPv4; a group of IPv6 CIDRs only selects nothing).
	CIDRs  []netip.Prefix
	Source Source
	node   *yaml.Node
}

// Ref implements Object.
func (g *CIDRGroup) Ref() ObjectRef { return ObjectRef{Kind: KindCiliumCIDRGroup, Name: g.Meta.Name} }

// Origin implements Object.
func (g *CIDRGroup) Origin() Source { return g.Source }

func (g *CIDRGroup) document() *yaml.Node { return g.node }

// Group returns the group as the policy repository holds it.
func (g *CIDRGroup) Group() policy.CIDRGroup {
	return policy.CIDRGroup{Name: g.Meta.Name, Labels: g.Meta.Labels, CIDRs: g.CIDRs}
}

// decodeCIDRGroup reads a CiliumCIDRGroup.
func (d *decoder) decodeCIDRGroup(doc *mapping, apiVersion string) *CIDRGroup {
	g := &CIDRGroup{APIVersion: apiVersion, Source: srcOf(d, doc.node), node: doc.node}
	g.Meta = d.decodeMeta(doc.get("metadata"), "metadata", false, dns1123Subdomain)
	if !doc.require("spec") {
		return g
	}
	m := d.mapping(doc.get("spec"), "spec", fields{Known: []string{"externalCIDRs"}})
	if m == nil {
		return g
	}
	cn := m.get("externalCIDRs")
	for i, s := range m.stringList("externalCIDRs") {
		p := yamldiag.Index("spec.externalCIDRs", i)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			d.errorf(cn, p, "invalid CIDR %q", s)
			continue
		}
		if pfx.Addr().Is4() {
			g.CIDRs = append(g.CIDRs, pfx.Masked())
		}
	}
	return g
}
