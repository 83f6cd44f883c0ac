package scenarios

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/internal/yamldiag"
)

// parsePeer reads a probe or flow endpoint:
//
//	world                          the world namespace
//	node/NODE                      a node
//	pod/[NS/]NAME                  a pod
//	deployment/[NS/]NAME           the pods of a Deployment
//	service/[NS/]NAME              a Service's ClusterIP
//	nodeport/NODE/[NS/]NAME        a NodePort Service on a node's address
//	loadbalancer/[NS/]NAME         a Service's (first) LoadBalancer IP
//	externalip/[NS/]NAME           a Service's first spec.externalIPs address
//	ip/ADDR or ADDR                an IPv4 address
//	dns/NAME or NAME.WITH.DOTS     a DNS name, resolved by the source
//	NAME                           a Deployment/Pod (or node) as source; as
//	                               target, a name resolved like curl does
func parsePeer(s string) (Peer, error) {
	p := Peer{Raw: s}
	if s == "" {
		return p, fmt.Errorf("empty name")
	}
	if s == "world" {
		p.Kind = PeerWorld
		return p, nil
	}
	prefix, rest, hasSlash := strings.Cut(s, "/")
	if !hasSlash {
		if a, err := netip.ParseAddr(s); err == nil {
			if !a.Is4() {
				return p, fmt.Errorf("not supported yet: IPv6 address %s", s)
			}
			p.Kind, p.IP = PeerIP, a
			return p, nil
		}
		if strings.Contains(s, ".") {
			p.Kind, p.Host = PeerDNSName, s
			return p, checkDNSName(s)
		}
		p.Name = s
		return p, nil
	}
	parts := strings.Split(rest, "/")
	for _, part := range parts {
		if part == "" {
			return p, fmt.Errorf("empty name in %q", s)
		}
	}
	nsName := func() error {
		switch len(parts) {
		case 1:
			p.Namespace, p.Name = DefaultNamespace, parts[0]
		case 2:
			p.Namespace, p.Name = parts[0], parts[1]
		default:
			return fmt.Errorf("expected %s/NAME or %s/NAMESPACE/NAME, got %q", prefix, prefix, s)
		}
		return nil
	}
	switch strings.ToLower(prefix) {
	case "pod", "po":
		p.Kind = PeerPod
		return p, nsName()
	case "deployment", "deploy":
		p.Kind = PeerDeployment
		return p, nsName()
	case "service", "svc":
		p.Kind = PeerService
		return p, nsName()
	case "loadbalancer", "lb":
		p.Kind = PeerLoadBalancer
		return p, nsName()
	case "externalip":
		p.Kind = PeerExternalIP
		return p, nsName()
	case "node":
		if len(parts) != 1 {
			return p, fmt.Errorf("expected node/NAME, got %q", s)
		}
		p.Kind, p.Node = PeerNode, parts[0]
		return p, nil
	case "nodeport":
		if len(parts) < 2 {
			return p, fmt.Errorf("expected nodeport/NODE/SERVICE or nodeport/NODE/NAMESPACE/SERVICE, got %q", s)
		}
		p.Kind, p.Node = PeerNodePort, parts[0]
		parts = parts[1:]
		return p, nsName()
	case "ip":
		a, err := netip.ParseAddr(rest)
		if err != nil || !a.Is4() {
			return p, fmt.Errorf("invalid IPv4 address %q", rest)
		}
		p.Kind, p.IP = PeerIP, a
		return p, nil
	case "dns":
		p.Kind, p.Host = PeerDNSName, rest
		return p, checkDNSName(rest)
	case "ns", "netns":
		if len(parts) != 1 {
			return p, fmt.Errorf("expected ns/NAME (a namespace of the topology), got %q", s)
		}
		p.Kind, p.Name = PeerNetns, parts[0]
		return p, nil
	}
	return p, fmt.Errorf("unknown peer %q; write world, node/NODE, pod/NAME, deployment/NAME, service/NAME, nodeport/NODE/SERVICE, loadbalancer/SERVICE, externalip/SERVICE, ip/ADDR, dns/NAME or (with a Topology) ns/NAME", s)
}

func checkDNSName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("invalid DNS name %q", s)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || !labelName.MatchString(label) || strings.Contains(label, "_") && label[0] != '_' {
			return fmt.Errorf("invalid DNS name %q", s)
		}
	}
	return nil
}

