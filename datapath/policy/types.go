package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is the kind of a policy object.
type Kind string

// Policy kinds podlab understands.
const (
	KindCiliumNetworkPolicy            Kind = "CiliumNetworkPolicy"
	KindCiliumClusterwideNetworkPolicy Kind = "CiliumClusterwideNetworkPolicy"
	KindNetworkPolicy                  Kind = "NetworkPolicy"
)

// Namespaced reports whether policies of this kind live in a namespace.
func (k Kind) Namespaced() bool { return k != KindCiliumClusterwideNetworkPolicy }

// Key names a policy object: kind, namespace (empty for clusterwide
// policies) and name.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

// String returns "Kind namespace/name" ("Kind name" when clusterwide).
func (k Key) String() string {
	if k.Namespace == "" {
		return fmt.Sprintf("%s %s", k.Kind, k.Name)
	}
	return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name)
}

func compareKey(a, b Key) int {
	switch {
	case a.Kind != b.Kind:
		if a.Kind < b.Kind {
			return -1
		}
		return 1
	case a.Namespace != b.Namespace:
		if a.Namespace < b.Namespace {
			return -1
		}
		return 1
	case a.Name != b.Name:
		if a.Name < b.Name {
			return -1
		}
		return 1
	}
	return 0
}

// Policy is one decoded policy object: a CiliumNetworkPolicy (one Rule per
// spec/specs entry), a CiliumClusterwideNetworkPolicy or a Kubernetes
// NetworkPolicy (one Rule), translated to one internal form. Selectors
// already carry the namespace defaults of their kind. Policies are
// immutable once decoded.
type Policy struct {
	Key
	// File and Line locate the object's manifest.
	File string
	Line int
	// Rules are the policy's rules in manifest order.
	Rules []Rule
}

// Rule applies PeerRules to the endpoints its Subject selects.
type Rule struct {
	// Path is "spec", "specs[i]" (Cilium) or "spec" (NetworkPolicy).
	Path string
	// Subject selects the endpoints the rule applies to; for namespaced
	// kinds it includes k8s:io.kubernetes.pod.namespace=<namespace>.
	Subject Selector
	// IngressDefaultDeny/EgressDefaultDeny are set when the rule puts the
	// endpoints it selects into default deny for that direction.
	IngressDefaultDeny bool
	EgressDefaultDeny  bool
	// Peers are the ingress, ingressDeny, egress and egressDeny rules, in
	// manifest order.
	Peers []PeerRule
}

// PeerRule is one ingress/egress (allow or deny) rule: which peers, on which
// ports.
type PeerRule struct {
	Direction Direction
	Deny      bool
	// Name is the rule's place in its policy ("egress[0]",
	// "specs[1].ingressDeny[0]").
	Name string
	// AnyPeer matches every peer (identity 0): an L4-only Cilium rule or a
	// NetworkPolicy rule without from/to.
	AnyPeer bool
	// Endpoints select peer identities by labels.
	Endpoints []Selector
	// Entities are Cilium entities (world, cluster, host, ...).
	Entities []Entity
	// CIDRs match CIDR identities (and world for /0).
	CIDRs []CIDRRule
	// FQDNs (toFQDNs) match the CIDR identities of the addresses that DNS
	// answers for matching names carried (see Repository.ObserveDNS).
	FQDNs []FQDNSelector
	// Ports and ICMPs restrict the traffic; both empty means any protocol
	// and port.
	Ports []PortRule
	ICMPs []ICMPRule
}

// Entity is a Cilium policy entity.
type Entity string

// Entities podlab supports.
const (
	EntityWorld         Entity = "world"
	EntityCluster       Entity = "cluster"
	EntityHost          Entity = "host"
	EntityRemoteNode    Entity = "remote-node"
	EntityAll           Entity = "all"
	EntityKubeAPIServer Entity = "kube-apiserver"
	EntityHealth        Entity = "health"
	EntityInit          Entity = "init"
	EntityUnmanaged     Entity = "unmanaged"
)

// CIDRRule is a prefix minus exceptions. A rule written with
// cidrGroupRef or cidrGroupSelector names CiliumCIDRGroups instead of a
// prefix; the repository expands it into one rule per CIDR of the groups
// it names (none while no such group exists).
type CIDRRule struct {
	Prefix netip.Prefix
	Except []netip.Prefix
	// GroupRef is the name of a CiliumCIDRGroup (cidrGroupRef).
	GroupRef string
	// GroupSelector selects CiliumCIDRGroups by their labels
	// (cidrGroupSelector).
	GroupSelector *Selector
}

// IsGroup reports whether the rule names CIDR groups rather than a prefix.
func (c CIDRRule) IsGroup() bool { return c.GroupRef != "" || c.GroupSelector != nil }

// CIDRGroup is a CiliumCIDRGroup: named, labelled external CIDRs that
// policies reference with cidrGroupRef or cidrGroupSelector.
type CIDRGroup struct {
	Name   string
	Labels map[string]string
	CIDRs  []netip.Prefix
}

// Protocol numbers of entries.
const (
	ProtoAny  uint8 = 0
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// ProtoName returns a protocol's name as Cilium prints it: TCP, UDP, SCTP,
// ICMP, ANY for 0, else the number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoAny:
		return "ANY"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}

// PortProto returns the number of a Kubernetes port protocol (UDP, SCTP,
// any case); TCP, Kubernetes' default, otherwise.
func PortProto(s string) uint8 {
	switch strings.ToUpper(s) {
	case "UDP":
		return ProtoUDP
	case "SCTP":
		return ProtoSCTP
	}
	return ProtoTCP
}

// PortRule is a port, a port range or a named port on a protocol
// (ProtoAny for any).
type PortRule struct {
	Proto uint8
	// Port..EndPort is the range (EndPort == Port for one port); Port 0
	// means every port.
	Port    uint16
	EndPort uint16
	// Name is a named container port, resolved at compile time (ingress:
	// against the endpoint's ports; egress: against the peers' ports).
	Name string
	// L7 are the L7 rules of the port's toPorts entry (nil: L4 only).
	L7 *L7Rules
}

// ICMPRule allows one ICMP (IPv4) type.
type ICMPRule struct {
	Type uint8
}

// NamedPort is a named container port of an endpoint.
type NamedPort struct {
	Name  string
	Port  uint16
	Proto uint8
}
