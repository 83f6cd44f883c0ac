package scenarios

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// Kinds of objects a scenario may hold.
const (
	KindNamespace                      = "Namespace"
	KindPod                            = "Pod"
	KindDeployment                     = "Deployment"
	KindService                        = "Service"
	KindNetworkPolicy                  = "NetworkPolicy"
	KindCiliumNetworkPolicy            = "CiliumNetworkPolicy"
	KindCiliumClusterwideNetworkPolicy = "CiliumClusterwideNetworkPolicy"
	KindCluster                        = "Cluster"
	KindScenario                       = "Scenario"
	// KindTopology is a raw topology (topo.Spec) a scenario runs on
	// instead of a cluster.
	KindTopology = "Topology"
)

// apiVersions maps each supported kind to the apiVersion it must carry.
var apiVersions = map[string]string{
	KindNamespace:                      "v1",
	KindPod:                            "v1",
	KindService:                        "v1",
	KindDeployment:                     "apps/v1",
	KindNetworkPolicy:                  "networking.k8s.io/v1",
	KindCiliumNetworkPolicy:            "cilium.io/v2",
	KindCiliumClusterwideNetworkPolicy: "cilium.io/v2",
	KindCluster:                        "kind.x-k8s.io/v1alpha4",
	KindScenario:                       "podlab.io/v1alpha1",
	KindTopology:                       topo.SpecAPIVersion,
	KindCiliumLoadBalancerIPPool:       "cilium.io/v2",
	KindCiliumL2AnnouncementPolicy:     "cilium.io/v2alpha1",
	KindCiliumCIDRGroup:                "cilium.io/v2",
	KindCiliumEnvoyConfig:              "cilium.io/v2",
	KindCiliumClusterwideEnvoyConfig:   "cilium.io/v2",
}

// otherAPIVersions are further apiVersions a kind may carry.
var otherAPIVersions = map[string][]string{
	KindCiliumLoadBalancerIPPool: {"cilium.io/v2alpha1"},
	KindCiliumCIDRGroup:          {"cilium.io/v2alpha1"},
}

func supportedKinds() []string {
	kinds := make([]string, 0, len(apiVersions))
	for k, v := range apiVersions {
		kinds = append(kinds, v+" "+k)
	}
	sort.Strings(kinds)
	return kinds
}

// DefaultNamespace is the Kubernetes namespace of objects that name none.
const DefaultNamespace = "default"

// Source is where something was written in a scenario.
type Source struct {
	File string
	Line int
}

// String returns "file:line".
func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

func srcOf(d *decoder, n *yaml.Node) Source {
	if n == nil {
		return Source{File: d.file}
	}
	return Source{File: d.file, Line: n.Line}
}

// ObjectRef names one Kubernetes object. Namespace is empty for
// cluster-scoped kinds (Namespace, CiliumClusterwideNetworkPolicy).
type ObjectRef struct {
	Kind      string
	Namespace string
	Name      string
}

// String returns "Kind/name" or "Kind/namespace/name".
func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Object is any Kubernetes object of a scenario.
type Object interface {
	// Ref names the object.
	Ref() ObjectRef
	// Origin says where the object was written.
	Origin() Source
	document() *yaml.Node
}

// ObjectMeta is the part of metadata podlab uses.
type ObjectMeta struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// Namespace is a v1 Namespace.
type Namespace struct {
	Meta   ObjectMeta
	Source Source
	// node is the document, for locating fields in later checks.
	node *yaml.Node
}

// Ref implements Object.
func (n *Namespace) Ref() ObjectRef { return ObjectRef{Kind: KindNamespace, Name: n.Meta.Name} }

// Origin implements Object.
func (n *Namespace) Origin() Source { return n.Source }

func (n *Namespace) document() *yaml.Node { return n.node }

// LabelSelector is a Kubernetes label selector.
type LabelSelector struct {
	MatchLabels      map[string]string
	MatchExpressions []LabelRequirement
}

// LabelRequirement is one matchExpressions entry.
type LabelRequirement struct {
	Key string
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator string
	Values   []string
}

// Empty reports whether the selector selects everything.
func (s LabelSelector) Empty() bool { return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 }

// Matches reports whether labels satisfy the selector (an empty selector
// matches everything).
func (s LabelSelector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		}
	}
	return true
}