// nodeDevices are the devices of a node namespace a capture or fault may
// name.
var nodeDevices = []string{"eth0", "cilium_host", "cilium_net", "cilium_vxlan"}

// parseDevice reads a device name syntactically; nodes and pods are told
// apart when resolved.
//
//	NODE/DEVICE              a node's eth0, cilium_host, cilium_net, cilium_vxlan
//	POD/eth0                 a pod's (or a Deployment's pods') eth0
//	pod:NS/POD/eth0          the same, in another namespace
//	pod-veth:[NS/]POD        the host-side veth of a pod
//	world/eth0               the world namespace's eth0
func (sd *scenarioDecoder) parseDevice(n *yaml.Node, path string) (Device, bool) {
	d := sd.d
	if n == nil {
		d.errorf(nil, path, "expected a device name")
		return Device{}, false
	}
	raw := d.scalar(n, path)
	if raw == "" {
		return Device{}, false
	}
	dev := Device{Raw: raw}
	fail := func(format string, args ...any) (Device, bool) {
		d.errorf(n, path, format+"; devices are NODE/DEVICE (eth0, cilium_vxlan, cilium_host, cilium_net), POD/eth0, pod:NAMESPACE/POD/eth0, pod-veth:POD or world/eth0", args...)
		return Device{}, false
	}
	switch {
	case strings.HasPrefix(raw, "pod-veth:"):
		parts := strings.Split(strings.TrimPrefix(raw, "pod-veth:"), "/")
		dev.Kind = DevicePodVeth
		switch len(parts) {
		case 1:
			dev.Namespace, dev.Pod = DefaultNamespace, parts[0]
		case 2:
			dev.Namespace, dev.Pod = parts[0], parts[1]
		default:
			return fail("bad device %q", raw)
		}
	case strings.HasPrefix(raw, "pod:"):
		parts := strings.Split(strings.TrimPrefix(raw, "pod:"), "/")
		dev.Kind = DevicePod
		switch len(parts) {
		case 2:
			dev.Namespace, dev.Pod, dev.Name = DefaultNamespace, parts[0], parts[1]
		case 3:
			dev.Namespace, dev.Pod, dev.Name = parts[0], parts[1], parts[2]
		default:
			return fail("bad device %q", raw)
		}
	default:
		parts := strings.Split(raw, "/")
		if len(parts) != 2 {
			return fail("bad device %q", raw)
		}
		if parts[0] == "world" && sd.s.Topology == nil {
			dev.Kind, dev.Name = DeviceWorld, parts[1]
			if dev.Name != "eth0" {
				return fail("the world namespace has only eth0, not %q", dev.Name)
			}
			return dev, true
		}
		// Resolved later: a node device or a pod's eth0.
		dev.Node, dev.Name = parts[0], parts[1]
	}
	if dev.Pod == "" && dev.Node == "" {
		return fail("bad device %q", raw)
	}
	return dev, true
}

// resolveDevice checks a device against the cluster and the objects of the
// step (anyTime: against every object the scenario ever creates).
func (sd *scenarioDecoder) resolveDevice(st *state, dev *Device, n *yaml.Node, path string, anyTime bool) bool {
	d := sd.d
	if sd.s.Topology != nil {
		return sd.resolveRawDevice(dev, n, path)
	}
	if dev.Kind == "" {
		if sd.s.hasNode(dev.Node) {
			dev.Kind = DeviceNode
			if !contains(nodeDevices, dev.Name) {
				d.errorf(n, path, "node %s has no device %q; node devices: %s", dev.Node, dev.Name, strings.Join(nodeDevices, ", "))
				return false
			}
			return true
		}
		dev.Kind, dev.Namespace, dev.Pod, dev.Node = DevicePod, DefaultNamespace, dev.Node, ""
	}
	if dev.Kind == DeviceWorld || dev.Kind == DeviceNode {
		return true
	}
	if dev.Kind == DevicePod && dev.Name != "eth0" {
		d.errorf(n, path, "pods have only eth0 in podlab, not %q (nodes: %s)", dev.Name, strings.Join(sd.s.NodeNames(), ", "))
		return false
	}
	peer := Peer{Namespace: dev.Namespace, Name: dev.Pod, Raw: dev.Raw}
	if anyTime {
		st = st.everything()
	}
	if !st.resolveWorkload(d, &peer, n, path, true) {
		return false
	}
	dev.OwnerKind = KindPod
	if peer.Kind == PeerDeployment {
		dev.OwnerKind = KindDeployment
	}
	return true
}

