// Package controlplane is the lab's Cilium-agent role: it loads the BPF
// datapath on every node, allocates identities from pod labels, keeps every
// node's ipcache in sync, compiles policies into each endpoint's policy map
// (incrementally, without reloading programs) and merges the nodes' events.
// It plugs into the cluster model as a topo.ClusterHook.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podlab/podlab/datapath"
	"github.com/podlab/podlab/datapath/cilium"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/topo"
)

// Options tune the control plane.
type Options struct {
	Log *slog.Logger
	// ConntrackSize per node (0: the datapath's default).
	ConntrackSize int
	// AllowLocalhost lets the host identity into policy-enforced endpoints
	// (Cilium's default, and what kubelet probes need).
	AllowLocalhost bool
	// Attach is "netlink" (the default: a clsact qdisc and direct-action
	// bpf filters) or "tcx" (pinned BPF links). tcx costs a kernel RCU
	// grace period per attachment and per detachment (about 14 ms and
	// 9 ms, serialised by RTNL); netlink attaches in tens of microseconds,
	// which makes a 300-pod lab come up in well under a second instead of
	// about 9 s (docs/benchmarks.md).
	Attach string
	// MonitorAggregation traces only the packets that open, answer or
	// close a connection (Cilium's default "medium" aggregation) instead
	// of every forwarded packet; drops and policy verdicts are always
	// reported.
	MonitorAggregation bool
	// ServiceCIDR is the cluster's service range (zero:
	// topo.DefaultServiceCIDR): the nodes route it to the datapath.
	ServiceCIDR netip.Prefix
	// Datapath is "bpf" (podlab's own programs, the default) or "cilium"
	// (Cilium's production programs, compiled from CiliumVersion or the
	// checkout CiliumSrc).
	Datapath                 string
	CiliumVersion, CiliumSrc string
}

// AttachModes are the values Options.Attach accepts, the default first
// ("" means the default).
var AttachModes = []string{"netlink", "tcx"}

// ControlPlane drives the datapath of every node of one lab.
type ControlPlane struct {
	lab  string
	opts Options
	log  *slog.Logger

	alloc *identity.Allocator
	repo  *policy.Repository

	mu       sync.Mutex
	nodes    map[string]*node
	order    []string
	eps      map[string]*endpoint // by pod key
	nsLabels map[string]map[string]string
	cidrs    map[netip.Prefix]identity.ID // pushed to the ipcaches
	policies map[string]policy.EndpointPolicy
	lb       lbState // services and hostPorts (services.go)
	l2       l2State // L2 announcement leases (l2announce.go)
	closed   bool
	index    resolverIndex // lock-free answers for the flow decoder (events.go)
	// l7store receives the L7 proxies' flows while events run.
	l7store  atomic.Pointer[flow.Store]
	dnsTimer *time.Timer // next expiry of a DNS-learned address (fqdn.go)

	builderMu sync.Mutex
	builder   *cilium.Builder // --datapath cilium: compiled objects
}

type node struct {
	n     *topo.Node
	dp    NodeDatapath
	proxy *nodeProxy
}

type endpoint struct {
	pod    *topo.Pod
	id     identity.ID
	labels identity.Labels
}

// New returns a control plane for lab.
func New(lab string, o Options) *ControlPlane {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	alloc := identity.NewAllocator()
	return &ControlPlane{
		lab: lab, opts: o, log: o.Log, alloc: alloc, repo: policy.NewRepository(alloc),
		nodes: map[string]*node{}, eps: map[string]*endpoint{}, nsLabels: map[string]map[string]string{},
		cidrs: map[netip.Prefix]identity.ID{}, policies: map[string]policy.EndpointPolicy{},
	}
}

var _ topo.ClusterHook = (*ControlPlane)(nil)

// NodeAdded loads the datapath into a node and fills its ipcache with what
// is already known.
func (cp *ControlPlane) NodeAdded(ctx context.Context, c *topo.Cluster, n *topo.Node) error {
	dp, err := cp.loadBackend(ctx, n, c.Phases)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.nodes[n.Name] = &node{n: n, dp: dp, proxy: cp.newNodeProxy(n, dp)}
	// Nodes load at once: keep them in the cluster's order.
	at := sort.Search(len(cp.order), func(i int) bool { return cp.nodes[cp.order[i]].n.Index > n.Index })
	cp.order = slices.Insert(cp.order, at, n.Name)
	cp.reindexLocked()
	return errors.Join(cp.syncIPCacheLocked(), cp.syncServicesLocked())
}

// ipcacheEntry is one prefix of the cluster-wide ipcache.
type ipcacheEntry struct {
	id identity.ID
	// tunnel is the node behind which the prefix lives (zero: local or
	// outside the cluster).
	tunnel netip.Addr
	// node is set for node addresses: identity host on that node,
	// remote-node elsewhere.
	node string
}

