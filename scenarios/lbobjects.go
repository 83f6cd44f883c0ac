package scenarios

import (
	"net/netip"

	"gopkg.in/yaml.v3"
)

// Kinds of Cilium's LoadBalancer IPAM and L2 announcement objects.
const (
	KindCiliumLoadBalancerIPPool   = "CiliumLoadBalancerIPPool"
	KindCiliumL2AnnouncementPolicy = "CiliumL2AnnouncementPolicy"
)

// Annotations of a Service read by LB IPAM (Cilium's names).
const (
	// AnnotationLBIPs asks for specific LoadBalancer IPs (comma-separated).
	AnnotationLBIPs = "lbipam.cilium.io/ips"
	// AnnotationLBSharingKey lets Services with the same key share an IP
	// when their ports do not collide.
	AnnotationLBSharingKey = "lbipam.cilium.io/sharing-key"
)

// LBIPBlock is one block of a pool: a CIDR, or a Start..Stop range.
type LBIPBlock struct {
	CIDR        netip.Prefix
	Start, Stop netip.Addr
	// Path is the block's field path (spec.blocks[i]) for diagnostics.
	Path string
}

// First and Last return the block's address range.
func (b LBIPBlock) First() netip.Addr {
	if b.CIDR.IsValid() {
		return b.CIDR.Masked().Addr()
	}
	return b.Start
}

// Last returns the block's last address.
func (b LBIPBlock) Last() netip.Addr {
	if b.CIDR.IsValid() {
		return lastOf(b.CIDR)
	}
	return b.Stop
}

func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (uint32(1) << (32 - p.Bits())) - 1
	if p.Bits() == 0 {
		v = ^uint32(0)
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// LBIPPool is a cilium.io CiliumLoadBalancerIPPool: where LoadBalancer
// Services get their ingress IPs from.
type LBIPPool struct {
	APIVersion string
	Meta       ObjectMeta
	Blocks     []LBIPBlock
	// ServiceSelector limits the pool to the Services it selects (nil:
	// every Service). Service labels plus io.kubernetes.service.namespace
	// and io.kubernetes.service.name are matched.
	ServiceSelector *LabelSelector
	// Disabled pools give no new addresses.
	Disabled bool
	// AllowFirstLastIPs is false when the spec says "No": the first and
	// last address of each CIDR (wider than /31) are not given out.
	AllowFirstLastIPs bool
	Source            Source
	node              *yaml.Node
}

// Ref implements Object.
func (p *LBIPPool) Ref() ObjectRef {
	return ObjectRef{Kind: KindCiliumLoadBalancerIPPool, Name: p.Meta.Name}
}

// Origin implements Object.
func (p *LBIPPool) Origin() Source { return p.Source }

func (p *LBIPPool) document() *yaml.Node { return p.node }

// L2AnnouncementPolicy is a cilium.io/v2alpha1 CiliumL2AnnouncementPolicy:
// which nodes answer ARP on the underlay for which Services' addresses.
type L2AnnouncementPolicy struct {
	Meta ObjectMeta
	// NodeSelector and ServiceSelector are nil when absent (everything).
	NodeSelector    *LabelSelector
	ServiceSelector *LabelSelector
	// LoadBalancerIPs and ExternalIPs say which addresses are announced.
	LoadBalancerIPs, ExternalIPs bool
	// Interfaces are regular expressions of node devices (nil: all).
	Interfaces []string
	Source     Source
	node       *yaml.Node
}

// Ref implements Object.
func (p *L2AnnouncementPolicy) Ref() ObjectRef {
	return ObjectRef{Kind: KindCiliumL2AnnouncementPolicy, Name: p.Meta.Name}
}

// Origin implements Object.
func (p *L2AnnouncementPolicy) Origin() Source { return p.Source }

func (p *L2AnnouncementPolicy) document() *yaml.Node { return p.node }

// serviceLabels are the labels LB IPAM and L2 policies select a Service
// by: its own plus Cilium's namespace and name labels.
func serviceLabels(s *Service) map[string]string {
	l := map[string]string{}
	for k, v := range s.Meta.Labels {
		l[k] = v
	}
	l["io.kubernetes.service.namespace"] = s.Meta.Namespace
	l["io.kubernetes.service.name"] = s.Meta.Name
	return l
}
