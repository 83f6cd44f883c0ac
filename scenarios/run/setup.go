package run

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"
)

// setup builds the lab and creates the scenario's initial objects.
func (r *Runner) setup(ctx context.Context, datapath string) error {
	if svc := externalService(r.s); svc != nil && datapath != "bpf" && datapath != "cilium" {
		return fmt.Errorf("%s: Service %s/%s: LoadBalancer IPs and externalIPs need a datapath that serves them; --datapath %s has none (use --datapath bpf)", svc.Source, svc.Meta.Namespace, svc.Meta.Name, datapath)
	}
	if r.s.Topology != nil {
		return r.setupRaw(ctx)
	}
	nodes := r.s.Cluster.NodeSpecs()
	l, err := lab.Up(ctx, lab.Options{Name: r.o.Lab, Nodes: nodes, PodSubnet: r.s.Cluster.PodSubnet, ServiceSubnet: r.s.Cluster.ServiceSubnet, Datapath: datapath, CiliumVersion: r.o.CiliumVersion, CiliumSrc: r.o.CiliumSrc, Attach: r.o.Attach, Source: strings.Join(r.s.Files, ","), Log: r.o.Log, Progress: r.o.Progress})
	if err != nil {
		return err
	}
	r.lab, r.cp = l, l.ControlPlane
	if r.cp != nil {
		pump, err := r.cp.StartEvents(ctx, r.store)
		if err != nil {
			return err
		}
		r.pump = pump
	}
	// The emulated internet: well-known names at their real addresses,
	// every other public name at a world address, one web server (HTTP
	// and HTTPS with the lab CA) answering for all of them.
	r.records.AddWorldHosts(workload.DefaultWorldHosts())
	r.records.SetInternet(true)
	w, err := workload.StartInternet(ctx, l.Cluster.World, workload.InternetConfig{CA: l.CA})
	if err != nil {
		return fmt.Errorf("emulated internet: %w", err)
	}
	r.closers = append(r.closers, w.Close)
	// Namespaces first: their labels feed identities.
	if r.cp != nil {
		for _, ns := range r.s.Namespaces {
			r.cp.SetNamespaceLabels(ns.Meta.Name, ns.Meta.Labels)
		}
	}
	// CIDR groups and policies before pods, so no pod is ever reachable
	// unjudged.
	for _, o := range r.s.InitialObjects() {
		if g, ok := o.(*scenarios.CIDRGroup); ok && r.cp != nil {
			if err := r.cp.SetCIDRGroup(g.Group()); err != nil {
				return err
			}
		}
	}
	for _, o := range r.s.InitialObjects() {
		if e, ok := o.(*scenarios.EnvoyConfig); ok {
			if err := r.applyEnvoyConfig(e); err != nil {
				return err
			}
		}
	}
	for _, o := range r.s.InitialObjects() {
		if p, ok := o.(*scenarios.Policy); ok {
			if err := r.applyPolicy(p); err != nil {
				return err
			}
		}
	}
	placements, err := r.sched.Place(r.s.PodInstances(r.names))
	if err != nil {
		return err
	}
	if err := r.createPods(ctx, placements); err != nil {
		return err
	}
	if r.o.Progress != nil {
		r.o.Progress(fmt.Sprintf("Creating pods (%d) and their workloads 🐳", len(placements)))
	}
	for _, o := range r.s.InitialObjects() {
		if svc, ok := o.(*scenarios.Service); ok {
			if err := r.applyService(svc); err != nil {
				return err
			}
		}
	}
	dnsDep, dnsSvc := r.s.Cluster.DNSObjects()
	if r.services[dnsSvc.Meta.Namespace+"/"+dnsSvc.Meta.Name] == nil {
		if err := r.applyService(dnsSvc); err != nil {
			return err
		}
	}
	if r.cp == nil {
		// Without a datapath nothing translates the kube-dns ClusterIP:
		// pods and `podlab exec` ask the DNS pod itself.
		if ps := r.podsOf(dnsSvc.Meta.Namespace, dnsDep.Meta.Name, "Deployment"); len(ps) > 0 {
			r.dnsIP = ps[0].pod.IP
			if err := l.SetDNSServer(r.dnsIP); err != nil {
				return err
			}
		}
	}
	if err := l.SaveState(); err != nil {
		return err
	}
	for _, d := range r.s.Captures {
		cs, err := r.startCaptures(ctx, d)
		if err != nil {
			return err
		}
		r.captures = append(r.captures, cs...)
	}
	return nil
}