// String renders the selector as kubectl does (name=echo-a,tier in (a,b)).
func (s LabelSelector) String() string {
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case "In", "NotIn":
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(r.Operator), strings.Join(r.Values, ",")))
		case "Exists":
			parts = append(parts, r.Key)
		case "DoesNotExist":
			parts = append(parts, "!"+r.Key)
		}
	}
	if len(parts) == 0 {
		return "<all>"
	}
	return strings.Join(parts, ",")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// HostnameTopologyKey is the only topology key podlab's scheduler knows.
const HostnameTopologyKey = "kubernetes.io/hostname"

// AffinityTerm is a required pod affinity or anti-affinity term on
// kubernetes.io/hostname.
type AffinityTerm struct {
	// Anti is set for podAntiAffinity.
	Anti     bool
	Selector LabelSelector
	// Namespaces the selector applies to; empty means the pod's own.
	Namespaces []string
}

// Toleration is a pod toleration of a node taint.
type Toleration struct {
	Key      string
	Operator string // Equal (default) or Exists
	Value    string
	Effect   string // empty tolerates every effect
}

// Tolerates reports whether the toleration covers taint t.
func (tol Toleration) Tolerates(t Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Operator == "Exists" {
		return tol.Key == "" || tol.Key == t.Key
	}
	return tol.Key == t.Key && tol.Value == t.Value
}

// ContainerPort is a port a container declares.
type ContainerPort struct {
	Name          string
	ContainerPort int
	// Protocol is TCP, UDP or SCTP.
	Protocol string
	// HostPort, when set, exposes the port on the node's address.
	HostPort int
}

// Container is one container of a pod, mapped to a built-in workload.
type Container struct {
	Name  string
	Image string
	// Workload is the built-in workload that stands in for the image.
	Workload Workload
	Ports    []ContainerPort
	// Env holds the container's literal environment variables (env[].value;
	// valueFrom is not modelled).
	Env map[string]string
	// Probes are the container's readiness and liveness probes, translated.
	Probes []ContainerProbe
}

// PodSpec is the part of a pod spec podlab models.
type PodSpec struct {
	NodeName     string
	NodeSelector map[string]string
	HostNetwork  bool
	// ServiceAccount is serviceAccountName ("default" when not given);
	// Cilium labels the pod's identity with it.
	ServiceAccount string
	// DNSPolicy as written (ClusterFirst when empty).
	DNSPolicy   string
	Affinity    []AffinityTerm
	Tolerations []Toleration
	Containers  []Container
}

// Probes returns the translated probes of all containers.
func (s *PodSpec) Probes() []ContainerProbe {
	var out []ContainerProbe
	for _, c := range s.Containers {
		out = append(out, c.Probes...)
	}
	return out
}

// Ports returns the ports of all containers.
func (s *PodSpec) Ports() []ContainerPort {
	var out []ContainerPort
	for _, c := range s.Containers {
		out = append(out, c.Ports...)
	}
	return out
}

// Pod is a v1 Pod.
type Pod struct {
	Meta   ObjectMeta
	Spec   PodSpec
	Source Source
	// node is the document, for locating fields in later checks.
	node *yaml.Node
}

// Ref implements Object.
func (p *Pod) Ref() ObjectRef {
	return ObjectRef{Kind: KindPod, Namespace: p.Meta.Namespace, Name: p.Meta.Name}
}

// Origin implements Object.
func (p *Pod) Origin() Source { return p.Source }

func (p *Pod) document() *yaml.Node { return p.node }

// PodTemplate is a Deployment's pod template.
type PodTemplate struct {
	Labels      map[string]string
	Annotations map[string]string
	Spec        PodSpec
}

// Deployment is an apps/v1 Deployment.
type Deployment struct {
	Meta     ObjectMeta
	Replicas int
	Selector LabelSelector
	Template PodTemplate
	Source   Source
	// node is the document, for locating fields in later checks.
	node *yaml.Node
}

// Ref implements Object.
func (d *Deployment) Ref() ObjectRef {
	return ObjectRef{Kind: KindDeployment, Namespace: d.Meta.Namespace, Name: d.Meta.Name}
}

// Origin implements Object.
func (d *Deployment) Origin() Source { return d.Source }

func (d *Deployment) document() *yaml.Node { return d.node }

// Probes returns the probe expectations attached to the Deployment: the
// translated readiness/liveness probes of its containers. The runner reports
// the Deployment as passed when every one of them holds.
func (d *Deployment) Probes() []ContainerProbe { return d.Template.Spec.Probes() }

// ServiceType is ClusterIP, NodePort or LoadBalancer.
type ServiceType string

// Service types podlab models.
const (
	ServiceClusterIP    ServiceType = "ClusterIP"
	ServiceNodePort     ServiceType = "NodePort"
	ServiceLoadBalancer ServiceType = "LoadBalancer"
)

