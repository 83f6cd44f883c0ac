package scenarios

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/scenarios/probe"
	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"
)

// RunOptions configure Run.
type RunOptions struct {
	// Lab is the lab's name (unique on the host).
	Lab string
	// OutDir, when set, receives one pcapng file per capture.
	OutDir string
	// Keep leaves the lab up after the run; Report.Lab holds it and the
	// caller tears it down.
	Keep bool
	Log  *slog.Logger
	// Progress receives one line per bring-up stage.
	Progress func(string)
	// OnResult is called as each expectation completes.
	OnResult func(Result)
}

// Result is one checked expectation of a run.
type Result struct {
	// Step is the step's index, or -1 for the expectations attached to
	// Deployments and Pods (their translated readiness/liveness probes).
	Step   int
	Name   string
	Passed bool
	// Skipped is set when the expectation could not be checked (a part
	// of podlab it needs does not exist yet); Reason says which.
	Skipped bool
	Reason  string
	Source  Source
	// Duration of the check.
	Duration time.Duration
}

// String renders the result as the CLI prints it (✓/✗/- name: reason).
func (r Result) String() string {
	mark := "✗"
	switch {
	case r.Skipped:
		mark = "-"
	case r.Passed:
		mark = "✓"
	}
	s := mark + " " + r.Name
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Report is the outcome of a run.
type Report struct {
	Scenario string
	Results  []Result
	// Captures are the pcapng files written (OutDir set).
	Captures []string
	// Lab is the running lab when RunOptions.Keep was set.
	Lab *lab.Lab
	// Duration of the whole run, bring-up and teardown included.
	Duration time.Duration
}

// Passed reports whether no expectation failed (skipped ones do not count).
func (r *Report) Passed() bool {
	for _, res := range r.Results {
		if !res.Passed && !res.Skipped {
			return false
		}
	}
	return true
}

// runPod is a pod the runner created.
type runPod struct {
	inst      PodInstance
	pod       *topo.Pod
	workloads []workload.Workload
}

// runner holds the state of one run.
type runner struct {
	s      *Scenario
	o      RunOptions
	log    *slog.Logger
	lab    *lab.Lab
	cl     *topo.Cluster
	cp     *controlplane.ControlPlane
	names  *NameGenerator
	sched  *Scheduler
	addrs  *ServiceAddresses
	recs   *workload.Records
	report *Report

	mu       sync.Mutex
	pods     map[string]*runPod // namespace/name
	objects  map[ObjectRef]Object
	services map[ObjectRef]ServiceAddress
	world    []workload.Workload
	// scenario-wide captures, by device text.
	captures map[string][]*pcap.Capture
	// downRoutes are the routes of devices taken down, by device.
	downRoutes map[string][]netlink.Route
}

// Run brings up a lab for the scenario, creates its objects, runs its steps
// and checks every expectation, then tears the lab down (unless Keep). The
// error is for failures of the run itself (the lab could not be built);
// failed expectations are in the Report.
//
// Not supported yet, and reported as such: flow and metric assertions (the
// control plane exposes no flow log or metrics yet), the drop reason of a
// failed probe, and Service load-balancing (no datapath translates
// ClusterIPs and node ports yet, so probes through them fail for real).
// Until then pod resolvers query the cluster DNS pod directly instead of
// 10.96.0.10; the DNS traffic still crosses the datapath and its policy.
func Run(ctx context.Context, s *Scenario, o RunOptions) (rep *Report, err error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &runner{s: s, o: o, log: o.Log, names: NewNameGenerator(s.Settings.Seed), sched: NewScheduler(s.Nodes()),
		addrs: NewServiceAddresses(), recs: workload.NewRecords(ClusterDomain), report: &Report{Scenario: s.Name},
		pods: map[string]*runPod{}, objects: map[ObjectRef]Object{}, services: map[ObjectRef]ServiceAddress{},
		captures: map[string][]*pcap.Capture{}, downRoutes: map[string][]netlink.Route{}}
	defer func() {
		if rep != nil {
			rep.Duration = time.Since(start)
		}
	}()
	var nodes []topo.NodeSpec
	for _, n := range s.Cluster.Nodes {
		nodes = append(nodes, topo.NodeSpec{Name: n.Name, Role: n.Role, Labels: n.Labels})
	}
	r.lab, err = lab.Up(ctx, lab.Options{Name: o.Lab, Nodes: nodes, Datapath: s.Settings.Datapath, Source: strings.Join(s.Files, ","),
		Progress: o.Progress, Log: o.Log})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", s.Name, err)
	}
	r.cl, r.cp = r.lab.Cluster, r.lab.ControlPlane
	defer func() {
		r.stopAll()
		if o.Keep && err == nil {
			r.report.Lab = r.lab
			return
		}
		if derr := r.lab.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("tear down lab %s: %w", o.Lab, derr))
		}
	}()
	if err := r.startWorld(ctx); err != nil {
		return r.report, err
	}
	dnsDep, dnsSvc := ClusterDNSObjects()
	initial := append([]Object{dnsDep, dnsSvc}, s.InitialObjects()...)
	r.progress(fmt.Sprintf("Creating objects (%d) 🐳", len(initial)))
	if err := r.apply(ctx, initial); err != nil {
		return r.report, err
	}
	for _, d := range s.Captures {
		caps, err := r.startCapture(ctx, d)
		if err != nil {
			return r.report, err
		}
		r.captures[d.Raw] = caps
	}
	waited := false
	for i := range s.Steps {
		if ctx.Err() != nil {
			return r.report, ctx.Err()
		}
		if s.Steps[i].Wait != nil {
			waited = true
		}
		if err := r.step(ctx, i); err != nil {
			return r.report, fmt.Errorf("step %d (%s): %w", i, s.Steps[i].Name, err)
		}
	}
	if !waited {
		r.checkReadiness(ctx, -1, nil, s.Settings.ReadyTimeout)
	}
	return r.report, nil
}

func (r *runner) progress(s string) {
	if r.o.Progress != nil {
		r.o.Progress(s)
	}
}

func (r *runner) record(res Result) {
	r.mu.Lock()
	r.report.Results = append(r.report.Results, res)
	r.mu.Unlock()
	if r.o.OnResult != nil {
		r.o.OnResult(res)
	}
}

// worldHosts are the emulated external hosts every run starts.
func worldHosts() []workload.WorldHostConfig { return workload.DefaultWorldHosts() }

func (r *runner) startWorld(ctx context.Context) error {
	hosts := worldHosts()
	for _, h := range hosts {
		w, err := workload.StartWorldHost(ctx, r.cl.World, h)
		if err != nil {
			return fmt.Errorf("world host %s: %w", h.Name, err)
		}
		r.world = append(r.world, w)
	}
	r.recs.AddWorldHosts(hosts)
	return nil
}

// stopAll closes workloads and captures.
func (r *runner) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, caps := range r.captures {
		for _, c := range caps {
			_ = c.Stop()
		}
	}
	for _, p := range r.pods {
		for _, w := range p.workloads {
			_ = w.Close()
		}
	}
	for _, w := range r.world {
		_ = w.Close()
	}
}

// apply creates or replaces objects, in dependency order: namespaces,
// policies, services, pods; service DNS records last.
func (r *runner) apply(ctx context.Context, objs []Object) error {
	rank := func(o Object) int {
		switch o.(type) {
		case *Namespace:
			return 0
		case *Policy:
			return 1
		case *Service:
			return 2
		}
		return 3
	}
	sorted := append([]Object(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool { return rank(sorted[i]) < rank(sorted[j]) })
	var pods []PodInstance
	for _, o := range sorted {
		r.objects[o.Ref()] = o
		switch v := o.(type) {
		case *Namespace:
			if r.cp != nil {
				labels := map[string]string{"kubernetes.io/metadata.name": v.Meta.Name}
				for k, val := range v.Meta.Labels {
					labels[k] = val
				}
				r.cp.SetNamespaceLabels(v.Meta.Name, labels)
			}
		case *Policy:
			if r.cp == nil {
				r.log.Warn("policy ignored: datapath none enforces no policy", "policy", v.Ref())
				continue
			}
			if err := r.cp.ApplyPolicy(v.Decoded); err != nil {
				return fmt.Errorf("apply %s: %w", v.Ref(), err)
			}
		case *Service:
			addr, err := r.addrs.Assign(v)
			if err != nil {
				return err
			}
			r.services[v.Ref()] = addr
		case *Pod:
			r.deletePodsOf(ctx, v.Ref())
			pods = append(pods, PodInstanceOf(v))
		case *Deployment:
			r.deletePodsOf(ctx, v.Ref())
			pods = append(pods, v.Instances(r.names, v.Replicas)...)
		}
	}
	if err := r.createPods(ctx, pods); err != nil {
		return err
	}
	r.refreshServices()
	return nil
}

// createPods schedules pods, wires them and starts their workloads.
func (r *runner) createPods(ctx context.Context, pods []PodInstance) error {
	if len(pods) == 0 {
		return nil
	}
	placed, err := r.sched.Place(pods)
	if err != nil {
		return err
	}
	for _, pl := range placed {
		spec := topo.PodSpec{Namespace: pl.Pod.Namespace, Name: pl.Pod.Name, Node: pl.Node, Labels: pl.Pod.Labels, HostNetwork: pl.Pod.Spec.HostNetwork}
		for _, cp := range pl.Pod.Spec.Ports() {
			spec.Ports = append(spec.Ports, topo.ContainerPort{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: cp.Protocol, HostPort: uint16(cp.HostPort)})
		}
		tp, err := r.cl.AddPod(ctx, spec)
		if err != nil {
			return fmt.Errorf("create pod %s: %w", pl.Pod.Key(), err)
		}
		rp := &runPod{inst: pl.Pod, pod: tp}
		r.mu.Lock()
		r.pods[pl.Pod.Key()] = rp
		r.mu.Unlock()
		for _, c := range pl.Pod.Spec.Containers {
			ws := workload.Spec{Kind: workload.Kind(c.Workload.Name),
				Pod: workload.PodInfo{Namespace: tp.Namespace, Name: tp.Name, Node: tp.Node.Name, IP: tp.IP.String()}}
			if c.Workload.Name == WorkloadDNS {
				ws.Records = r.recs
			} else {
				for _, p := range c.Workload.Ports {
					ws.Ports = append(ws.Ports, uint16(p.ContainerPort))
				}
			}
			w, err := workload.Start(ctx, tp.NS, ws)
			if err != nil {
				return fmt.Errorf("start %s in pod %s: %w", c.Workload.Name, pl.Pod.Key(), err)
			}
			rp.workloads = append(rp.workloads, w)
		}
	}
	return nil
}

// deletePodsOf removes the pods an object owns.
func (r *runner) deletePodsOf(ctx context.Context, owner ObjectRef) {
	for _, p := range r.podsOf(owner) {
		r.deletePod(ctx, p)
	}
}

func (r *runner) deletePod(ctx context.Context, p *runPod) {
	for _, w := range p.workloads {
		_ = w.Close()
	}
	if err := r.cl.DeletePod(ctx, p.inst.Namespace, p.inst.Name); err != nil {
		r.log.Warn("delete pod", "pod", p.inst.Key(), "err", err)
	}
	r.sched.Remove(p.inst.Namespace, p.inst.Name)
	r.mu.Lock()
	delete(r.pods, p.inst.Key())
	r.mu.Unlock()
}

// podsOf returns the pods of a Pod or Deployment, sorted by name.
func (r *runner) podsOf(owner ObjectRef) []*runPod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runPod
	for _, p := range r.pods {
		if p.inst.Owner == owner {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].inst.Name < out[j].inst.Name })
	return out
}

func (r *runner) placements() []Placement {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Placement
	for _, p := range r.pods {
		out = append(out, Placement{Pod: p.inst, Node: p.pod.Node.Name})
	}
	return out
}

// refreshServices rewrites the DNS records of every Service.
func (r *runner) refreshServices() {
	pl := r.placements()
	for ref, addr := range r.services {
		svc := r.objects[ref].(*Service)
		if !svc.Headless {
			r.recs.SetService(ref.Namespace, ref.Name, addr.ClusterIP)
			continue
		}
		seen := map[netip.Addr]bool{}
		var ips []netip.Addr
		for _, pe := range Endpoints(svc, pl) {
			for _, b := range pe.Backends {
				if ip := r.podIP(b.Namespace, b.Pod); ip.IsValid() && !seen[ip] {
					seen[ip] = true
					ips = append(ips, ip)
				}
			}
		}
		r.recs.SetHeadlessService(ref.Namespace, ref.Name, ips)
	}
}

func (r *runner) podIP(ns, name string) netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pods[ns+"/"+name]; p != nil {
		return p.pod.IP
	}
	return netip.Addr{}
}

// dnsServer is the address pod resolvers use: the cluster DNS pod itself,
// as no datapath translates the kube-dns ClusterIP yet.
func (r *runner) dnsServer() netip.Addr {
	for _, p := range r.podsOf(ObjectRef{Kind: KindDeployment, Namespace: ClusterDNSNamespace, Name: ClusterDNSDeployment}) {
		return p.pod.IP
	}
	return ClusterDNSIP
}

// step runs step i.
func (r *runner) step(ctx context.Context, i int) error {
	st := &r.s.Steps[i]
	var caps []*pcap.Capture
	capsByDevice := map[string][]*pcap.Capture{}
	for _, d := range st.Captures {
		c, err := r.startCapture(ctx, d)
		if err != nil {
			return err
		}
		caps = append(caps, c...)
		capsByDevice[d.Raw] = c
	}
	stopCaps := func() {
		for _, c := range caps {
			_ = c.Stop()
		}
	}
	start := time.Now()
	res := func(passed bool, reason string) {
		r.record(Result{Step: i, Name: st.Name, Passed: passed, Reason: reason, Source: st.Source, Duration: time.Since(start)})
	}
	switch {
	case st.Apply != nil:
		if err := r.apply(ctx, st.Apply.Objects); err != nil {
			stopCaps()
			return err
		}
	case st.Delete != nil:
		if err := r.delete(ctx, st.Delete.Refs); err != nil {
			stopCaps()
			return err
		}
	case st.Scale != nil:
		if err := r.scale(ctx, st.Scale); err != nil {
			stopCaps()
			return err
		}
	case st.Wait != nil:
		r.checkReadiness(ctx, i, st.Wait.Refs, st.Wait.Timeout)
	case len(st.Probes) > 0:
		var wg sync.WaitGroup
		for j := range st.Probes {
			wg.Add(1)
			go func(p *ProbeStep) {
				defer wg.Done()
				t0 := time.Now()
				passed, reason, skipped := r.runProbe(ctx, p)
				name := st.Name
				if len(st.Probes) > 1 {
					name = probeName(p)
					if st.Name != defaultStepName(st) {
						name = fmt.Sprintf("%s [%s]", st.Name, name)
					}
				}
				r.record(Result{Step: i, Name: name, Passed: passed, Skipped: skipped, Reason: reason, Source: p.Source, Duration: time.Since(t0)})
			}(&st.Probes[j])
		}
		wg.Wait()
	case st.Flow != nil:
		r.record(Result{Step: i, Name: st.Name, Skipped: true, Source: st.Flow.Source,
			Reason: "not supported yet: flow assertions (the control plane exposes no flow log to the runner yet)"})
	case st.Metric != nil:
		r.record(Result{Step: i, Name: st.Name, Skipped: true, Source: st.Metric.Source,
			Reason: "not supported yet: metric assertions (no metrics source wired into the runner yet)"})
	case st.Fault != nil:
		if err := r.fault(ctx, st.Fault); err != nil {
			res(false, err.Error())
		} else {
			res(true, "")
		}
	case st.Sleep != 0:
		select {
		case <-time.After(st.Sleep):
		case <-ctx.Done():
			stopCaps()
			return ctx.Err()
		}
	}
	if len(st.Packets) == 0 {
		stopCaps()
		return nil
	}
	own := st.Action() != "packets"
	if own {
		stopCaps()
	}
	for k := range st.Packets {
		pa := &st.Packets[k]
		t0 := time.Now()
		var src []*pcap.Capture
		if own {
			src = capsByDevice[pa.Device.Raw]
			if src == nil {
				for _, d := range st.Captures {
					if d.sameAs(pa.Device) {
						src = capsByDevice[d.Raw]
					}
				}
			}
		} else {
			src = r.scenarioCaptures(pa.Device)
		}
		name := fmt.Sprintf("%s: on %s, %s", st.Name, pa.Device, pa.Expect)
		if st.Name == "packets" || st.Name == "" {
			name = fmt.Sprintf("on %s, %s", pa.Device, pa.Expect)
		}
		err := pa.Check(mergeSources(pa.Device.Raw, src), resolver{r})
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		r.record(Result{Step: i, Name: name, Passed: err == nil, Reason: reason, Source: pa.Source, Duration: time.Since(t0)})
	}
	return nil
}

func (r *runner) scenarioCaptures(d Device) []*pcap.Capture {
	if c := r.captures[d.Raw]; c != nil {
		return c
	}
	for _, sd := range r.s.Captures {
		if sd.sameAs(d) {
			return r.captures[sd.Raw]
		}
	}
	return nil
}

// target is where a device lives.
type target struct {
	ns   *topo.Namespace
	dev  string
	name string
}

// deviceTargets resolves a device to namespaces and interface names (a
// Deployment's pods give several).
func (r *runner) deviceTargets(d Device) ([]target, error) {
	switch d.Kind {
	case DeviceNode:
		n := r.cl.Node(d.Node)
		if n == nil {
			return nil, fmt.Errorf("device %s: no node %s", d, d.Node)
		}
		return []target{{ns: n.NS, dev: d.Name, name: d.Raw}}, nil
	case DeviceWorld:
		return []target{{ns: r.cl.World, dev: topo.WorldEth0, name: "world/eth0"}}, nil
	case DevicePod, DevicePodVeth:
		kind := d.OwnerKind
		if kind == "" {
			kind = KindPod
		}
		pods := r.podsOf(ObjectRef{Kind: kind, Namespace: d.Namespace, Name: d.Pod})
		if len(pods) == 0 {
			return nil, fmt.Errorf("device %s: no running pod", d)
		}
		var out []target
		for _, p := range pods {
			if d.Kind == DevicePod {
				out = append(out, target{ns: p.pod.NS, dev: topo.PodEth0, name: p.inst.Name + "/eth0"})
			} else {
				out = append(out, target{ns: p.pod.Node.NS, dev: p.pod.HostVeth, name: p.pod.Node.Name + "/" + p.pod.HostVeth})
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("device %s: unresolved", d)
}

func (r *runner) startCapture(ctx context.Context, d Device) ([]*pcap.Capture, error) {
	targets, err := r.deviceTargets(d)
	if err != nil {
		return nil, err
	}
	var out []*pcap.Capture
	for _, t := range targets {
		opts := pcap.Options{Resolver: resolver{r}, Logger: r.log}
		if r.o.OutDir != "" {
			if err := os.MkdirAll(r.o.OutDir, 0o755); err != nil {
				return nil, fmt.Errorf("capture dir: %w", err)
			}
			opts.File = filepath.Join(r.o.OutDir, strings.NewReplacer("/", "_", ":", "_").Replace(t.name)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".pcapng")
			r.report.Captures = append(r.report.Captures, opts.File)
		}
		c, err := pcap.Start(ctx, t.ns, t.dev, t.name, opts)
		if err != nil {
			for _, prev := range out {
				_ = prev.Stop()
			}
			return nil, fmt.Errorf("capture %s: %w", d, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// multiSource merges the packets of several captures of one device name.
type multiSource struct {
	name    string
	packets []pcap.Packet
	path    string
}

func (m multiSource) Interface() string      { return m.name }
func (m multiSource) Packets() []pcap.Packet { return m.packets }
func (m multiSource) Path() string           { return m.path }

func mergeSources(name string, caps []*pcap.Capture) pcap.Source {
	if len(caps) == 1 {
		return caps[0]
	}
	m := multiSource{name: name}
	var paths []string
	for _, c := range caps {
		m.packets = append(m.packets, c.Packets()...)
		if c.Path() != "" {
			paths = append(paths, c.Path())
		}
	}
	sort.SliceStable(m.packets, func(i, j int) bool { return m.packets[i].Time.Before(m.packets[j].Time) })
	m.path = strings.Join(paths, ", ")
	return m
}

// resolver turns lab names in packet matches into addresses and identities.
type resolver struct{ r *runner }

// Addresses implements pcap.Resolver.
func (x resolver) Addresses(name string) ([]netip.Addr, error) {
	p, err := parsePeer(name)
	if err != nil {
		return nil, err
	}
	return x.r.peerAddrs(p)
}

// IdentityOf implements pcap.Resolver.
func (x resolver) IdentityOf(name string) (uint32, error) {
	if x.r.cp == nil {
		return 0, fmt.Errorf("identity of %s: datapath none allocates no identities", name)
	}
	p, err := parsePeer(name)
	if err != nil {
		return 0, err
	}
	for _, rp := range x.r.workloadPods(p) {
		if id, ok := x.r.cp.IdentityOf(rp.inst.Key()); ok {
			return uint32(id), nil
		}
	}
	return 0, fmt.Errorf("no identity for %s", name)
}

// workloadPods returns the pods a peer names (bare names: Deployment, then
// Pod).
func (r *runner) workloadPods(p Peer) []*runPod {
	ns := p.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	switch p.Kind {
	case PeerPod:
		return r.podsOf(ObjectRef{Kind: KindPod, Namespace: ns, Name: p.Name})
	case PeerDeployment:
		return r.podsOf(ObjectRef{Kind: KindDeployment, Namespace: ns, Name: p.Name})
	case "":
		if out := r.podsOf(ObjectRef{Kind: KindDeployment, Namespace: ns, Name: p.Name}); len(out) > 0 {
			return out
		}
		return r.podsOf(ObjectRef{Kind: KindPod, Namespace: ns, Name: p.Name})
	}
	return nil
}

// peerAddrs returns the addresses a peer stands for.
func (r *runner) peerAddrs(p Peer) ([]netip.Addr, error) {
	ns := p.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	switch p.Kind {
	case PeerIP:
		return []netip.Addr{p.IP}, nil
	case PeerWorld:
		return []netip.Addr{topo.WorldUnderlayIP}, nil
	case PeerNode, PeerNodePort:
		if n := r.cl.Node(p.Node); n != nil {
			return []netip.Addr{n.IP}, nil
		}
		return nil, fmt.Errorf("no node %s", p.Node)
	case PeerService:
		if a, ok := r.services[ObjectRef{Kind: KindService, Namespace: ns, Name: p.Name}]; ok && a.ClusterIP.IsValid() {
			return []netip.Addr{a.ClusterIP}, nil
		}
		return nil, fmt.Errorf("no ClusterIP for service %s/%s", ns, p.Name)
	case PeerDNSName:
		for _, h := range worldHosts() {
			if strings.EqualFold(strings.TrimSuffix(p.Host, "."), h.Name) {
				return h.Addrs, nil
			}
		}
		return nil, fmt.Errorf("%s is no world host", p.Host)
	}
	if r.cl.Node(p.Name) != nil && p.Kind == "" {
		return []netip.Addr{r.cl.Node(p.Name).IP}, nil
	}
	var out []netip.Addr
	for _, rp := range r.workloadPods(p) {
		out = append(out, rp.pod.IP)
	}
	if len(out) == 0 && p.Kind == "" {
		if a, ok := r.services[ObjectRef{Kind: KindService, Namespace: ns, Name: p.Name}]; ok && a.ClusterIP.IsValid() {
			return []netip.Addr{a.ClusterIP}, nil
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no running pod", p.Raw)
	}
	return out, nil
}

// source is where a probe is sent from.
type source struct {
	name string
	ns   *topo.Namespace
	dns  probe.DNSConfig
}

func (r *runner) sources(p Peer) ([]source, error) {
	switch p.Kind {
	case PeerWorld:
		return []source{{name: "world", ns: r.cl.World, dns: probe.DNSConfig{Server: netip.AddrPortFrom(r.dnsServer(), 53), Ndots: -1}}}, nil
	case PeerNode:
		n := r.cl.Node(p.Node)
		if n == nil {
			return nil, fmt.Errorf("no node %s", p.Node)
		}
		return []source{{name: n.Name, ns: n.NS, dns: probe.DNSConfig{Server: netip.AddrPortFrom(r.dnsServer(), 53), Ndots: -1}}}, nil
	}
	pods := r.workloadPods(p)
	if len(pods) == 0 {
		return nil, fmt.Errorf("%s has no running pod", p.Raw)
	}
	var out []source
	for _, rp := range pods {
		out = append(out, source{name: rp.inst.Name, ns: rp.pod.NS, dns: probe.PodDNSConfig(rp.inst.Namespace, r.dnsServer())})
	}
	return out, nil
}

// probeTarget returns the host and port a probe goes to.
func (r *runner) probeTarget(p *ProbeStep, attempt int) (string, int, error) {
	port := p.Port
	to := p.To
	ns := to.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	switch to.Kind {
	case PeerDNSName:
		if port == 0 {
			port = defaultPort(p)
			if ref, ok := serviceForName(to.Host, p.From.Namespace); ok {
				if svc, ok := r.objects[ref].(*Service); ok && len(svc.Ports) > 0 && p.Protocol != ProbeDNS {
					port = svc.Ports[0].Port
				}
			}
		}
		return to.Host, port, nil
	case PeerService:
		svc, ok := r.objects[ObjectRef{Kind: KindService, Namespace: ns, Name: to.Name}].(*Service)
		if !ok {
			return "", 0, fmt.Errorf("no service %s/%s", ns, to.Name)
		}
		if port == 0 && len(svc.Ports) > 0 {
			port = svc.Ports[0].Port
		}
		addr := r.services[svc.Ref()]
		if !addr.ClusterIP.IsValid() {
			return "", 0, fmt.Errorf("service %s/%s is headless: probe its name or pods", ns, to.Name)
		}
		return addr.ClusterIP.String(), port, nil
	case PeerNodePort:
		svc, ok := r.objects[ObjectRef{Kind: KindService, Namespace: ns, Name: to.Name}].(*Service)
		if !ok {
			return "", 0, fmt.Errorf("no service %s/%s", ns, to.Name)
		}
		addr := r.services[svc.Ref()]
		np := 0
		for k, sp := range svc.Ports {
			if port == 0 || sp.Port == port {
				np = addr.NodePorts[k]
				break
			}
		}
		n := r.cl.Node(to.Node)
		if n == nil || np == 0 {
			return "", 0, fmt.Errorf("no node port of %s/%s on %s", ns, to.Name, to.Node)
		}
		return n.IP.String(), np, nil
	}
	ips, err := r.peerAddrs(to)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = defaultPort(p)
		if pods := r.workloadPods(to); len(pods) > 0 && p.Protocol != ProbeHTTP {
			for _, cp := range pods[0].inst.Spec.Ports() {
				if strings.EqualFold(cp.Protocol, string(p.Protocol)) {
					port = cp.ContainerPort
					break
				}
			}
		}
	}
	return ips[attempt%len(ips)].String(), port, nil
}

func defaultPort(p *ProbeStep) int {
	switch p.Protocol {
	case ProbeHTTP:
		return 80
	case ProbeDNS:
		return 53
	}
	return 7
}

// runProbe runs every attempt of a probe from every source pod and checks
// the expectation.
func (r *runner) runProbe(ctx context.Context, p *ProbeStep) (passed bool, reason string, skipped bool) {
	srcs, err := r.sources(p.From)
	if err != nil {
		return false, err.Error(), false
	}
	var mu sync.Mutex
	var failures []string
	total := 0
	sem := make(chan struct{}, p.Parallel)
	var wg sync.WaitGroup
	for _, src := range srcs {
		for a := 0; a < p.Count; a++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(src source, attempt int) {
				defer wg.Done()
				defer func() { <-sem }()
				pr, err := r.buildProbe(p, src, attempt)
				var res probe.Result
				if err == nil {
					res = pr.Run(ctx, src.ns)
				}
				ok, why := meets(p, res, err)
				mu.Lock()
				total++
				if !ok {
					failures = append(failures, fmt.Sprintf("from %s: %s", src.name, why))
				}
				mu.Unlock()
			}(src, a)
		}
	}
	wg.Wait()
	if len(failures) > 0 {
		sort.Strings(failures)
		return false, fmt.Sprintf("%d of %d attempts did not meet expect %s; first: %s", len(failures), total, p.Expect, failures[0]), false
	}
	reason = fmt.Sprintf("%d attempt(s): %s", total, p.Expect)
	if p.DropReason != "" {
		reason += fmt.Sprintf(" (drop reason %q not verified: not supported yet, no flow log in the runner)", p.DropReason)
	}
	return true, reason, false
}

// meets compares a probe result with the expectation.
func meets(p *ProbeStep, res probe.Result, err error) (bool, string) {
	if err != nil {
		return false, err.Error()
	}
	got := res.Outcome
	var ok bool
	switch p.Expect {
	case ExpectSuccess:
		ok = got == probe.Success
	case ExpectFail:
		ok = got != probe.Success
	case ExpectTimeout:
		// A DNS query without answer is a timeout of the DNS probe itself.
		ok = got == probe.Timeout || p.Protocol == ProbeDNS && got == probe.DNSTimeout
	case ExpectRefused:
		ok = got == probe.Refused
	case ExpectReset:
		ok = got == probe.Reset
	case ExpectUnreachable:
		ok = got == probe.Unreachable
	case ExpectNXDomain:
		ok = got == probe.NXDomain
	case ExpectDNSTimeout:
		ok = got == probe.DNSTimeout
	}
	return ok, res.String()
}

// buildProbe makes the probe package's probe for one attempt.
func (r *runner) buildProbe(p *ProbeStep, src source, attempt int) (probe.Probe, error) {
	if p.Protocol == ProbeDNS {
		cfg := src.dns
		if p.To.Kind != PeerService || p.To.Name != ClusterDNSService || p.To.Namespace != ClusterDNSNamespace {
			host, port, err := r.probeTarget(p, attempt)
			if err != nil {
				return nil, err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return nil, fmt.Errorf("DNS server %s is not an address", host)
			}
			cfg.Server = netip.AddrPortFrom(ip, uint16(port))
		}
		q := probe.DNS{Name: p.DNS.Name, Config: cfg, Timeout: p.Timeout, NoSearch: strings.Contains(p.DNS.Name, ".")}
		if t, ok := dnsTypes[p.DNS.Type]; ok {
			q.Type = t
		}
		for _, a := range p.DNS.Answers {
			if ip, err := netip.ParseAddr(a); err == nil {
				q.ExpectAddrs = append(q.ExpectAddrs, ip)
				continue
			}
			peer, err := parsePeer(a)
			if err != nil {
				return nil, err
			}
			ips, err := r.peerAddrs(peer)
			if err != nil {
				return nil, fmt.Errorf("answer %s: %w", a, err)
			}
			q.ExpectAddrs = append(q.ExpectAddrs, ips...)
		}
		return q, nil
	}
	host, port, err := r.probeTarget(p, attempt)
	if err != nil {
		return nil, err
	}
	hp := host + ":" + strconv.Itoa(port)
	switch p.Protocol {
	case ProbeHTTP:
		status := p.HTTP.Status
		return probe.HTTP{Method: p.HTTP.Method, URL: "http://" + hp + p.HTTP.Path, ExpectStatus: status, Timeout: p.Timeout, DNS: src.dns}, nil
	case ProbeTCP:
		return probe.TCP{Addr: hp, Timeout: p.Timeout, DNS: src.dns}, nil
	case ProbeUDP:
		u := probe.UDP{Addr: hp, Payload: []byte(p.UDP.Payload), Timeout: p.Timeout, DNS: src.dns}
		if p.UDP.ExpectEcho {
			u.Expect = []byte(p.UDP.Payload)
		}
		return u, nil
	case ProbeICMP:
		return probe.ICMP{Host: host, Timeout: p.Timeout, DNS: src.dns}, nil
	}
	return nil, fmt.Errorf("not supported yet: probe %s", p.Protocol)
}

var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME,
	"SRV": dnsmessage.TypeSRV, "TXT": dnsmessage.TypeTXT, "PTR": dnsmessage.TypePTR,
}

// checkReadiness waits until the pods of refs (every scenario pod when
// empty) pass their translated readiness/liveness probes, and records one
// result per Deployment/Pod with probes.
func (r *runner) checkReadiness(ctx context.Context, step int, refs []ObjectRef, timeout time.Duration) {
	owners := map[ObjectRef]bool{}
	for _, ref := range refs {
		owners[ref] = true
	}
	type group struct {
		ref  ObjectRef
		pods []*runPod
		src  Source
	}
	var groups []group
	for ref, o := range r.objects {
		if ref.Kind != KindDeployment && ref.Kind != KindPod {
			continue
		}
		if len(owners) > 0 && !owners[ref] {
			continue
		}
		groups = append(groups, group{ref: ref, pods: r.podsOf(ref), src: o.Origin()})
	}
	sort.Slice(groups, func(i, j int) bool {
		return groups[i].src.Line < groups[j].src.Line || groups[i].src.Line == groups[j].src.Line && groups[i].ref.String() < groups[j].ref.String()
	})
	deadline := time.Now().Add(timeout)
	var wg sync.WaitGroup
	for _, g := range groups {
		var checks []ContainerProbe
		if len(g.pods) > 0 {
			checks = g.pods[0].inst.Spec.Probes()
		}
		if len(checks) == 0 {
			continue
		}
		wg.Add(1)
		go func(g group, checks []ContainerProbe) {
			defer wg.Done()
			t0 := time.Now()
			var failed []string
			for _, rp := range g.pods {
				for _, c := range checks {
					if why := r.untilReady(ctx, rp, c, deadline); why != "" {
						failed = append(failed, fmt.Sprintf("%s: %s: %s", rp.inst.Name, c.Check, why))
					}
				}
			}
			name := fmt.Sprintf("%s %s", g.ref.Kind, g.ref.Name)
			var descr []string
			for _, c := range checks {
				descr = append(descr, c.Check.String())
			}
			res := Result{Step: step, Name: name + ": " + strings.Join(descr, "; "), Passed: len(failed) == 0, Source: g.src, Duration: time.Since(t0)}
			if len(failed) > 0 {
				res.Reason = strings.Join(failed, "; ")
			}
			r.record(res)
		}(g, checks)
	}
	wg.Wait()
}

// untilReady repeats a container probe from its pod until it passes or the
// deadline comes, as the kubelet does; it returns why it never passed.
func (r *runner) untilReady(ctx context.Context, rp *runPod, c ContainerProbe, deadline time.Time) string {
	dns := probe.PodDNSConfig(rp.inst.Namespace, r.dnsServer())
	timeout := c.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	if c.MaxTime != 0 && c.MaxTime < timeout {
		timeout = c.MaxTime
	}
	var pr probe.Probe
	hp := c.Host + ":" + strconv.Itoa(c.Port)
	if c.Protocol == "TCP" {
		pr = probe.TCP{Addr: hp, Timeout: timeout, DNS: dns}
	} else {
		status := 0
		if !c.FailOnHTTPError {
			status = probe.AnyStatus
		}
		pr = probe.HTTP{Method: c.Method, URL: "http://" + hp + c.Path, ExpectStatus: status, Timeout: timeout,
			ConnectTimeout: c.ConnectTimeout, DNS: dns, FollowRedirects: c.FollowRedirects}
	}
	last := ""
	for {
		res := pr.Run(ctx, rp.pod.NS)
		if res.OK() == c.ExpectSuccess {
			return ""
		}
		last = res.String()
		if time.Now().Add(200*time.Millisecond).After(deadline) || ctx.Err() != nil {
			return last
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return last
		}
	}
}

func (r *runner) delete(ctx context.Context, refs []ObjectRef) error {
	for _, ref := range refs {
		o, ok := r.objects[ref]
		if !ok {
			return fmt.Errorf("delete %s: does not exist", ref)
		}
		switch v := o.(type) {
		case *Pod, *Deployment:
			r.deletePodsOf(ctx, ref)
		case *Service:
			r.addrs.Release(ref)
			delete(r.services, ref)
			r.recs.DeleteService(ref.Namespace, ref.Name)
		case *Policy:
			if r.cp != nil {
				if err := r.cp.DeletePolicy(v.Decoded.Key); err != nil {
					return fmt.Errorf("delete %s: %w", ref, err)
				}
			}
		case *Namespace:
			return fmt.Errorf("delete %s: not supported yet: deleting namespaces", ref)
		}
		delete(r.objects, ref)
	}
	r.refreshServices()
	return nil
}

func (r *runner) scale(ctx context.Context, sc *ScaleStep) error {
	d, ok := r.objects[sc.Deployment].(*Deployment)
	if !ok {
		return fmt.Errorf("scale %s: no such Deployment", sc.Deployment)
	}
	have := r.podsOf(d.Ref())
	switch n := sc.Replicas - len(have); {
	case n > 0:
		if err := r.createPods(ctx, d.Instances(r.names, n)); err != nil {
			return fmt.Errorf("scale %s: %w", d.Meta.Name, err)
		}
	case n < 0:
		for _, p := range have[sc.Replicas:] {
			r.deletePod(ctx, p)
		}
	}
	r.refreshServices()
	return nil
}

// linkDown takes a device down like a cable pull: the kernel flushes the
// IPv4 routes through an administratively down device, so they are kept and
// linkUp puts them back (a link flap, not a reconfiguration).
func (r *runner) linkDown(h *netlink.Handle, t target) error {
	l, err := h.LinkByName(t.dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", t.dev, err)
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", t.dev, err)
	}
	r.mu.Lock()
	r.downRoutes[t.name] = append(r.downRoutes[t.name], routes...)
	r.mu.Unlock()
	return topo.LinkSetUp(h, t.dev, false)
}

// linkUp brings a device up and restores the routes linkDown saved, link
// and host scope first so that gateways are reachable again.
func (r *runner) linkUp(h *netlink.Handle, t target) error {
	if err := topo.LinkSetUp(h, t.dev, true); err != nil {
		return err
	}
	r.mu.Lock()
	routes := r.downRoutes[t.name]
	delete(r.downRoutes, t.name)
	r.mu.Unlock()
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Scope > routes[j].Scope })
	for _, rt := range routes {
		rt := rt
		if err := h.RouteReplace(&rt); err != nil {
			return fmt.Errorf("restore route %s on %s: %w", rt, t.dev, err)
		}
	}
	return nil
}

func (r *runner) fault(ctx context.Context, f *Fault) error {
	switch f.Kind {
	case FaultLinkDown, FaultLinkUp, FaultMTU:
		targets, err := r.deviceTargets(f.Device)
		if err != nil {
			return err
		}
		for _, t := range targets {
			h, err := t.ns.Handle()
			if err != nil {
				return fmt.Errorf("%s on %s: %w", f.Kind, t.name, err)
			}
			switch f.Kind {
			case FaultMTU:
				l, lerr := h.LinkByName(t.dev)
				if lerr == nil {
					lerr = h.LinkSetMTU(l, f.MTU)
				}
				err = lerr
			case FaultLinkDown:
				err = r.linkDown(h, t)
			case FaultLinkUp:
				err = r.linkUp(h, t)
			}
			h.Close()
			if err != nil {
				return fmt.Errorf("%s on %s: %w", f.Kind, t.name, err)
			}
		}
		return nil
	case FaultDeletePod:
		pods := r.workloadPods(f.Pod)
		if len(pods) == 0 {
			return fmt.Errorf("deletePod %s: no running pod", f.Pod)
		}
		victim := pods[0]
		owner := victim.inst.Owner
		r.deletePod(ctx, victim)
		if owner.Kind == KindDeployment {
			// The ReplicaSet replaces the pod under a new name.
			if d, ok := r.objects[owner].(*Deployment); ok {
				if err := r.createPods(ctx, d.Instances(r.names, 1)); err != nil {
					return fmt.Errorf("replace pod of %s: %w", owner, err)
				}
			}
		}
		r.refreshServices()
		return nil
	case FaultDatapathReload:
		if r.cp == nil {
			return errors.New("datapathReload: the scenario runs with datapath none")
		}
		if f.Node != "" {
			r.log.Info("datapathReload reloads every node (per-node reload not supported yet)", "node", f.Node)
		}
		return r.cp.Reload()
	}
	return fmt.Errorf("not supported yet: fault %s", f.Kind)
}