func (r *Runner) applyPolicy(p *scenarios.Policy) error {
	if r.cp == nil {
		return nil // datapath none: no policy
	}
	if p.Decoded == nil {
		return fmt.Errorf("%s: policy %s was not decoded", p.Source, p.Meta.Name)
	}
	if err := r.cp.ApplyPolicy(p.Decoded); err != nil {
		return fmt.Errorf("%s: apply %s %s: %w", p.Source, p.Kind, p.Meta.Name, err)
	}
	return nil
}

// applyEnvoyConfig applies a CiliumEnvoyConfig or
// CiliumClusterwideEnvoyConfig to the control plane.
func (r *Runner) applyEnvoyConfig(e *scenarios.EnvoyConfig) error {
	if r.cp == nil {
		return fmt.Errorf("%s: %s: not supported yet: Envoy configs without a datapath (--datapath none)", e.Source, e.Ref())
	}
	if e.Decoded == nil {
		return fmt.Errorf("%s: %s was not decoded", e.Source, e.Ref())
	}
	if err := r.cp.SetEnvoyConfig(e.Decoded); err != nil {
		return fmt.Errorf("%s: apply %s: %w", e.Source, e.Ref(), err)
	}
	return nil
}

// createPods creates pods in parallel and starts their workloads.
func (r *Runner) createPods(ctx context.Context, placements []scenarios.Placement) error {
	specs := make([]topo.PodSpec, 0, len(placements))
	for _, pl := range placements {
		specs = append(specs, podSpec(pl))
	}
	pods, err := r.lab.Cluster.AddPods(ctx, specs, 4)
	if err == nil {
		err = r.lab.Cluster.WaitLinksUp(ctx, pods, 5*time.Second)
	}
	byKey := map[string]*topo.Pod{}
	for _, p := range pods {
		byKey[p.Key()] = p
	}
	for _, pl := range placements {
		p := byKey[pl.Pod.Key()]
		if p == nil {
			continue
		}
		rt := &podRT{inst: pl.Pod, pod: p}
		r.mu.Lock()
		r.pods[p.Key()] = rt
		r.mu.Unlock()
		if werr := r.startWorkloads(ctx, rt); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func podSpec(pl scenarios.Placement) topo.PodSpec {
	s := topo.PodSpec{Namespace: pl.Pod.Namespace, Name: pl.Pod.Name, Node: pl.Node, Labels: pl.Pod.Labels}
	if o := pl.Pod.Owner; o.Kind != "" && o.Kind != "Pod" {
		s.Workload = topo.Workload{Kind: o.Kind, Name: o.Name}
	}
	if pl.Pod.Spec != nil {
		s.HostNetwork = pl.Pod.Spec.HostNetwork
		s.ServiceAccount = pl.Pod.Spec.ServiceAccount
		for _, p := range pl.Pod.Spec.Ports() {
			s.Ports = append(s.Ports, topo.ContainerPort{Name: p.Name, Port: uint16(p.ContainerPort), Protocol: p.Protocol, HostPort: uint16(p.HostPort)})
		}
	}
	return s
}

// startWorkloads starts the built-in program of each container.
func (r *Runner) startWorkloads(ctx context.Context, rt *podRT) error {
	if rt.inst.Spec == nil {
		return nil
	}
	info := workload.PodInfo{Namespace: rt.pod.Namespace, Name: rt.pod.Name, Node: rt.pod.Node.Name, IP: rt.pod.IP.String()}
	for _, c := range rt.inst.Spec.Containers {
		kind, err := workload.ParseKind(c.Workload.Name)
		if err != nil {
			return fmt.Errorf("pod %s container %s: %w", rt.pod.Key(), c.Name, err)
		}
		if kind == workload.KindClient {
			continue // clients only act through probes
		}
		spec := workload.Spec{Kind: kind, Pod: info}
		seen := map[uint16]bool{}
		for _, p := range c.Workload.Ports {
			if port := uint16(p.ContainerPort); !seen[port] {
				seen[port] = true
				spec.Ports = append(spec.Ports, port)
			}
		}
		if kind == workload.KindDNS {
			spec.Records = r.records
		}
		if kind == workload.KindHelloworld {
			spec.Version = workload.HelloworldVersion(c.Image)
		}
		if rt.pod.HostNetwork {
			// A host-network process listens on the node's address and
			// its loopback (probes ask localhost), not on every address of
			// the node's namespace, which the lab's own services share.
			spec.Addrs = []netip.Addr{rt.pod.IP, netip.AddrFrom4([4]byte{127, 0, 0, 1})}
		}
		w, err := workload.Start(ctx, rt.pod.NS, spec)
		if err != nil {
			return fmt.Errorf("pod %s container %s: start %s: %w", rt.pod.Key(), c.Name, kind, err)
		}
		rt.workloads = append(rt.workloads, w)
		r.closers = append(r.closers, w.Close)
	}
	return nil
}

// deletePod stops a pod's workloads and removes it.
func (r *Runner) deletePod(ctx context.Context, key string) error {
	r.mu.Lock()
	rt := r.pods[key]
	delete(r.pods, key)
	r.mu.Unlock()
	if rt == nil {
		return fmt.Errorf("pod %s not found", key)
	}
	var errs []error
	for _, w := range rt.workloads {
		errs = append(errs, w.Close())
	}
	r.sched.Remove(rt.pod.Namespace, rt.pod.Name)
	errs = append(errs, r.lab.Cluster.DeletePod(ctx, rt.pod.Namespace, rt.pod.Name))
	return errors.Join(errs...)
}

// placements returns the current pods as the scheduler sees them.
func (r *Runner) placements() []scenarios.Placement {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]scenarios.Placement, 0, len(r.pods))
	for _, rt := range r.pods {
		out = append(out, scenarios.Placement{Pod: rt.inst, Node: rt.pod.Node.Name})
	}
	return out
}