// state is the set of objects that exist at a point of the step list.
type state struct {
	s       *Scenario
	objects map[ObjectRef]Object
	// all is every object the scenario ever has (for scenario-wide checks).
	all map[ObjectRef]Object
}

func newState(s *Scenario) *state {
	st := &state{s: s, objects: map[ObjectRef]Object{}, all: map[ObjectRef]Object{}}
	for _, o := range systemObjects(s.Cluster) {
		st.objects[o.Ref()] = o
	}
	for _, o := range s.Objects {
		st.all[o.Ref()] = o
		if !s.deferred[o.Ref()] {
			st.objects[o.Ref()] = o
		}
	}
	for _, st2 := range s.Steps {
		if st2.Apply != nil {
			for _, o := range st2.Apply.Objects {
				st.all[o.Ref()] = o
			}
		}
	}
	for r, o := range st.objects {
		st.all[r] = o
	}
	return st
}

// systemObjects are the objects every lab of cluster c has.
func systemObjects(c *Cluster) []Object {
	dep, svc := c.DNSObjects()
	return []Object{
		&Namespace{Meta: ObjectMeta{Name: DefaultNamespace}, Source: Source{File: "(built-in)"}},
		&Namespace{Meta: ObjectMeta{Name: ClusterDNSNamespace}, Source: Source{File: "(built-in)"}},
		dep, svc,
	}
}

// everything returns a state holding every object of the scenario.
func (st *state) everything() *state {
	return &state{s: st.s, objects: st.all, all: st.all}
}

func (st *state) apply(d *decoder, o Object, n *yaml.Node, path string) {
	ref := o.Ref()
	if ref.Namespace != "" {
		if _, ok := st.objects[ObjectRef{Kind: KindNamespace, Name: ref.Namespace}]; !ok {
			d.errorf(n, path, "namespace %q does not exist at this step; apply a Namespace first", ref.Namespace)
		}
	}
	st.objects[ref] = o
}

