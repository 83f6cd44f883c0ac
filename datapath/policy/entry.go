// Package policy turns CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
// and Kubernetes NetworkPolicy objects into per-endpoint policy entries that
// the datapath loads into its policy map.
package policy

// Direction of a policy entry, seen from the endpoint it belongs to.
type Direction uint8

const (
	// Ingress judges traffic arriving at the endpoint.
	Ingress Direction = 0
	// Egress judges traffic the endpoint sends.
	Egress Direction = 1
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Entry is one compiled rule of one endpoint: traffic of Direction to/from
// Identity on Proto/port range is allowed, or denied when Deny is set.
// Identity 0 matches any peer (L4-only rules); Proto 0 matches any protocol;
// PortLo == PortHi == 0 matches any port. For ICMP, PortLo/PortHi hold the
// ICMP type (PortLo == PortHi).
type Entry struct {
	Direction Direction
	Identity  uint32
	Proto     uint8
	PortLo    uint16
	PortHi    uint16
	Deny      bool
	// Rule names the policy and rule this entry came from
	// ("default/l3-rule ingress[0]"); it is kept by the control plane, not
	// loaded into the datapath.
	Rule string
}

// EndpointPolicy is the whole policy of one endpoint.
type EndpointPolicy struct {
	// IngressEnforced/EgressEnforced are set when at least one policy selects
	// the endpoint in that direction (default deny); otherwise all is allowed.
	IngressEnforced bool
	EgressEnforced  bool
	Entries         []Entry
}