// applyService allocates the service's addresses, publishes it in DNS and
// programs the datapath's load balancer.
func (r *Runner) applyService(svc *scenarios.Service) error {
	key := svc.Meta.Namespace + "/" + svc.Meta.Name
	r.mu.Lock()
	rt := r.services[key]
	if rt == nil {
		addr, err := r.addrs.Assign(svc)
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("%s: service %s: %w", svc.Source, key, err)
		}
		rt = &svcRT{svc: svc, ip: addr.ClusterIP, nodePorts: map[int]int{}}
		for i, p := range svc.Ports {
			if i < len(addr.NodePorts) && addr.NodePorts[i] != 0 {
				rt.nodePorts[p.Port] = addr.NodePorts[i]
			}
		}
		r.services[key] = rt
	}
	rt.svc = svc
	// LB IPAM: a Service it cannot serve is still programmed (ClusterIP,
	// node ports) and stays <pending>, as Kubernetes shows it; the error
	// says why.
	var lbErr error
	if svc.Type == scenarios.ServiceLoadBalancer && len(rt.lbIPs) == 0 {
		if r.lbipam == nil {
			ipam, err := scenarios.NewLBIPAM(r.s.LBIPPools)
			if err != nil {
				r.mu.Unlock()
				return err
			}
			r.lbipam = ipam
		}
		rt.lbIPs, lbErr = r.lbipam.Assign(svc)
		rt.lbPending = ""
		if lbErr != nil {
			rt.lbPending = lbErr.Error()
		}
	}
	r.mu.Unlock()
	return errors.Join(r.syncService(rt), lbErr)
}