// names lists existing objects of a kind for hints.
func (st *state) names(kind string) []string {
	var out []string
	for r := range st.objects {
		if r.Kind == kind && r.Namespace != ClusterDNSNamespace {
			if r.Namespace == DefaultNamespace || r.Namespace == "" {
				out = append(out, r.Name)
			} else {
				out = append(out, r.Namespace+"/"+r.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// hint suggests what exists: "; Deployments: a, b".
func (st *state) hint(kind, name string) string {
	names := st.names(kind)
	if len(names) == 0 {
		return fmt.Sprintf("; there are no %ss", kind)
	}
	if s := yamldiag.Suggest(name, names); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return fmt.Sprintf("; %ss: %s", kind, strings.Join(names, ", "))
}

func (st *state) has(kind, ns, name string) bool {
	_, ok := st.objects[ObjectRef{Kind: kind, Namespace: ns, Name: name}]
	return ok
}

// resolveWorkload resolves a pod or Deployment peer (bare names: a
// Deployment first, then a Pod).
func (st *state) resolveWorkload(d *decoder, p *Peer, n *yaml.Node, path string, allowDeployment bool) bool {
	if p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	switch p.Kind {
	case PeerPod:
		if !st.has(KindPod, p.Namespace, p.Name) {
			d.errorf(n, path, "no Pod %s/%s at this step%s", p.Namespace, p.Name, st.hint(KindPod, p.Name))
			return false
		}
		return true
	case PeerDeployment:
		if !st.has(KindDeployment, p.Namespace, p.Name) {
			d.errorf(n, path, "no Deployment %s/%s at this step%s", p.Namespace, p.Name, st.hint(KindDeployment, p.Name))
			return false
		}
		return true
	case "":
		dep := allowDeployment && st.has(KindDeployment, p.Namespace, p.Name)
		pod := st.has(KindPod, p.Namespace, p.Name)
		switch {
		case dep && pod:
			d.errorf(n, path, "%q names both a Deployment and a Pod; write deployment/%s or pod/%s", p.Name, p.Name, p.Name)
			return false
		case dep:
			p.Kind = PeerDeployment
			return true
		case pod:
			p.Kind = PeerPod
			return true
		}
		all := append(st.names(KindDeployment), st.names(KindPod)...)
		msg := fmt.Sprintf("no Deployment or Pod named %q at this step", p.Name)
		if s := yamldiag.Suggest(p.Name, all); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else if len(all) > 0 {
			msg += "; there are: " + strings.Join(all, ", ")
		}
		d.errorf(n, path, "%s", msg)
		return false
	}
	d.errorf(n, path, "expected a Pod or Deployment, got %s", p.Raw)
	return false
}

// resolveSource resolves a probe's from.
func (st *state) resolveSource(d *decoder, p *Peer, n *yaml.Node, path string) {
	if st.s.Topology != nil {
		st.resolveRawPeer(d, p, n, path, false)
		return
	}
	switch p.Kind {
	case PeerWorld:
	case PeerNode:
		st.checkNode(d, p.Node, n, path)
	case PeerPod, PeerDeployment:
		st.resolveWorkload(d, p, n, path, true)
	case "":
		if st.s.hasNode(p.Name) && !st.has(KindDeployment, DefaultNamespace, p.Name) && !st.has(KindPod, DefaultNamespace, p.Name) {
			p.Kind, p.Node, p.Name = PeerNode, p.Name, ""
			return
		}
		st.resolveWorkload(d, p, n, path, true)
	default:
		d.errorf(n, path, "a probe is sent from a pod, a deployment, node/NODE or world, not %s", p.Raw)
	}
}

func (st *state) checkNode(d *decoder, node string, n *yaml.Node, path string) bool {
	if st.s.hasNode(node) {
		return true
	}
	d.errorf(n, path, "unknown node %q; nodes: %s", node, strings.Join(st.s.NodeNames(), ", "))
	return false
}

// resolveObjectPeer checks a service, deployment or pod reference.
func (st *state) resolveObjectPeer(d *decoder, p *Peer, n *yaml.Node, path string) bool {
	switch p.Kind {
	case PeerService:
		if !st.has(KindService, p.Namespace, p.Name) {
			d.errorf(n, path, "no Service %s/%s at this step%s", p.Namespace, p.Name, st.hint(KindService, p.Name))
			return false
		}
		return true
	case PeerPod, PeerDeployment:
		return st.resolveWorkload(d, p, n, path, true)
	}
	return true
}

// serviceForName finds the Service a cluster DNS name designates from
// namespace ns ("echo-a", "echo-a.other", "echo-a.other.svc.cluster.local").
// ok is false when the name is not a cluster name.
func serviceForName(name, ns string) (ref ObjectRef, ok bool) {
	name = strings.TrimSuffix(name, ".")
	name = strings.TrimSuffix(name, "."+ClusterDomain)
	name = strings.TrimSuffix(name, ".svc")
	parts := strings.Split(name, ".")
	switch len(parts) {
	case 1:
		return ObjectRef{Kind: KindService, Namespace: ns, Name: parts[0]}, true
	case 2:
		return ObjectRef{Kind: KindService, Namespace: parts[1], Name: parts[0]}, true
	}
	return ObjectRef{}, false
}

// resolveTarget checks a probe's to.
func (st *state) resolveTarget(d *decoder, pr *ProbeStep, n *yaml.Node, path string) {
	p := &pr.To
	failing := pr.Expect != ExpectSuccess
	if st.s.Topology != nil {
		st.resolveRawPeer(d, p, n, path, true)
		return
	}
	switch p.Kind {
	case PeerWorld:
		d.errorf(n, path, "to: world is ambiguous; name a world host by IP (ip/1.1.1.1) or DNS name")
	case PeerNode:
		st.checkNode(d, p.Node, n, path)
	case PeerPod, PeerDeployment, PeerService:
		st.resolveObjectPeer(d, p, n, path)
	case PeerNodePort:
		if !st.checkNode(d, p.Node, n, path) {
			return
		}
		o, ok := st.objects[ObjectRef{Kind: KindService, Namespace: p.Namespace, Name: p.Name}]
		if !ok {
			d.errorf(n, path, "no Service %s/%s at this step%s", p.Namespace, p.Name, st.hint(KindService, p.Name))
			return
		}
		if svc := o.(*Service); !svc.Type.HasNodePorts() {
			d.errorf(n, path, "Service %s/%s is of type %s, not NodePort or LoadBalancer", p.Namespace, p.Name, svc.Type)
		}
	case PeerLoadBalancer, PeerExternalIP:
		o, ok := st.objects[ObjectRef{Kind: KindService, Namespace: p.Namespace, Name: p.Name}]
		if !ok {
			d.errorf(n, path, "no Service %s/%s at this step%s", p.Namespace, p.Name, st.hint(KindService, p.Name))
			return
		}
		svc := o.(*Service)
		if p.Kind == PeerLoadBalancer && svc.Type != ServiceLoadBalancer {
			d.errorf(n, path, "Service %s/%s is of type %s, not LoadBalancer", p.Namespace, p.Name, svc.Type)
		}
		if p.Kind == PeerExternalIP && len(svc.ExternalIPs) == 0 {
			d.errorf(n, path, "Service %s/%s has no spec.externalIPs", p.Namespace, p.Name)
		}
	case PeerIP:
	case "", PeerDNSName:
		host := p.Name
		if p.Kind == PeerDNSName {
			host = p.Host
		}
		srcNS := ""
		switch pr.From.Kind {
		case PeerPod, PeerDeployment:
			srcNS = pr.From.Namespace
		case "":
			return // the source is already reported as unknown
		}
		ref, cluster := serviceForName(host, srcNS)
		if p.Kind == "" {
			p.Kind, p.Host, p.Name, p.Namespace = PeerDNSName, host, "", ""
			if srcNS == "" {
				d.errorf(n, path, "%q is resolved through the cluster DNS search path, which only pods have; write service/%s, ip/ADDR or a full DNS name", host, host)
				return
			}
		}
		if !cluster || srcNS == "" && !strings.HasSuffix(strings.TrimSuffix(host, "."), ".svc."+ClusterDomain) {
			return // a world name, answered by the emulated world
		}
		if ref.Namespace == "" || !st.has(KindNamespace, "", ref.Namespace) {
			return // "example.com": not a namespace, so a world name
		}
		if _, ok := st.objects[ref]; !ok && !failing {
			d.errorf(n, path, "%q names no Service at this step (looked for %s/%s)%s; write pod/…, deployment/…, node/… or ip/… for other targets, or expect: nxdomain",
				host, ref.Namespace, ref.Name, st.hint(KindService, ref.Name))
		}
	}
}

// resolveFlowPeer checks an endpoint of a flow assertion.
func (st *state) resolveFlowPeer(d *decoder, p *Peer, n *yaml.Node, path string) {
	switch p.Kind {
	case PeerWorld, PeerIP, PeerDNSName:
	case PeerNode:
		st.checkNode(d, p.Node, n, path)
	case PeerNodePort, PeerLoadBalancer, PeerExternalIP:
		d.errorf(n, path, "flows are between endpoints; name the Service (service/NAME) or its pods")
	case "":
		if st.s.hasNode(p.Name) {
			p.Kind, p.Node, p.Name = PeerNode, p.Name, ""
			return
		}
		if p.Namespace == "" {
			p.Namespace = DefaultNamespace
		}
		if st.has(KindService, p.Namespace, p.Name) && !st.has(KindDeployment, p.Namespace, p.Name) && !st.has(KindPod, p.Namespace, p.Name) {
			p.Kind = PeerService
			return
		}
		st.resolveWorkload(d, p, n, path, true)
	default:
		st.resolveObjectPeer(d, p, n, path)
	}
}

// NodeNames returns the names of the scenario's nodes, in cluster order.
func (s *Scenario) NodeNames() []string {
	var out []string
	for _, n := range s.Cluster.Nodes {
		out = append(out, n.Name)
	}
	return out
}

func (s *Scenario) hasNode(name string) bool {
	if s.Cluster == nil {
		return false
	}
	for _, n := range s.Cluster.Nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

// check runs the reference checks in step order.
func (sd *scenarioDecoder) check() {
	st := newState(sd.s)
	for _, c := range sd.checks {
		c(st)
	}
}