// HasNodePorts reports whether the type allocates node ports (NodePort,
// and LoadBalancer as Kubernetes does by default).
func (t ServiceType) HasNodePorts() bool { return t == ServiceNodePort || t == ServiceLoadBalancer }

// IntOrString is a port given by number or by name.
type IntOrString struct {
	Int int
	Str string
}

// IsNamed reports whether the value is a name.
func (v IntOrString) IsNamed() bool { return v.Str != "" }

// String returns the number or the name.
func (v IntOrString) String() string {
	if v.Str != "" {
		return v.Str
	}
	return fmt.Sprint(v.Int)
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string
	Protocol string
	Port     int
	// TargetPort defaults to Port.
	TargetPort IntOrString
	// NodePort is set for NodePort services (0: allocate).
	NodePort int
}

// Service is a v1 Service (ClusterIP, NodePort or headless).
type Service struct {
	Meta ObjectMeta
	Type ServiceType
	// ClusterIP is the requested address; invalid (zero) means allocate.
	ClusterIP netip.Addr
	// Headless is set for clusterIP: None.
	Headless bool
	// Selector selects the backend pods; nil means no endpoints are managed.
	Selector map[string]string
	Ports    []ServicePort
	// ExternalTrafficPolicy is Cluster (default) or Local.
	ExternalTrafficPolicy string
	// PublishNotReadyAddresses includes pods that are not ready.
	PublishNotReadyAddresses bool
	// LoadBalancerIPs are the addresses a LoadBalancer Service asks LB
	// IPAM for (spec.loadBalancerIP or the lbipam.cilium.io/ips
	// annotation); empty means any address of a pool that selects it.
	LoadBalancerIPs []netip.Addr
	// LoadBalancerIPsPath is the field they come from, for diagnostics.
	LoadBalancerIPsPath string
	// SharingKey is the lbipam.cilium.io/sharing-key annotation.
	SharingKey string
	// ExternalIPs are spec.externalIPs.
	ExternalIPs []netip.Addr
	Source      Source
	// node is the document, for locating fields in later checks.
	node *yaml.Node
}

// Ref implements Object.
func (s *Service) Ref() ObjectRef {
	return ObjectRef{Kind: KindService, Namespace: s.Meta.Namespace, Name: s.Meta.Name}
}

// Origin implements Object.
func (s *Service) Origin() Source { return s.Source }

func (s *Service) document() *yaml.Node { return s.node }

// Policy is a NetworkPolicy, CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy. Loading decodes it with datapath/policy
// (so a broken policy is rejected before anything runs) and keeps the
// result in Decoded; Node and File are kept for that package's later use.
type Policy struct {
	APIVersion string
	Kind       string
	Meta       ObjectMeta
	// Node is the whole document (a mapping node).
	Node    *yaml.Node
	File    string
	Decoded *policy.Policy
	Source  Source
}

// Ref implements Object.
func (p *Policy) Ref() ObjectRef {
	return ObjectRef{Kind: p.Kind, Namespace: p.Meta.Namespace, Name: p.Meta.Name}
}

// Origin implements Object.
func (p *Policy) Origin() Source { return p.Source }

func (p *Policy) document() *yaml.Node { return p.Node }

// Cluster is a kind Cluster config: the node list.
type Cluster struct {
	// Name is the cluster name (kind by default); it prefixes node names.
	Name  string
	Nodes []ClusterNode
	// PodSubnet/ServiceSubnet are set when networking gives them.
	PodSubnet     netip.Prefix
	ServiceSubnet netip.Prefix
	Source        Source
}

// ClusterNode is one node of a kind Cluster.
type ClusterNode struct {
	// Name is the node name, kind's (<cluster>-control-plane,
	// <cluster>-worker, <cluster>-worker2, ...) unless the document gives one.
	Name   string
	Role   string // control-plane or worker
	Labels map[string]string
}

// ContainerProbe is a readiness or liveness probe translated into an
// expectation: a request from the pod to Host:Port that must succeed (or,
// for the negated "! curl" form, fail).
type ContainerProbe struct {
	// Container is the container the probe belongs to.
	Container string
	// Uses lists readiness and/or liveness (identical probes are merged).
	Uses []string
	Check
	// Timeout is the probe's timeoutSeconds (0: Kubernetes' 1 s default
	// applies; ConnectTimeout/MaxTime of the command may be shorter).
	Timeout time.Duration
	// Command is the exec command as written (nil for httpGet/tcpSocket).
	Command []string
	Source  Source
}