// externalService returns the first Service of s of type LoadBalancer or
// with externalIPs, or nil.
func externalService(s *scenarios.Scenario) *scenarios.Service {
	for _, o := range s.Objects {
		if svc, ok := o.(*scenarios.Service); ok && (svc.Type == scenarios.ServiceLoadBalancer || len(svc.ExternalIPs) > 0) {
			return svc
		}
	}
	for _, st := range s.Steps {
		if st.Apply == nil {
			continue
		}
		for _, o := range st.Apply.Objects {
			if svc, ok := o.(*scenarios.Service); ok && (svc.Type == scenarios.ServiceLoadBalancer || len(svc.ExternalIPs) > 0) {
				return svc
			}
		}
	}
	return nil
}

// externalAddrsOf fills a control-plane service's LoadBalancer and external
// IPs and what the L2 announcement policies announce of them.
func (r *Runner) externalAddrsOf(rt *svcRT, cs *controlplane.Service) {
	r.mu.Lock()
	cs.LoadBalancerIPs = slices.Clone(rt.lbIPs)
	cs.PendingReason = rt.lbPending
	policies := slices.Clone(r.s.L2Policies)
	r.mu.Unlock()
	cs.ExternalIPs = slices.Clone(rt.svc.ExternalIPs)
	for _, an := range scenarios.L2Announcements(policies, r.s.Nodes(), rt.svc, cs.LoadBalancerIPs) {
		cs.Announce = append(cs.Announce, controlplane.L2Announcement{IP: an.IP, Nodes: an.Nodes, Devices: an.Devices})
	}
}

// syncService refreshes DNS and the load balancer from the current pods.
func (r *Runner) syncService(rt *svcRT) error {
	svc := rt.svc
	placements := r.placements()
	eps := scenarios.Endpoints(svc, placements)
	if svc.Headless {
		// A headless Service's name resolves to every selected pod's
		// address (the node's for hostNetwork pods), with or without
		// ports, as CoreDNS answers from its EndpointSlices.
		var ips []netip.Addr
		seen := map[netip.Addr]bool{}
		for _, pl := range scenarios.SelectedPods(svc, placements) {
			if ip, ok := r.podIP(pl.Pod.Namespace, pl.Pod.Name); ok && !seen[ip] {
				seen[ip] = true
				ips = append(ips, ip)
			}
		}
		r.records.SetHeadlessService(svc.Meta.Namespace, svc.Meta.Name, ips)
		return nil
	}
	r.records.SetService(svc.Meta.Namespace, svc.Meta.Name, rt.ip)
	if r.cp == nil {
		return nil
	}
	cs := controlplane.Service{Namespace: svc.Meta.Namespace, Name: svc.Meta.Name, Type: string(svc.Type), ClusterIP: rt.ip, ExternalTrafficPolicyLocal: svc.ExternalTrafficPolicy == "Local"}
	r.externalAddrsOf(rt, &cs)
	for _, pe := range eps {
		sp := controlplane.ServicePort{Name: pe.Port.Name, Proto: policy.PortProto(pe.Port.Protocol), Port: uint16(pe.Port.Port), NodePort: uint16(rt.nodePorts[pe.Port.Port])}
		for _, b := range pe.Backends {
			if ip, ok := r.podIP(b.Namespace, b.Pod); ok {
				sp.Backends = append(sp.Backends, controlplane.Backend{IP: ip, Port: uint16(b.Port), Node: b.Node})
			}
		}
		cs.Ports = append(cs.Ports, sp)
	}
	if err := r.cp.UpsertService(cs); err != nil {
		if errors.Is(err, controlplane.ErrServicesNotSupported) {
			if !r.svcWarn {
				r.svcWarn = true
				fmt.Fprintf(r.o.Out, "! %v: ClusterIP and NodePort probes will fail\n", err)
			}
			return nil
		}
		return fmt.Errorf("service %s/%s: %w", svc.Meta.Namespace, svc.Meta.Name, err)
	}
	return nil
}

