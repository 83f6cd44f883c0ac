// Package policy turns CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
// and Kubernetes NetworkPolicy objects into per-endpoint policy entries that
// the datapath loads into its policy map.
//
// Parse and Decode read manifests (YAML nodes, so every error names file,
// line and field path); a Repository keeps the policies of a lab and the
// CIDR identities their CIDR rules need; a Compiler turns them, for one
// endpoint and one snapshot of the identity table, into an EndpointPolicy.
//
// Semantics follow Cilium's and Kubernetes' documentation:
//   - An endpoint selected by a rule with an ingress (or ingressDeny)
//     section, even an empty one, is default deny at ingress; likewise for
//     egress. Endpoints no rule selects allow everything. Cilium's
//     enableDefaultDeny can turn this off per direction. For NetworkPolicy,
//     policyTypes decides (default: Ingress, plus Egress when the spec has
//     egress rules).
//   - A namespaced policy selects endpoints of its namespace only. In a
//     CiliumNetworkPolicy a peer selector that names no namespace
//     (k8s:io.kubernetes.pod.namespace) is limited to the policy's
//     namespace, unless it selects by namespace labels
//     (io.cilium.k8s.namespace.labels.*) or by reserved labels; in a
//     clusterwide policy it is limited to Kubernetes pods of any namespace.
//   - A Cilium rule with ports but no L3 field applies to every peer
//     (identity 0); a rule with neither allows nothing; an explicitly empty
//     L3 list selects nothing. A NetworkPolicy rule without from/to applies
//     to every peer, without ports to every port.
//   - Entities: world is identity 2 plus every CIDR identity, cluster every
//     identity that is neither world nor CIDR, all the wildcard 0, and the
//     others their reserved identity. CIDR rules select the CIDR identities
//     whose prefix lies inside the rule's prefix and outside its
//     exceptions (and world for 0.0.0.0/0); they never select pods.
//   - Deny wins: a matching Deny entry drops whatever allows it (see
//     EndpointPolicy.Verdict, the reference the datapath implements).
//
// L7 rules: toPorts[].rules.http (HTTP rules, TCP ports or port ranges) are
// carried on the entries of their port (Entry.L7); the control plane
// gives those entries the node proxy's port. rules.kafka is refused
// (Cilium removed Kafka policy in 1.20).
//
// Not supported yet (rejected with a "not supported yet" error): DNS and
// generic L7 rules, toFQDNs, toServices, toGroups, from/toNodes, from/toRequires, nodeSelector
// (host policies), CIDR groups, authentication, IPv6.
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
	// L7 holds the L7 rules of the toPorts entry this entry came from (nil
	// for an L3/L4 entry): the connection is redirected to the node's L7
	// proxy, which applies them to every request.
	L7 *L7Rules
	// ProxyPort is the port of the node's proxy that implements L7; the
	// control plane fills it in before the entry reaches the datapath (the
	// policy map value carries it, as Cilium's does).
	ProxyPort uint16
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
