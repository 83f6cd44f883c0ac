package scenarios

import (
	"net/netip"
	"regexp"
	"strings"

	"github.com/podlab/podlab/internal/yamldiag"
)

// decodeLBIPPool reads a CiliumLoadBalancerIPPool.
func (d *decoder) decodeLBIPPool(doc *mapping, apiVersion string) *LBIPPool {
	p := &LBIPPool{APIVersion: apiVersion, Source: srcOf(d, doc.node), node: doc.node, AllowFirstLastIPs: true}
	p.Meta = d.decodeMeta(doc.get("metadata"), "metadata", false, dns1123Subdomain)
	if !doc.require("spec") {
		return p
	}
	m := d.mapping(doc.get("spec"), "spec", fields{Known: []string{"blocks", "serviceSelector", "disabled", "allowFirstLastIPs", "cidrs"}})
	if m == nil {
		return p
	}
	if m.has("cidrs") {
		d.errorf(m.get("cidrs"), "spec.cidrs", "not supported: spec.cidrs was removed from CiliumLoadBalancerIPPool; write spec.blocks")
	}
	if m.has("serviceSelector") {
		sel := d.decodeSelector(m.get("serviceSelector"), "spec.serviceSelector")
		p.ServiceSelector = &sel
	}
	p.Disabled = m.boolean("disabled")
	switch v := m.str("allowFirstLastIPs"); v {
	case "", "Yes":
	case "No":
		p.AllowFirstLastIPs = false
	default:
		d.errorf(m.get("allowFirstLastIPs"), "spec.allowFirstLastIPs", "must be Yes or No; got %q", v)
	}
	items := d.list(m.get("blocks"), "spec.blocks")
	if len(items) == 0 {
		d.errorf(m.node, "spec.blocks", "a pool needs at least one block (cidr, or start and stop)")
	}
	for i, bn := range items {
		path := yamldiag.Index("spec.blocks", i)
		bm := d.mapping(bn, path, fields{Known: []string{"cidr", "start", "stop"}})
		if bm == nil {
			continue
		}
		b := LBIPBlock{Path: path}
		switch {
		case bm.has("cidr"):
			if bm.has("start") || bm.has("stop") {
				d.errorf(bn, path, "a block is either cidr or start/stop, not both")
				continue
			}
			pfx, err := netip.ParsePrefix(bm.str("cidr"))
			if err != nil || !pfx.Addr().Is4() {
				if err == nil && pfx.Addr().Is6() {
					d.errorf(bm.get("cidr"), yamldiag.Join(path, "cidr"), "not supported yet: IPv6 pool %s", pfx)
				} else {
					d.errorf(bm.get("cidr"), yamldiag.Join(path, "cidr"), "invalid IPv4 CIDR %q", bm.str("cidr"))
				}
				continue
			}
			b.CIDR = pfx.Masked()
		case bm.has("start"):
			start, err := netip.ParseAddr(bm.str("start"))
			if err != nil || !start.Is4() {
				d.errorf(bm.get("start"), yamldiag.Join(path, "start"), "invalid IPv4 address %q", bm.str("start"))
				continue
			}
			stop := start
			if bm.has("stop") {
				stop, err = netip.ParseAddr(bm.str("stop"))
				if err != nil || !stop.Is4() {
					d.errorf(bm.get("stop"), yamldiag.Join(path, "stop"), "invalid IPv4 address %q", bm.str("stop"))
					continue
				}
			}
			if stop.Less(start) {
				d.errorf(bm.get("stop"), yamldiag.Join(path, "stop"), "stop %s is before start %s", stop, start)
				continue
			}
			b.Start, b.Stop = start, stop
		default:
			d.errorf(bn, path, "a block needs cidr, or start (and stop)")
			continue
		}
		p.Blocks = append(p.Blocks, b)
	}
	return p
}

// UnderlayDevices are the node devices an L2 announcement can use: the
// node's link to the underlay segment.
var UnderlayDevices = []string{"eth0"}

// decodeL2Policy reads a CiliumL2AnnouncementPolicy.
func (d *decoder) decodeL2Policy(doc *mapping) *L2AnnouncementPolicy {
	p := &L2AnnouncementPolicy{Source: srcOf(d, doc.node), node: doc.node}
	p.Meta = d.decodeMeta(doc.get("metadata"), "metadata", false, dns1123Subdomain)
	if !doc.has("spec") {
		return p
	}
	m := d.mapping(doc.get("spec"), "spec", fields{Known: []string{"nodeSelector", "serviceSelector", "loadBalancerIPs", "externalIPs", "interfaces"}})
	if m == nil {
		return p
	}
	if m.has("nodeSelector") {
		sel := d.decodeSelector(m.get("nodeSelector"), "spec.nodeSelector")
		p.NodeSelector = &sel
	}
	if m.has("serviceSelector") {
		sel := d.decodeSelector(m.get("serviceSelector"), "spec.serviceSelector")
		p.ServiceSelector = &sel
	}
	p.LoadBalancerIPs = m.boolean("loadBalancerIPs")
	p.ExternalIPs = m.boolean("externalIPs")
	if !p.LoadBalancerIPs && !p.ExternalIPs {
		d.warnf(m.node, "spec", "neither loadBalancerIPs nor externalIPs is true: the policy announces nothing")
	}
	for i, expr := range m.stringList("interfaces") {
		path := yamldiag.Index("spec.interfaces", i)
		if _, err := regexp.Compile(expr); err != nil {
			d.errorf(m.get("interfaces"), path, "invalid regular expression %q: %v", expr, err)
			continue
		}
		p.Interfaces = append(p.Interfaces, expr)
	}
	if len(p.Interfaces) > 0 && len(p.DevicesOf(UnderlayDevices)) == 0 {
		d.warnf(m.get("interfaces"), "spec.interfaces", "no expression matches a node's underlay device (%s): the policy announces nothing", strings.Join(UnderlayDevices, ", "))
	}
	return p
}

// DevicesOf returns the devices among devs the policy announces on.
func (p *L2AnnouncementPolicy) DevicesOf(devs []string) []string {
	if len(p.Interfaces) == 0 {
		return devs
	}
	var out []string
	for _, dev := range devs {
		for _, expr := range p.Interfaces {
			if re, err := regexp.Compile(expr); err == nil && re.MatchString(dev) {
				out = append(out, dev)
				break
			}
		}
	}
	return out
}