// resyncServices refreshes every service after pods changed.
func (r *Runner) resyncServices() error {
	r.mu.Lock()
	list := make([]*svcRT, 0, len(r.services))
	for _, s := range r.services {
		list = append(list, s)
	}
	r.mu.Unlock()
	var errs []error
	for _, s := range list {
		errs = append(errs, r.syncService(s))
	}
	return errors.Join(errs...)
}

func (r *Runner) podIP(ns, name string) (netip.Addr, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rt := r.pods[ns+"/"+name]; rt != nil {
		return rt.pod.IP, true
	}
	return netip.Addr{}, false
}

// startCaptures starts captures on a named device (several for a
// Deployment's pods).
func (r *Runner) startCaptures(ctx context.Context, d scenarios.Device) ([]*pcap.Capture, error) {
	type target struct {
		ns        *topo.Namespace
		dev, name string
	}
	if d.Kind == scenarios.DeviceRaw {
		return r.startRawCapture(ctx, d)
	}
	var ts []target
	c := r.lab.Cluster
	switch d.Kind {
	case scenarios.DeviceNode:
		n := c.Node(d.Node)
		if n == nil {
			return nil, fmt.Errorf("capture %s: unknown node %q", d.Raw, d.Node)
		}
		ts = append(ts, target{n.NS, d.Name, n.Name + "/" + d.Name})
	case scenarios.DeviceWorld:
		name := d.Name
		if name == "" {
			name = topo.WorldEth0
		}
		ts = append(ts, target{c.World, name, "world/" + name})
	case scenarios.DevicePod, scenarios.DevicePodVeth:
		for _, rt := range r.podsOf(d.Namespace, d.Pod, d.OwnerKind) {
			if d.Kind == scenarios.DevicePod {
				ts = append(ts, target{rt.pod.NS, topo.PodEth0, rt.pod.Name + "/eth0"})
			} else {
				ts = append(ts, target{rt.pod.Node.NS, rt.pod.HostVeth, rt.pod.Node.Name + "/" + rt.pod.HostVeth})
			}
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("capture %s: no pod %s/%s", d.Raw, d.Namespace, d.Pod)
		}
	default:
		return nil, fmt.Errorf("capture %s: unknown device kind %q", d.Raw, d.Kind)
	}
	var out []*pcap.Capture
	for _, t := range ts {
		cp, err := pcap.Start(ctx, t.ns, t.dev, t.name, pcap.Options{Promiscuous: d.Promiscuous == nil || *d.Promiscuous, Resolver: r})
		if err != nil {
			for _, c := range out {
				_ = c.Stop()
			}
			return nil, fmt.Errorf("capture %s: %w", d.Raw, err)
		}
		out = append(out, cp)
	}
	r.mu.Lock()
	r.allCaps = append(r.allCaps, out...)
	r.mu.Unlock()
	return out, nil
}

// podsOf returns the pods named (a pod, or a Deployment's pods).
func (r *Runner) podsOf(ns, name, ownerKind string) []*podRT {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ns == "" {
		ns = "default"
	}
	var out []*podRT
	if rt := r.pods[ns+"/"+name]; rt != nil && ownerKind != "Deployment" {
		return []*podRT{rt}
	}
	for _, rt := range r.pods {
		if rt.inst.Owner.Kind == "Deployment" && rt.inst.Owner.Namespace == ns && rt.inst.Owner.Name == name {
			out = append(out, rt)
		}
	}
	sortPods(out)
	return out
}