// desiredIPCache computes the ipcache every node should hold.
func (cp *ControlPlane) desiredIPCache() map[netip.Prefix]ipcacheEntry {
	want := map[netip.Prefix]ipcacheEntry{
		netip.MustParsePrefix("0.0.0.0/0"): {id: identity.World},
	}
	for p, id := range cp.cidrs {
		want[p] = ipcacheEntry{id: id}
	}
	for _, name := range cp.order {
		n := cp.nodes[name].n
		want[netip.PrefixFrom(n.IP, 32)] = ipcacheEntry{id: identity.RemoteNode, node: n.Name}
		want[netip.PrefixFrom(n.RouterIP, 32)] = ipcacheEntry{id: identity.RemoteNode, node: n.Name}
	}
	for _, ep := range cp.eps {
		if ep.pod.HostNetwork {
			continue
		}
		want[netip.PrefixFrom(ep.pod.IP, 32)] = ipcacheEntry{id: ep.id, tunnel: ep.pod.Node.IP, node: ""}
	}
	return want
}

// syncIPCacheLocked writes the desired ipcache into every node (upserts
// only what the node should hold; stale prefixes are removed by
// removePrefixLocked).
func (cp *ControlPlane) syncIPCacheLocked() error {
	want := cp.desiredIPCache()
	var errs []error
	for _, name := range cp.order {
		nd := cp.nodes[name]
		for p, e := range want {
			id, tunnel := e.id, e.tunnel
			if e.node == name {
				id = identity.Host
			}
			if tunnel == nd.n.IP {
				tunnel = netip.Addr{} // local pod
			}
			if err := nd.dp.UpsertIPCache(p, id, tunnel); err != nil {
				errs = append(errs, fmt.Errorf("ipcache %s on %s: %w", p, name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (cp *ControlPlane) removePrefixLocked(p netip.Prefix) error {
	var errs []error
	for _, name := range cp.order {
		if err := cp.nodes[name].dp.DeleteIPCache(p); err != nil {
			errs = append(errs, fmt.Errorf("ipcache delete %s on %s: %w", p, name, err))
		}
	}
	return errors.Join(errs...)
}

// PodAdded allocates the pod's identity, makes it an endpoint of its node,
// announces it in every ipcache and recomputes policies.
func (cp *ControlPlane) PodAdded(ctx context.Context, c *topo.Cluster, p *topo.Pod) error {
	if p.HostNetwork {
		return nil // host identity, no endpoint of its own
	}
	start := time.Now()
	cp.mu.Lock()
	nd := cp.nodes[p.Node.Name]
	if nd == nil {
		cp.mu.Unlock()
		return fmt.Errorf("pod %s: node %s has no datapath", p.Key(), p.Node.Name)
	}
	labels := identity.K8sLabels(p.Namespace, p.Labels, cp.nsLabelsLocked(p.Namespace), p.ServiceAccount)
	id, err := cp.alloc.Allocate(labels)
	if err != nil {
		cp.mu.Unlock()
		return fmt.Errorf("identity of %s: %w", p.Key(), err)
	}
	ep := &endpoint{pod: p, id: id, labels: labels}
	// Policy first, so the endpoint is never reachable unjudged. Only a
	// new identity can change what other endpoints' rules select; a pod
	// joining an existing identity needs its own policy computed only.
	cp.eps[p.Key()] = ep
	var perr error
	// (Named ports are resolved per peer identity, so a pod that brings
	// named ports also counts as a change for the others.)
	if (cp.alloc.References(id) == 1 || len(namedPorts(p)) > 0) && len(cp.repo.List()) > 0 {
		perr = cp.recomputeLocked()
	} else {
		perr = cp.recomputeSomeLocked(map[string]bool{p.Key(): true})
	}
	cp.mu.Unlock()
	c.Phases.Since("pods.datapath.policy", start)
	if perr != nil {
		return perr
	}
	// Attaching programs (the slow part) runs outside the lock, so pods of
	// different nodes come up in parallel.
	start = time.Now()
	defer c.Phases.Since("pods.datapath.attach+ipcache", start)
	if err := nd.dp.AddEndpoint(datapath.Endpoint{ID: p.EndpointID, IP: p.IP, Ifindex: p.HostIfindex, MAC: p.MAC, HostMAC: p.HostMAC, Identity: id}); err != nil {
		cp.mu.Lock()
		delete(cp.eps, p.Key())
		_, _ = cp.alloc.Release(id)
		cp.mu.Unlock()
		return fmt.Errorf("endpoint %s: %w", p.Key(), err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.indexEndpointLocked(ep)
	return errors.Join(cp.announcePodLocked(p, id), cp.hostPortsChangedLocked(p, true))
}

// announcePodLocked writes one pod's /32 into every node's ipcache: its
// identity, and its node as tunnel endpoint on the other nodes.
func (cp *ControlPlane) announcePodLocked(p *topo.Pod, id identity.ID) error {
	var errs []error
	prefix := netip.PrefixFrom(p.IP, 32)
	for _, name := range cp.order {
		tunnel := p.Node.IP
		if name == p.Node.Name {
			tunnel = netip.Addr{}
		}
		if err := cp.nodes[name].dp.UpsertIPCache(prefix, id, tunnel); err != nil {
			errs = append(errs, fmt.Errorf("ipcache %s on %s: %w", prefix, name, err))
		}
	}
	return errors.Join(errs...)
}

// PodRemoved withdraws the pod from every ipcache, removes its endpoint
// and releases its identity.
func (cp *ControlPlane) PodRemoved(ctx context.Context, c *topo.Cluster, p *topo.Pod) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	ep := cp.eps[p.Key()]
	if ep == nil {
		return nil
	}
	delete(cp.eps, p.Key())
	delete(cp.policies, p.Key())
	cp.reindexLocked()
	var errs []error
	errs = append(errs, cp.removePrefixLocked(netip.PrefixFrom(p.IP, 32)), cp.hostPortsChangedLocked(p, false))
	if nd := cp.nodes[p.Node.Name]; nd != nil {
		if err := nd.dp.RemoveEndpoint(datapath.Endpoint{ID: p.EndpointID, IP: p.IP, Ifindex: p.HostIfindex, MAC: p.MAC, HostMAC: p.HostMAC, Identity: ep.id}); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := cp.alloc.Release(ep.id); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cp.recomputeLocked())
	return errors.Join(errs...)
}

func (cp *ControlPlane) nsLabelsLocked(ns string) map[string]string {
	l := map[string]string{"kubernetes.io/metadata.name": ns}
	for k, v := range cp.nsLabels[ns] {
		l[k] = v
	}
	return l
}

// SetNamespaceLabels records a Kubernetes namespace's labels; call it
// before the namespace's pods are added.
func (cp *ControlPlane) SetNamespaceLabels(ns string, labels map[string]string) {
	cp.mu.Lock()
	cp.nsLabels[ns] = labels
	cp.mu.Unlock()
}

// ApplyPolicy adds or replaces a policy and updates every endpoint's
// policy map incrementally.
func (cp *ControlPlane) ApplyPolicy(p *policy.Policy) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if _, err := cp.repo.Upsert(p); err != nil {
		return err
	}
	return cp.recomputeLocked()
}

// DeletePolicy removes a policy.
func (cp *ControlPlane) DeletePolicy(k policy.Key) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if _, err := cp.repo.Delete(k); err != nil {
		return err
	}
	return cp.recomputeLocked()
}

// SetCIDRGroup adds or replaces a CiliumCIDRGroup; policies that name it
// (cidrGroupRef, cidrGroupSelector) are recompiled.
func (cp *ControlPlane) SetCIDRGroup(g policy.CIDRGroup) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	changed, err := cp.repo.SetCIDRGroup(g)
	if err != nil || !changed {
		return err
	}
	return cp.recomputeLocked()
}

// DeleteCIDRGroup removes a CiliumCIDRGroup.
func (cp *ControlPlane) DeleteCIDRGroup(name string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	changed, err := cp.repo.DeleteCIDRGroup(name)
	if err != nil || !changed {
		return err
	}
	return cp.recomputeLocked()
}

// Policies lists the policies in force.
func (cp *ControlPlane) Policies() []*policy.Policy { return cp.repo.List() }

// recomputeLocked pushes CIDR identities to the ipcaches and recompiles
// every endpoint's policy; the datapath applies only the difference.
func (cp *ControlPlane) recomputeLocked() error { return cp.recomputeSomeLocked(nil) }

// recomputeSomeLocked is recomputeLocked limited to the endpoints in only
// (nil: every endpoint).
func (cp *ControlPlane) recomputeSomeLocked(only map[string]bool) error {
	cp.forgetIdentityLabels() // fqdn: labels follow the policies
	var errs []error
	want := cp.repo.CIDRPrefixes()
	for p := range cp.cidrs {
		if _, ok := want[p]; !ok {
			delete(cp.cidrs, p)
			errs = append(errs, cp.removePrefixLocked(p))
		}
	}
	changed := false
	for p, id := range want {
		if cp.cidrs[p] != id {
			cp.cidrs[p] = id
			changed = true
		}
	}
	if changed {
		errs = append(errs, cp.syncIPCacheLocked())
	}
	table := cp.alloc.Snapshot()
	peerPorts := map[identity.ID][]policy.NamedPort{}
	for _, ep := range cp.eps {
		peerPorts[ep.id] = append(peerPorts[ep.id], namedPorts(ep.pod)...)
	}
	comp := cp.repo.Compiler(table, policy.CompileOptions{PeerPorts: peerPorts, AllowLocalhost: cp.opts.AllowLocalhost})
	for key, ep := range cp.eps {
		if only != nil && !only[key] {
			continue
		}
		pol := comp.Compile(policy.Endpoint{Namespace: ep.pod.Namespace, Name: ep.pod.Name, Labels: ep.labels, Identity: ep.id, NamedPorts: namedPorts(ep.pod)})
		nd := cp.nodes[ep.pod.Node.Name]
		if nd == nil {
			continue
		}
		pol, err := cp.withProxyPortsLocked(nd, pol)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy of %s: %w", key, err))
			continue
		}
		if err := nd.dp.SetPolicy(ep.pod.EndpointID, pol); err != nil {
			errs = append(errs, fmt.Errorf("policy of %s: %w", key, err))
			continue
		}
		cp.policies[key] = pol
	}
	cp.syncProxyEndpointsLocked()
	return errors.Join(errs...)
}

func namedPorts(p *topo.Pod) []policy.NamedPort {
	var out []policy.NamedPort
	for _, cport := range p.Ports {
		if cport.Name == "" {
			continue
		}
		out = append(out, policy.NamedPort{Name: cport.Name, Port: cport.Port, Proto: policy.PortProto(cport.Protocol)})
	}
	return out
}

// EndpointInfo describes one endpoint for status commands.
type EndpointInfo struct {
	Pod      *topo.Pod
	Identity identity.ID
	Labels   identity.Labels
	Policy   policy.EndpointPolicy
}

// Endpoints lists the endpoints sorted by pod key.
func (cp *ControlPlane) Endpoints() []EndpointInfo {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []EndpointInfo
	for k, ep := range cp.eps {
		out = append(out, EndpointInfo{Pod: ep.pod, Identity: ep.id, Labels: ep.labels, Policy: cp.policies[k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod.Key() < out[j].Pod.Key() })
	return out
}

// IdentityOf returns the identity of a pod.
func (cp *ControlPlane) IdentityOf(podKey string) (identity.ID, bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	ep := cp.eps[podKey]
	if ep == nil {
		return 0, false
	}
	return ep.id, true
}

// Identities returns a snapshot of the identity table.
func (cp *ControlPlane) Identities() *identity.Table { return cp.alloc.Snapshot() }

// Datapath returns a node's podlab datapath (nil if unknown or when the
// node runs another backend).
func (cp *ControlPlane) Datapath(nodeName string) *datapath.Datapath {
	dp, _ := cp.NodeDatapath(nodeName).(*datapath.Datapath)
	return dp
}

// NodeDatapath returns a node's datapath backend (nil if unknown).
func (cp *ControlPlane) NodeDatapath(nodeName string) NodeDatapath {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if nd := cp.nodes[nodeName]; nd != nil {
		return nd.dp
	}
	return nil
}

// DatapathName returns the backend the control plane loads ("bpf" or
// "cilium").
func (cp *ControlPlane) DatapathName() string {
	if cp.opts.Datapath == "" {
		return "bpf"
	}
	return cp.opts.Datapath
}

// Nodes returns the node names in creation order.
func (cp *ControlPlane) Nodes() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.order...)
}

// Reload reloads the programs of every node, keeping maps (and so
// connections) as an agent upgrade does.
func (cp *ControlPlane) Reload() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var errs []error
	for _, name := range cp.order {
		if err := cp.nodes[name].dp.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("reload %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ReloadNode reloads one node's programs (every node when name is empty),
// keeping its pinned maps and so its connections.
func (cp *ControlPlane) ReloadNode(name string) error {
	if name == "" {
		return cp.Reload()
	}
	dp := cp.NodeDatapath(name)
	if dp == nil {
		return fmt.Errorf("no node %q", name)
	}
	if err := dp.Reload(); err != nil {
		return fmt.Errorf("reload %s: %w", name, err)
	}
	return nil
}

// Close detaches and unpins every node's datapath.
func (cp *ControlPlane) Close() error {
	cp.stopLeaseWatch()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.closed {
		return nil
	}
	cp.closed = true
	if cp.dnsTimer != nil {
		cp.dnsTimer.Stop()
	}
	var errs []error
	for _, name := range cp.order {
		if err := cp.nodes[name].proxy.close(); err != nil {
			errs = append(errs, err)
		}
		if err := cp.nodes[name].dp.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
