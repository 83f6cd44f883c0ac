package topo

import (
	"net"
	"net/netip"
)

// Default addressing of a cluster, mirroring kind with Cilium in tunnel mode.
var (
	// DefaultUnderlay is the node network (kind's docker network).
	DefaultUnderlay = netip.MustParsePrefix("172.18.0.0/16")
	// DefaultPodCIDR is split into one /24 per node.
	DefaultPodCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// DefaultServiceCIDR holds ClusterIPs; DNS is at 10.96.0.10.
	DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	// DefaultDNSIP is the ClusterIP of kube-system/kube-dns
	// (DNSIPOf(DefaultServiceCIDR)).
	DefaultDNSIP = netip.MustParseAddr("10.96.0.10")
	// WorldUnderlayIP is the world namespace's address on the node network.
	WorldUnderlayIP = netip.MustParseAddr("172.18.255.254")
)

// ServiceIPOf returns the n-th address of a service subnet: 1 is
// default/kubernetes, 10 the cluster DNS (kubeadm's choice).
func ServiceIPOf(subnet netip.Prefix, n int) netip.Addr { return nthAddr(subnet, n) }

// DNSIPOf returns the cluster DNS address of a service subnet: its 10th
// address, as kubeadm (and so kind) sets it.
func DNSIPOf(subnet netip.Prefix) netip.Addr { return ServiceIPOf(subnet, 10) }

// Device names inside a node namespace.
const (
	NodeEth0    = "eth0"         // underlay device, in the fabric bridge
	NodeHost    = "cilium_host"  // gateway side of the host veth pair, holds the router IP
	NodeNet     = "cilium_net"   // other end of the host veth pair
	NodeVXLAN   = "cilium_vxlan" // collect-metadata VXLAN device (UDP 8472)
	VXLANPort   = 8472
	PodEth0     = "eth0"
	DefaultMTU  = 1500
	PodMTU      = 1450 // leaves room for the 50-byte VXLAN header
	FabricBr    = "br0"
	WorldEth0   = "eth0"
	PodLinkName = "lxc" // prefix of host-side pod veths: lxc<hash>
)

// Node is one Kubernetes node: a namespace on the underlay.
type Node struct {
	Name string // e.g. kind-worker
	Role string // control-plane or worker
	// Index is the node's position (0 for the first node).
	Index   int
	NS      *Namespace
	IP      netip.Addr   // eth0 address on the underlay
	PodCIDR netip.Prefix // this node's /24
	// RouterIP is the pods' gateway, held by cilium_host (first address of PodCIDR).
	RouterIP netip.Addr
	Eth0MAC  net.HardwareAddr
	HostMAC  net.HardwareAddr // cilium_host
	// Ifindexes inside the node namespace.
	Eth0Ifindex  int
	HostIfindex  int
	NetIfindex   int
	VXLANIfindex int
	Labels       map[string]string
}

// Pod is one pod: its own namespace with eth0, or the node's namespace when
// HostNetwork is set.
type Pod struct {
	Namespace   string // Kubernetes namespace, e.g. default
	Name        string
	Node        *Node
	HostNetwork bool
	Labels      map[string]string
	NS          *Namespace // the pod's netns (the node's when HostNetwork)
	IP          netip.Addr
	MAC         net.HardwareAddr // pod eth0
	// Host side of the pod's veth, in the node namespace.
	HostVeth    string // lxc<hash>
	HostIfindex int
	HostMAC     net.HardwareAddr
	// Ifindex of eth0 inside the pod namespace.
	Ifindex int
	// EndpointID is the node-local endpoint number (Cilium's endpoint ID).
	EndpointID uint16
	MTU        int
	// Ports are the pod's container ports (named ports feed policy).
	Ports []ContainerPort
	// ServiceAccount is the pod's service account (an identity label).
	ServiceAccount string
	// Workload is the controller owning the pod (Hubble's flow
	// workloads); zero for a bare pod.
	Workload Workload
}

// Workload names the controller that owns a pod, as Hubble reports it: a
// Deployment (not its ReplicaSet), DaemonSet, StatefulSet, Job...
type Workload struct {
	Kind string
	Name string
}

// ContainerPort is one port a pod's containers declare.
type ContainerPort struct {
	Name     string
	Port     uint16
	Protocol string // TCP, UDP or SCTP
	HostPort uint16
}

// Key returns namespace/name.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }
