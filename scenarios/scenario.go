package scenarios

import (
	"net"
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/topo"
)

// Datapath settings.
const (
	// DatapathBPF attaches podlab's eBPF datapath (the default).
	DatapathBPF = "bpf"
	// DatapathNone leaves the kernel's plain routing: no policy, no services.
	DatapathNone = "none"
	// DatapathCilium attaches Cilium's own production programs (bpf_lxc,
	// bpf_overlay) compiled from a Cilium release or checkout.
	DatapathCilium = "cilium"
)

// Settings are the scenario-wide knobs of the Scenario document.
type Settings struct {
	// Datapath is DatapathBPF, DatapathCilium or DatapathNone.
	Datapath string
	// Workers is the number of worker nodes when no kind Cluster document
	// is given (default 2, plus kind-control-plane).
	Workers int
	// Seed makes generated pod names and placement reproducible.
	Seed uint64
	// ProbeTimeout is the default timeout of one probe attempt.
	ProbeTimeout time.Duration
	// ReadyTimeout bounds waiting for pods to become ready.
	ReadyTimeout time.Duration
}

// Defaults of Settings.
const (
	DefaultWorkers      = 2
	DefaultSeed         = 1
	DefaultProbeTimeout = 2 * time.Second
	DefaultReadyTimeout = 30 * time.Second
)

// Scenario is a loaded, validated scenario: its objects, its nodes and its
// steps.
type Scenario struct {
	// Name is metadata.name of the Scenario document, else the file or
	// folder name without extension.
	Name        string
	Description string
	// Files are the files read, in order.
	Files    []string
	Settings Settings
	// Cluster is the kind Cluster document, or the default cluster
	// (kind-control-plane plus Settings.Workers workers). A scenario with
	// a Topology has an empty Cluster (no nodes).
	Cluster *Cluster
	// Topology is the raw topology (a podlab.io/v1alpha1 Topology
	// document) the scenario runs on instead of a cluster; nil for cluster
	// scenarios. Peers and devices then name its namespaces (ns/NAME,
	// NAME/DEVICE), and the lab has no datapath, pods or services.
	Topology *topo.Spec
	// Objects are all Kubernetes objects of the documents, in file order;
	// the typed lists below hold the same objects.
	Objects     []Object
	Namespaces  []*Namespace
	Pods        []*Pod
	Deployments []*Deployment
	Services    []*Service
	Policies    []*Policy
	// LBIPPools and L2Policies are the scenario's
	// CiliumLoadBalancerIPPools and CiliumL2AnnouncementPolicies.
	LBIPPools []*LBIPPool
	// CIDRGroups are the scenario's CiliumCIDRGroups.
	CIDRGroups []*CIDRGroup
	// EnvoyConfigs are its CiliumEnvoyConfigs and
	// CiliumClusterwideEnvoyConfigs.
	EnvoyConfigs []*EnvoyConfig
	L2Policies   []*L2AnnouncementPolicy
	// Captures run for the whole scenario.
	Captures []Device
	Steps    []Step
	// Differences are the outcomes that may legitimately differ between
	// datapaths in a differential run (podlab run --datapath bpf,cilium).
	Differences []Difference
	// Warnings are problems that do not stop the scenario (a selector that
	// matches nothing, an ignored preferred affinity).
	Warnings []Diagnostic
	// deferred holds the objects first created by an apply step.
	deferred map[ObjectRef]bool
	// docs holds each object's YAML document, to tell an identical repeat
	// from a conflicting one.
	docs map[ObjectRef]*yaml.Node
}

// Difference declares that the probes of one step may differ between
// datapaths, and why (e.g. "none has no policy: the denied probe
// succeeds").
type Difference struct {
	// Step names a probe step.
	Step string
	// Datapaths are the datapaths whose outcomes may differ from the
	// others' (all when empty).
	Datapaths []string
	Reason    string
	Source    Source
}

// InitialObjects returns the objects created before the first step: every
// document object except those an apply step creates later.
func (s *Scenario) InitialObjects() []Object {
	var out []Object
	for _, o := range s.Objects {
		if !s.deferred[o.Ref()] {
			out = append(out, o)
		}
	}
	return out
}

// Deferred reports whether a document object is created by an apply step
// rather than at the start.
func (s *Scenario) Deferred(ref ObjectRef) bool { return s.deferred[ref] }

// Step is one step of a scenario. Exactly one action field is set (Apply,
// Delete, Scale, Wait, Probes, Flow, Metric, Fault, Sleep), except that a
// step made only of packet assertions has Packets and no action.
type Step struct {
	// Name is the step's name as written, or a generated one ("probe
	// pod-to-a → service/echo-a").
	Name   string
	Source Source
	// Test names the test of a suite the step belongs to (set when a suite
	// such as `podlab connectivity test` composes several tests into one
	// scenario; empty otherwise).
	Test string

	Apply  *ApplyStep
	Delete *DeleteStep
	Scale  *ScaleStep
	Wait   *WaitStep
	// Probes run concurrently (one for `probe:`, several for `probes:`).
	Probes []ProbeStep
	Flow   *FlowAssertion
	Metric *MetricAssertion
	Fault  *Fault
	// Serve starts a built-in workload in a raw topology's namespace.
	Serve *ServeStep
	// Sleep pauses the scenario.
	Sleep time.Duration

	// Captures run while this step's action runs; Packets are checked
	// against them after it (or, for a packets-only step, against the
	// scenario-wide captures so far).
	Captures []Device
	Packets  []PacketAssertion
}

// Action returns the step's action keyword ("apply", "probe", "packets", ...).
func (s *Step) Action() string {
	switch {
	case s.Apply != nil:
		return "apply"
	case s.Delete != nil:
		return "delete"
	case s.Scale != nil:
		return "scale"
	case s.Wait != nil:
		return "wait"
	case len(s.Probes) == 1:
		return "probe"
	case len(s.Probes) > 1:
		return "probes"
	case s.Flow != nil:
		return "flow"
	case s.Metric != nil:
		return "metric"
	case s.Fault != nil:
		return string(s.Fault.Kind)
	case s.Serve != nil:
		return "serve"
	case s.Sleep != 0:
		return "sleep"
	case len(s.Packets) > 0:
		return "packets"
	}
	return ""
}

// ApplyStep creates or replaces objects: document objects named by
// reference (which are then not created at the start) and inline manifests.
type ApplyStep struct {
	Objects []Object
}

// DeleteStep deletes objects.
type DeleteStep struct {
	Refs []ObjectRef
}

// ScaleStep changes a Deployment's replicas.
type ScaleStep struct {
	Deployment ObjectRef
	Replicas   int
}

// WaitStep waits until pods are ready: the pods of Refs (Deployments or
// Pods), or every pod when Refs is empty. Ready means the workload listens
// and the pod's readiness expectations hold.
type WaitStep struct {
	Refs    []ObjectRef
	Timeout time.Duration
}

// PeerKind says what a probe endpoint is.
type PeerKind string

// Peer kinds.
const (
	PeerPod        PeerKind = "pod"
	PeerDeployment PeerKind = "deployment" // every pod of it (from) / any pod of it (to)
	PeerService    PeerKind = "service"    // its ClusterIP
	PeerNodePort   PeerKind = "nodeport"   // a node's address and the service's node port
	// PeerLoadBalancer is a Service's LoadBalancer IP and first port.
	PeerLoadBalancer PeerKind = "loadbalancer"
	// PeerExternalIP is a Service's first external IP and first port.
	PeerExternalIP PeerKind = "externalip"
	PeerNode       PeerKind = "node"  // the node's namespace / address
	PeerWorld      PeerKind = "world" // the world namespace
	PeerIP         PeerKind = "ip"    // a literal address (pod, node, or an emulated world host)
	PeerDNSName    PeerKind = "dns"   // a name resolved by the source's resolver
	// PeerNetns is a namespace of a raw topology (ns/NAME): as a source
	// the probe runs inside it, as a target it stands for the first IPv4
	// address the topology gives a device of it.
	PeerNetns PeerKind = "netns"
)

// Peer is a probe or flow endpoint.
type Peer struct {
	Kind PeerKind
	// Namespace and Name name the pod, Deployment or Service.
	Namespace string
	Name      string
	// Node names the node (PeerNode, PeerNodePort).
	Node string
	IP   netip.Addr
	// Host is the DNS name (PeerDNSName).
	Host string
	// Raw is the text as written.
	Raw string
}

// String returns the peer as written.
func (p Peer) String() string { return p.Raw }

// ProbeProtocol is the kind of probe.
type ProbeProtocol string

// Probe protocols.
const (
	ProbeHTTP ProbeProtocol = "http"
	ProbeTCP  ProbeProtocol = "tcp"
	ProbeUDP  ProbeProtocol = "udp"
	ProbeICMP ProbeProtocol = "icmp"
	ProbeDNS  ProbeProtocol = "dns"
)

// Expectation is the expected outcome of a probe.
type Expectation string

// Expectations.
const (
	ExpectSuccess Expectation = "success"
	ExpectTimeout Expectation = "timeout" // no answer (dropped)
	ExpectRefused Expectation = "refused" // TCP RST to a SYN / ICMP port unreachable
	ExpectReset   Expectation = "reset"   // an established connection reset
	// ExpectUnreachable: an ICMP error came back or there is no route.
	ExpectUnreachable Expectation = "unreachable"
	ExpectNXDomain    Expectation = "nxdomain"    // the name does not exist
	ExpectDNSTimeout  Expectation = "dns-timeout" // the DNS server did not answer
	ExpectFail        Expectation = "fail"        // any failure
)

// Expectations returns every expectation a probe may state.
func Expectations() []Expectation {
	return []Expectation{ExpectSuccess, ExpectTimeout, ExpectRefused, ExpectReset, ExpectUnreachable, ExpectNXDomain, ExpectDNSTimeout, ExpectFail}
}

// ProbeStep sends traffic from one peer to another and checks the outcome.
type ProbeStep struct {
	From     Peer
	To       Peer
	Protocol ProbeProtocol
	// Port is the destination port (0: the protocol's or the service's
	// default: 80 for HTTP, the Service's first port, 53 for DNS, 7 for
	// the echo workloads).
	Port int
	HTTP *HTTPProbe
	UDP  *UDPProbe
	DNS  *DNSProbe
	ICMP *ICMPProbe
	// Count attempts, at most Parallel at a time; every attempt must meet
	// Expect.
	Count    int
	Parallel int
	Timeout  time.Duration
	Expect   Expectation
	// DropReason, for failures, is the drop reason the datapath must have
	// recorded for this traffic ("Policy denied").
	DropReason string
	Source     Source
}

// HTTPProbe is an HTTP request.
type HTTPProbe struct {
	Method string
	Path   string
	// Status is the expected status code (0: any 2xx/3xx).
	Status int
	// Body, when set, must occur in the response body ("Ship landed",
	// "Access denied").
	Body string
	// Padding adds an X-Podlab-Padding request header of this many bytes.
	// The http-echo workload reflects request headers in its JSON answer,
	// so the answer grows by as much: a way to ask for a large response
	// (the MTU bug of the library) with a request that stays small enough.
	Padding int
	// Headers are extra request headers, "Name: value" as curl's -H.
	Headers []string
	// HTTPS speaks TLS (default port 443), verifying the server against the
	// lab CA as podlab exec's curl does.
	HTTPS bool
}

// ICMPProbe is an ICMP echo (ping).
type ICMPProbe struct {
	// Size is the echo payload in bytes (0: 56, as ping; ping -s).
	Size int
	// DontFragment sets DF on the request (ping -M do): a request larger
	// than the path MTU fails instead of being fragmented.
	DontFragment bool
}

// UDPProbe is a UDP request/response.
type UDPProbe struct {
	Payload string
	// ExpectEcho requires the answer to equal Payload.
	ExpectEcho bool
}

// DNSProbe is a DNS query.
type DNSProbe struct {
	Name string
	// Type is A (default), AAAA, CNAME, SRV, TXT or PTR.
	Type string
	// Answers are the expected answers: IPs, or references resolved at run
	// time (service/NAME → its ClusterIP, deployment/NAME or pod/NAME → the
	// pod IPs). Empty means any answer.
	Answers []string
}

// DeviceKind says where a captured device lives.
type DeviceKind string

// Device kinds.
const (
	DeviceNode    DeviceKind = "node"     // <node>/<device>
	DevicePod     DeviceKind = "pod"      // pod:<ns>/<pod>/eth0 or <pod>/eth0
	DevicePodVeth DeviceKind = "pod-veth" // pod-veth:<pod>, the host-side lxc veth
	DeviceWorld   DeviceKind = "world"    // world/eth0
	// DeviceRaw is a device of a raw topology: <namespace>/<device>.
	DeviceRaw DeviceKind = "raw"
)

// Device is a named capture point.
type Device struct {
	Kind DeviceKind
	// Node is set for DeviceNode.
	Node string
	// Namespace/Pod are set for DevicePod and DevicePodVeth. Pod may name a
	// Deployment (OwnerKind KindDeployment): every pod of it.
	Namespace string
	Pod       string
	OwnerKind string
	// Name is the device name inside its namespace (eth0, cilium_vxlan, ...);
	// empty for DevicePodVeth (the runner knows the lxc name).
	Name string
	// Raw is the text as written; captures name their interfaces with it.
	Raw string
	// Promiscuous, when set, says whether a capture puts the device in
	// promiscuous mode (capture: [{device: D, promiscuous: true}]). Unset:
	// cluster devices are captured promiscuously, raw topology devices
	// are not.
	Promiscuous *bool
}

// String returns the device as written.
func (d Device) String() string { return d.Raw }

// FlowAssertion checks the flow log.
type FlowAssertion struct {
	From Peer
	To   Peer
	// Verdict is FORWARDED or DROPPED (empty: any).
	Verdict    string
	DropReason string
	// Protocol (TCP, UDP, ICMP) and Port narrow the flows (empty/0: any).
	Protocol string
	Port     int
	// HTTP, when set, asks for an L7 flow of the node proxies (Hubble
	// Type L7) with these HTTP fields.
	HTTP *FlowHTTP
	// Absent inverts the assertion: no such flow.
	Absent bool
	Source Source
}

// FlowHTTP narrows a flow assertion to L7 HTTP flows: request or response,
// method, a path the URL ends with, status code (empty/0: any).
type FlowHTTP struct {
	Type   string // request or response
	Method string
	Path   string
	Code   int
}

// MetricAssertion compares a metric with a value.
type MetricAssertion struct {
	Name   string
	Labels map[string]string
	// Op is ">=", "=", "<=", ">" or "<".
	Op     string
	Value  float64
	Source Source
}

// FaultKind names a fault.
type FaultKind string

// Faults.
const (
	FaultLinkDown       FaultKind = "linkDown"
	FaultLinkUp         FaultKind = "linkUp"
	FaultMTU            FaultKind = "mtu"
	FaultDeletePod      FaultKind = "deletePod"
	FaultDatapathReload FaultKind = "datapathReload"
	// FaultSetMAC changes a raw device's MAC address (setMAC).
	FaultSetMAC FaultKind = "setMAC"
	// FaultSysctl writes a net.* sysctl in a raw namespace (sysctl).
	FaultSysctl FaultKind = "sysctl"
	// FaultVXLAN changes a raw VXLAN device's UDP port or outer DF
	// setting (vxlan); a port change recreates the device.
	FaultVXLAN FaultKind = "vxlan"
)

// Fault injects a failure.
type Fault struct {
	Kind FaultKind
	// Device for linkDown, linkUp and mtu.
	Device Device
	MTU    int
	// Pod for deletePod: a pod, or a Deployment (one of its pods, which the
	// Deployment then replaces).
	Pod Peer
	// Node for datapathReload; empty reloads every node.
	Node string
	// MAC is the new address for setMAC; CopyFrom, when its Kind is set
	// instead, names the device whose MAC is copied at run time.
	MAC      net.HardwareAddr
	CopyFrom Device
	// Namespace, Key and Value are the sysctl's (key in dotted form,
	// net.* only).
	Namespace string
	Key       string
	Value     string
	// VXLAN holds the changes of a vxlan fault.
	VXLAN *VXLANChange
}

// VXLANChange is what a vxlan fault changes on a VXLAN device; zero
// fields stay as they are.
type VXLANChange struct {
	// Port is the new UDP destination port. The kernel cannot change it
	// on a live device, so the device is deleted and created again (in
	// the namespace holding its socket) with its addresses, routes,
	// neighbours and tc rules restored: what an administrator does with
	// ip link del / ip link add.
	Port int
	// DF is the outer header's Don't Fragment policy: unset (the kernel's
	// default: encapsulated packets may be fragmented), set, or inherit
	// (copied from the inner IPv4 header).
	DF string
}

// ServeStep starts a built-in workload (http-echo, tcp-echo or udp-echo)
// inside a namespace of a raw topology; it runs until the end of the
// scenario.
type ServeStep struct {
	Namespace string
	// Workload is the built-in's name.
	Workload string
	// Ports to listen on (default: the workload's: 80 for http-echo, 7
	// for the echo servers).
	Ports []int
	// Addrs to listen on (default: every IPv4 address of the namespace).
	Addrs []netip.Addr
}
