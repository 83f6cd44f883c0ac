package run

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/datapath/controlplane"
	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/probe"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/topo"
)

func sortPods(ps []*podRT) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].pod.Key() < ps[j].pod.Key() })
}

// runReadiness turns the containers' readiness/liveness exec probes into
// expectations, one step per Deployment or Pod, run in parallel.
func (r *Runner) runReadiness(ctx context.Context) {
	type owner struct {
		ref  scenarios.ObjectRef
		pods []*podRT
	}
	owners := map[string]*owner{}
	var order []string
	r.mu.Lock()
	for _, rt := range r.pods {
		if rt.inst.Spec == nil || len(rt.inst.Spec.Probes()) == 0 {
			continue
		}
		k := rt.inst.Owner.String()
		if owners[k] == nil {
			owners[k] = &owner{ref: rt.inst.Owner}
			order = append(order, k)
		}
		owners[k].pods = append(owners[k].pods, rt)
	}
	r.mu.Unlock()
	sort.Strings(order)
	steps := make([]result.Step, len(order))
	var wg sync.WaitGroup
	for i, k := range order {
		o := owners[k]
		sortPods(o.pods)
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := result.Step{Name: "probes of " + o.ref.String(), Kind: "readiness", Started: time.Now()}
			var mu sync.Mutex
			var pwg sync.WaitGroup
			for _, rt := range o.pods {
				for _, cp := range rt.inst.Spec.Probes() {
					pwg.Add(1)
					go func() {
						defer pwg.Done()
						e := r.containerProbe(ctx, rt, cp)
						mu.Lock()
						st.Expectations = append(st.Expectations, e)
						mu.Unlock()
					}()
				}
			}
			pwg.Wait()
			sort.Slice(st.Expectations, func(a, b int) bool { return st.Expectations[a].Description < st.Expectations[b].Description })
			st.Duration = time.Since(st.Started)
			steps[i] = st
		}()
	}
	wg.Wait()
	for _, st := range steps {
		r.record(st)
	}
}

// containerProbe runs one translated exec probe from its pod.
func (r *Runner) containerProbe(ctx context.Context, rt *podRT, cp scenarios.ContainerProbe) result.Expectation {
	uses := strings.Join(cp.Uses, "+")
	desc := fmt.Sprintf("%s %s: %s", rt.pod.Key(), uses, cp.Check.String())
	start := time.Now()
	host := cp.Check.Host
	if host == "localhost" {
		host = "127.0.0.1"
	}
	timeout := cp.Timeout
	if timeout == 0 || (cp.Check.MaxTime > 0 && cp.Check.MaxTime < timeout) {
		timeout = cp.Check.MaxTime
	}
	if timeout == 0 {
		timeout = r.probeTimeout()
	}
	port := cp.Check.Port
	url := fmt.Sprintf("http://%s:%d%s", host, port, cp.Check.Path)
	dns := probe.PodDNSConfig(rt.pod.Namespace, r.dnsIP)
	res := r.runProbe(ctx, rt.pod.IP, !cp.Check.ExpectSuccess, func(ctx context.Context) probe.Result {
		if args := cp.Check.CurlArgs(); args != nil {
			return r.curl(ctx, rt.pod.NS, args, timeout, dns)
		}
		if cp.Check.Protocol == "TCP" {
			return probe.TCP{Addr: fmt.Sprintf("%s:%d", host, port), Timeout: timeout, DNS: dns}.Run(ctx, rt.pod.NS)
		}
		st := 0
		if !cp.Check.FailOnHTTPError {
			st = probe.AnyStatus
		}
		return probe.HTTP{Method: cp.Check.Method, URL: url, Timeout: timeout, ConnectTimeout: cp.Check.ConnectTimeout, DNS: dns, ExpectStatus: st}.Run(ctx, rt.pod.NS)
	})
	e := result.Expectation{Description: desc, Duration: time.Since(start), Verdict: result.Passed}
	ok := res.Outcome == probe.Success
	if ok != cp.Check.ExpectSuccess {
		e.Verdict = result.Failed
		want := "succeed"
		if !cp.Check.ExpectSuccess {
			want = "fail"
		}
		e.Message = fmt.Sprintf("expected the request to %s, got %s (%s)", want, res.Outcome, res.Reason)
		e.Evidence = r.evidenceFor(rt.pod.IP, res)
	} else if !cp.Check.ExpectSuccess {
		e.Evidence = r.evidenceFor(rt.pod.IP, res)
	}
	return e
}

// curl runs a curl command line from ns as the container would: the lab
// CA is the trusted CA bundle (unless --cacert names another) and timeout
// (the probe's timeoutSeconds) bounds the whole command.
func (r *Runner) curl(ctx context.Context, ns *topo.Namespace, args []string, timeout time.Duration, dns probe.DNSConfig) probe.Result {
	cr, err := probe.ParseCurl(args)
	if err != nil {
		// ParseExecProbe accepted these arguments when the scenario loaded.
		return probe.Curl(ctx, ns, args, dns)
	}
	if cr.HTTP.Timeout == 0 || (timeout > 0 && timeout < cr.HTTP.Timeout) {
		cr.HTTP.Timeout = timeout
	}
	if r.lab != nil && r.lab.CA != nil {
		cr.HTTP.RootCAs = r.lab.CA.Pool()
	}
	return cr.Run(ctx, ns, dns)
}

func (r *Runner) probeTimeout() time.Duration {
	if r.s.Settings.ProbeTimeout > 0 {
		return r.s.Settings.ProbeTimeout
	}
	return scenarios.DefaultProbeTimeout
}

// evidenceFor lists the flows of the probe's source pod around the probe.
func (r *Runner) evidenceFor(src netip.Addr, res probe.Result) string {
	if r.pump == nil {
		return "no datapath: no flows recorded (--datapath=none)"
	}
	r.pump.Drain(20 * time.Millisecond)
	from := res.Start.Add(-50 * time.Millisecond)
	to := res.Start.Add(res.Duration + 200*time.Millisecond)
	fl := r.store.Last(0, func(f *flow.Flow) bool {
		if f.IP == nil || f.Time.Before(from) || f.Time.After(to) {
			return false
		}
		return f.IP.Source == src.String() || f.IP.Destination == src.String()
	})
	if len(fl) == 0 {
		return "no flow of " + src.String() + " during the probe"
	}
	if len(fl) > 12 {
		fl = fl[len(fl)-12:]
	}
	var b strings.Builder
	for _, f := range fl {
		b.WriteString(flowLine(f))
		b.WriteByte('\n')
	}
	return b.String()
}

// runStep executes one scenario step and records it.
func (r *Runner) runStep(ctx context.Context, s *scenarios.Step) {
	st := result.Step{Name: s.Name, Kind: s.Action(), Started: time.Now()}
	var caps []*pcap.Capture
	for _, d := range s.Captures {
		cs, err := r.startCaptures(ctx, d)
		if err != nil {
			st.Verdict, st.Message = result.Errored, err.Error()
			r.record(st)
			return
		}
		caps = append(caps, cs...)
	}
	err := r.doAction(ctx, s, &st)
	for _, c := range caps {
		_ = c.Stop()
	}
	if err != nil {
		st.Verdict, st.Message = result.Errored, err.Error()
	}
	for i := range s.Packets {
		st.Expectations = append(st.Expectations, r.checkPackets(&s.Packets[i], caps))
	}
	st.Duration = time.Since(st.Started)
	r.record(st)
}

func (r *Runner) doAction(ctx context.Context, s *scenarios.Step, st *result.Step) error {
	switch {
	case s.Apply != nil:
		return r.apply(ctx, s.Apply.Objects)
	case s.Delete != nil:
		return r.delete(ctx, s.Delete.Refs)
	case s.Scale != nil:
		return r.scale(ctx, s.Scale)
	case s.Wait != nil:
		return nil // workloads are ready when they listen, which AddPod+Start ensure
	case len(s.Probes) > 0:
		var wg sync.WaitGroup
		exps := make([][]result.Expectation, len(s.Probes))
		for i := range s.Probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				exps[i] = r.probeStep(ctx, &s.Probes[i])
			}()
		}
		wg.Wait()
		for _, e := range exps {
			st.Expectations = append(st.Expectations, e...)
		}
	case s.Flow != nil:
		st.Expectations = append(st.Expectations, r.checkFlow(s.Flow))
	case s.Metric != nil:
		st.Expectations = append(st.Expectations, r.checkMetric(s.Metric))
	case s.Fault != nil:
		return r.fault(ctx, s.Fault)
	case s.Serve != nil:
		return r.serve(ctx, s.Serve)
	case s.Sleep > 0:
		select {
		case <-time.After(s.Sleep):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// apply creates or replaces objects.
func (r *Runner) apply(ctx context.Context, objs []scenarios.Object) error {
	var placements []scenarios.PodInstance
	var errs []error
	for _, o := range objs {
		switch v := o.(type) {
		case *scenarios.Policy:
			errs = append(errs, r.applyPolicy(v))
		case *scenarios.Namespace:
			if r.cp != nil {
				r.cp.SetNamespaceLabels(v.Meta.Name, v.Meta.Labels)
			}
		case *scenarios.Pod:
			placements = append(placements, scenarios.PodInstanceOf(v))
		case *scenarios.Deployment:
			placements = append(placements, v.Instances(r.names, v.Replicas)...)
		}
	}
	if len(placements) > 0 {
		pl, err := r.sched.Place(placements)
		if err != nil {
			return err
		}
		errs = append(errs, r.createPods(ctx, pl))
	}
	for _, o := range objs {
		if v, ok := o.(*scenarios.Service); ok {
			errs = append(errs, r.applyService(v))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}

// delete removes objects.
func (r *Runner) delete(ctx context.Context, refs []scenarios.ObjectRef) error {
	var errs []error
	for _, ref := range refs {
		switch ref.Kind {
		case "Pod":
			errs = append(errs, r.deletePod(ctx, ref.Namespace+"/"+ref.Name))
		case "Deployment":
			for _, rt := range r.podsOf(ref.Namespace, ref.Name, "Deployment") {
				errs = append(errs, r.deletePod(ctx, rt.pod.Key()))
			}
		case "Service":
			r.mu.Lock()
			rt := r.services[ref.Namespace+"/"+ref.Name]
			delete(r.services, ref.Namespace+"/"+ref.Name)
			if rt != nil {
				r.addrs.Release(rt.svc.Ref())
			}
			r.mu.Unlock()
			if rt != nil {
				r.records.DeleteService(ref.Namespace, ref.Name)
				if r.cp != nil {
					if err := r.cp.DeleteService(ref.Namespace, ref.Name); err != nil && !errors.Is(err, controlplane.ErrServicesNotSupported) {
						errs = append(errs, err)
					}
				}
			}
		case "NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
			if r.cp != nil {
				for _, p := range r.cp.Policies() {
					if string(p.Key.Kind) == ref.Kind && p.Key.Name == ref.Name && (p.Key.Namespace == ref.Namespace || ref.Kind == "CiliumClusterwideNetworkPolicy") {
						errs = append(errs, r.cp.DeletePolicy(p.Key))
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("delete %s: not supported yet for kind %s", ref, ref.Kind))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}

// scale changes a Deployment's replica count.
func (r *Runner) scale(ctx context.Context, s *scenarios.ScaleStep) error {
	var dep *scenarios.Deployment
	for _, d := range r.s.Deployments {
		if d.Ref() == s.Deployment {
			dep = d
		}
	}
	if dep == nil {
		return fmt.Errorf("scale: unknown deployment %s", s.Deployment)
	}
	pods := r.podsOf(dep.Meta.Namespace, dep.Meta.Name, "Deployment")
	var errs []error
	switch {
	case s.Replicas > len(pods):
		pl, err := r.sched.Place(dep.Instances(r.names, s.Replicas-len(pods)))
		if err != nil {
			return err
		}
		errs = append(errs, r.createPods(ctx, pl))
	case s.Replicas < len(pods):
		// Like the ReplicaSet controller: the newest pods go first.
		for _, rt := range pods[s.Replicas:] {
			errs = append(errs, r.deletePod(ctx, rt.pod.Key()))
		}
	}
	errs = append(errs, r.resyncServices(), r.lab.SaveState())
	return errors.Join(errs...)
}

// fault injects a failure.
func (r *Runner) fault(ctx context.Context, f *scenarios.Fault) error {
	switch f.Kind {
	case scenarios.FaultLinkDown, scenarios.FaultLinkUp, scenarios.FaultMTU:
		ns, dev, err := r.deviceNS(f.Device)
		if err != nil {
			return err
		}
		h, err := ns.Handle()
		if err != nil {
			return err
		}
		defer h.Close()
		switch f.Kind {
		case scenarios.FaultMTU:
			return topo.LinkSetMTU(h, dev, f.MTU)
		case scenarios.FaultLinkDown:
			// The kernel drops a device's routes when it goes down and does
			// not bring them back: remember them for linkUp.
			routes, err := topo.DeviceRoutes(h, dev)
			if err != nil {
				return err
			}
			r.mu.Lock()
			if r.downRoutes == nil {
				r.downRoutes = map[string][]netlink.Route{}
			}
			r.downRoutes[ns.Name+"/"+dev] = routes
			r.mu.Unlock()
			return topo.LinkSetUp(h, dev, false)
		default:
			if err := topo.LinkSetUp(h, dev, true); err != nil {
				return err
			}
			r.mu.Lock()
			routes := r.downRoutes[ns.Name+"/"+dev]
			delete(r.downRoutes, ns.Name+"/"+dev)
			r.mu.Unlock()
			return topo.RestoreRoutes(h, routes)
		}
	case scenarios.FaultDeletePod:
		var victims []*podRT
		switch f.Pod.Kind {
		case scenarios.PeerDeployment:
			ps := r.podsOf(f.Pod.Namespace, f.Pod.Name, "Deployment")
			if len(ps) > 0 {
				victims = ps[:1]
			}
		default:
			victims = r.podsOf(f.Pod.Namespace, f.Pod.Name, "")
		}
		if len(victims) == 0 {
			return fmt.Errorf("deletePod: no pod %s", f.Pod.Raw)
		}
		v := victims[0]
		if err := r.deletePod(ctx, v.pod.Key()); err != nil {
			return err
		}
		if v.inst.Owner.Kind == "Deployment" {
			for _, d := range r.s.Deployments {
				if d.Ref() == v.inst.Owner {
					pl, err := r.sched.Place(d.Instances(r.names, 1))
					if err != nil {
						return err
					}
					if err := r.createPods(ctx, pl); err != nil {
						return err
					}
				}
			}
		}
		return errors.Join(r.resyncServices(), r.lab.SaveState())
	case scenarios.FaultSetMAC, scenarios.FaultSysctl, scenarios.FaultVXLAN:
		return r.rawFault(ctx, f)
	case scenarios.FaultDatapathReload:
		if r.cp == nil {
			return errors.New("datapathReload: the lab runs without a datapath (--datapath=none)")
		}
		return r.cp.Reload()
	}
	return fmt.Errorf("fault %s: not supported yet", f.Kind)
}

// deviceNS finds the namespace and device name of a named device.
func (r *Runner) deviceNS(d scenarios.Device) (*topo.Namespace, string, error) {
	c := r.lab.Cluster
	switch d.Kind {
	case scenarios.DeviceRaw:
		return r.rawDevice(d)
	case scenarios.DeviceNode:
		if n := c.Node(d.Node); n != nil {
			return n.NS, d.Name, nil
		}
	case scenarios.DeviceWorld:
		return c.World, topo.WorldEth0, nil
	case scenarios.DevicePod:
		if ps := r.podsOf(d.Namespace, d.Pod, d.OwnerKind); len(ps) > 0 {
			return ps[0].pod.NS, topo.PodEth0, nil
		}
	case scenarios.DevicePodVeth:
		if ps := r.podsOf(d.Namespace, d.Pod, d.OwnerKind); len(ps) > 0 {
			return ps[0].pod.Node.NS, ps[0].pod.HostVeth, nil
		}
	}
	return nil, "", fmt.Errorf("unknown device %s", d.Raw)
}

// source returns the namespaces a probe runs from (one per pod of a
// Deployment) with the Kubernetes namespace whose resolv.conf applies.
type source struct {
	name string
	ns   *topo.Namespace
	ip   netip.Addr
	k8s  string
}

func (r *Runner) sources(p scenarios.Peer) ([]source, error) {
	c := r.lab.Cluster
	switch p.Kind {
	case scenarios.PeerPod, scenarios.PeerDeployment:
		kind := ""
		if p.Kind == scenarios.PeerDeployment {
			kind = "Deployment"
		}
		var out []source
		for _, rt := range r.podsOf(p.Namespace, p.Name, kind) {
			out = append(out, source{rt.pod.Key(), rt.pod.NS, rt.pod.IP, rt.pod.Namespace})
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no pod %s", p.Raw)
		}
		return out, nil
	case scenarios.PeerNode:
		if n := c.Node(p.Node); n != nil {
			return []source{{n.Name, n.NS, n.IP, "default"}}, nil
		}
		return nil, fmt.Errorf("unknown node %s", p.Node)
	case scenarios.PeerWorld:
		return []source{{"world", c.World, topo.WorldUnderlayIP, ""}}, nil
	case scenarios.PeerNetns:
		return r.rawSources(p)
	}
	return nil, fmt.Errorf("probes cannot start from %s", p.Raw)
}

// target returns the host (IP or name) and default port of a probe's
// destination.
func (r *Runner) target(p scenarios.Peer) (string, int, error) {
	c := r.lab.Cluster
	switch p.Kind {
	case scenarios.PeerPod, scenarios.PeerDeployment:
		kind := ""
		if p.Kind == scenarios.PeerDeployment {
			kind = "Deployment"
		}
		ps := r.podsOf(p.Namespace, p.Name, kind)
		if len(ps) == 0 {
			return "", 0, fmt.Errorf("no pod %s", p.Raw)
		}
		return ps[0].pod.IP.String(), 0, nil
	case scenarios.PeerService, scenarios.PeerNodePort:
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		r.mu.Lock()
		rt := r.services[ns+"/"+p.Name]
		r.mu.Unlock()
		if rt == nil {
			return "", 0, fmt.Errorf("no service %s", p.Raw)
		}
		port := 0
		if len(rt.svc.Ports) > 0 {
			port = rt.svc.Ports[0].Port
		}
		if p.Kind == scenarios.PeerNodePort {
			n := c.Node(p.Node)
			if n == nil {
				return "", 0, fmt.Errorf("unknown node %s", p.Node)
			}
			return n.IP.String(), rt.nodePorts[port], nil
		}
		if rt.svc.Headless {
			return rt.svc.Meta.Name + "." + ns + ".svc.cluster.local", port, nil
		}
		return rt.ip.String(), port, nil
	case scenarios.PeerNode:
		if n := c.Node(p.Node); n != nil {
			return n.IP.String(), 0, nil
		}
		return "", 0, fmt.Errorf("unknown node %s", p.Node)
	case scenarios.PeerWorld:
		return topo.WorldUnderlayIP.String(), 0, nil
	case scenarios.PeerIP:
		return p.IP.String(), 0, nil
	case scenarios.PeerDNSName:
		return p.Host, 0, nil
	case scenarios.PeerNetns:
		return r.rawTarget(p)
	}
	return "", 0, fmt.Errorf("unknown target %s", p.Raw)
}

// probeStep runs a probe from every source pod, Count times each.
func (r *Runner) probeStep(ctx context.Context, ps *scenarios.ProbeStep) []result.Expectation {
	srcs, err := r.sources(ps.From)
	if err != nil {
		return []result.Expectation{{Description: fmt.Sprintf("%s %s → %s", ps.Protocol, ps.From.Raw, ps.To.Raw), Verdict: result.Errored, Message: err.Error()}}
	}
	host, port, err := r.target(ps.To)
	if err != nil {
		return []result.Expectation{{Description: fmt.Sprintf("%s %s → %s", ps.Protocol, ps.From.Raw, ps.To.Raw), Verdict: result.Errored, Message: err.Error()}}
	}
	if ps.Port != 0 {
		port = ps.Port
	}
	if port == 0 {
		switch ps.Protocol {
		case scenarios.ProbeHTTP:
			port = 80
		case scenarios.ProbeDNS:
			port = 53
		default:
			port = 7
		}
	}
	count := max(ps.Count, 1)
	par := max(ps.Parallel, 1)
	timeout := ps.Timeout
	if timeout == 0 {
		timeout = r.probeTimeout()
	}
	var out []result.Expectation
	for _, src := range srcs {
		start := time.Now()
		results := make([]probe.Result, count)
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		for i := range count {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				early := ps.Expect == scenarios.ExpectTimeout || ps.Expect == scenarios.ExpectFail
				results[i] = r.runProbe(ctx, src.ip, early, func(ctx context.Context) probe.Result {
					return r.oneProbe(ctx, ps, src, host, port, timeout)
				})
			}()
		}
		wg.Wait()
		desc := fmt.Sprintf("%s %s → %s (%s:%d) expect %s", ps.Protocol, src.name, ps.To.Raw, host, port, ps.Expect)
		if count > 1 {
			desc += fmt.Sprintf(" ×%d", count)
		}
		e := result.Expectation{Description: desc, Verdict: result.Passed, Duration: time.Since(start)}
		bad := 0
		var first probe.Result
		for _, res := range results {
			if !outcomeMeets(res, ps.Expect) {
				if bad == 0 {
					first = res
				}
				bad++
			}
		}
		if bad > 0 {
			e.Verdict = result.Failed
			e.Message = fmt.Sprintf("%d/%d attempts did not meet %q: first got %s (%s)", bad, count, ps.Expect, first.Outcome, first.Reason)
			e.Evidence = r.evidenceFor(src.ip, first)
		} else if ps.DropReason != "" {
			if msg, ev := r.checkDropReason(src.ip, ps.DropReason, start); msg != "" {
				e.Verdict, e.Message, e.Evidence = result.Failed, msg, ev
			} else {
				e.Evidence = ev
			}
		}
		out = append(out, e)
	}
	return out
}

// runProbe runs one probe from a pod. When the probe is expected to fail
// and the datapath drops the probe's traffic (other than its DNS lookup),
// the verdict is known at that moment: a dropped SYN or datagram is never
// answered, so the probe is cut short and reported as a timeout caused by
// that drop instead of waiting the full timeout.
func (r *Runner) runProbe(ctx context.Context, src netip.Addr, early bool, run func(context.Context) probe.Result) probe.Result {
	if !early || r.pump == nil || !src.IsValid() {
		return run(ctx)
	}
	start := time.Now()
	sub := r.store.Subscribe(256, func(f *flow.Flow) bool {
		if f.Verdict != flow.VerdictDropped || f.IP == nil || f.IP.Source != src.String() || f.Time.Before(start) {
			return false
		}
		_, dport := f.Ports()
		return dport != 53
	})
	defer sub.Close()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan probe.Result, 1)
	go func() { done <- run(pctx) }()
	select {
	case res := <-done:
		return res
	case f := <-sub.C:
		cancel()
		res := <-done
		res.Outcome = probe.Timeout
		res.Reason = "no answer: the datapath dropped it (" + f.DropReasonDesc.Text() + "): " + flowLine(f)
		res.Duration = time.Since(start)
		return res
	}
}

func (r *Runner) oneProbe(ctx context.Context, ps *scenarios.ProbeStep, src source, host string, port int, timeout time.Duration) probe.Result {
	var dns probe.DNSConfig
	if src.k8s != "" {
		dns = probe.PodDNSConfig(src.k8s, r.dnsIP)
	} else {
		dns = probe.PodDNSConfig("default", r.dnsIP)
	}
	hp := fmt.Sprintf("%s:%d", host, port)
	switch ps.Protocol {
	case scenarios.ProbeHTTP:
		h := probe.HTTP{URL: "http://" + hp, Timeout: timeout, DNS: dns}
		if ps.HTTP != nil {
			h.Method, h.URL = ps.HTTP.Method, "http://"+hp+ps.HTTP.Path
			h.ExpectStatus = ps.HTTP.Status
			if ps.HTTP.Padding > 0 {
				h.Header = http.Header{"X-Podlab-Padding": {strings.Repeat("x", ps.HTTP.Padding)}}
			}
		}
		return h.Run(ctx, src.ns)
	case scenarios.ProbeTCP:
		return probe.TCP{Addr: hp, Timeout: timeout, DNS: dns}.Run(ctx, src.ns)
	case scenarios.ProbeUDP:
		u := probe.UDP{Addr: hp, Timeout: timeout, DNS: dns}
		if ps.UDP != nil {
			u.Payload = []byte(ps.UDP.Payload)
			if ps.UDP.ExpectEcho {
				u.Expect = []byte(ps.UDP.Payload)
			}
		}
		return u.Run(ctx, src.ns)
	case scenarios.ProbeICMP:
		return probe.ICMP{Host: host, Timeout: timeout, DNS: dns}.Run(ctx, src.ns)
	case scenarios.ProbeDNS:
		d := probe.DNS{Config: dns, Timeout: timeout}
		if ap, err := netip.ParseAddr(host); err == nil {
			d.Config.Server = netip.AddrPortFrom(ap, uint16(port))
		}
		if ps.DNS != nil {
			d.Name = ps.DNS.Name
			if t, ok := dnsTypes[strings.ToUpper(ps.DNS.Type)]; ok {
				d.Type = t
			}
			for _, a := range ps.DNS.Answers {
				d.ExpectAddrs = append(d.ExpectAddrs, r.answerAddrs(a)...)
			}
		}
		return d.Run(ctx, src.ns)
	}
	return probe.Result{Outcome: probe.Error, Reason: "unknown probe protocol " + string(ps.Protocol)}
}

var dnsTypes = map[string]dnsmessage.Type{"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME, "SRV": dnsmessage.TypeSRV, "TXT": dnsmessage.TypeTXT, "PTR": dnsmessage.TypePTR, "": dnsmessage.TypeA}

// answerAddrs resolves an expected DNS answer: an IP, service/NAME,
// deployment/NAME or pod/NAME.
func (r *Runner) answerAddrs(a string) []netip.Addr {
	if ip, err := netip.ParseAddr(a); err == nil {
		return []netip.Addr{ip}
	}
	addrs, _ := r.Addresses(a)
	return addrs
}

func outcomeMeets(res probe.Result, want scenarios.Expectation) bool {
	switch want {
	case scenarios.ExpectSuccess, "":
		return res.Outcome == probe.Success
	case scenarios.ExpectFail:
		return res.Outcome != probe.Success
	}
	return string(res.Outcome) == string(want)
}

// checkDropReason looks for a drop of src's traffic with the reason since
// start.
func (r *Runner) checkDropReason(src netip.Addr, reason string, since time.Time) (string, string) {
	if r.pump == nil {
		return "drop reasons need the BPF datapath (this run uses --datapath=none)", ""
	}
	r.pump.Drain(20 * time.Millisecond)
	drops := r.store.Last(0, func(f *flow.Flow) bool {
		return f.Verdict == flow.VerdictDropped && f.IP != nil && !f.Time.Before(since.Add(-50*time.Millisecond)) &&
			(f.IP.Source == src.String() || f.IP.Destination == src.String())
	})
	for _, f := range drops {
		if strings.EqualFold(f.DropReasonDesc.Text(), reason) || strings.EqualFold(f.DropReasonDesc.String(), reason) {
			return "", flowLine(f)
		}
	}
	var seen []string
	for _, f := range drops {
		seen = append(seen, flowLine(f))
	}
	if len(seen) == 0 {
		return fmt.Sprintf("expected a %q drop of %s's traffic, the datapath dropped none", reason, src), ""
	}
	return fmt.Sprintf("expected a %q drop of %s's traffic", reason, src), strings.Join(seen, "\n")
}

// checkFlow evaluates a flow assertion over the flows so far.
func (r *Runner) checkFlow(fa *scenarios.FlowAssertion) result.Expectation {
	desc := fmt.Sprintf("flow %s → %s", fa.From.Raw, fa.To.Raw)
	if fa.Verdict != "" {
		desc += " " + fa.Verdict
	}
	if fa.DropReason != "" {
		desc += " (" + fa.DropReason + ")"
	}
	if fa.Absent {
		desc = "no " + desc
	}
	e := result.Expectation{Description: desc, Verdict: result.Passed}
	if r.pump == nil {
		e.Verdict, e.Message = result.Failed, "flow assertions need the BPF datapath (this run uses --datapath=none)"
		return e
	}
	r.pump.Drain(20 * time.Millisecond)
	from := r.peerAddrs(fa.From)
	to := r.peerAddrs(fa.To)
	// "world" in a flow is any peer outside the cluster: identity world.
	isWorld := func(ep *flow.Endpoint) bool { return ep != nil && ep.Identity == uint32(identity.World) }
	match := func(f *flow.Flow) bool {
		if f.IP == nil {
			return false
		}
		if fa.From.Kind == scenarios.PeerWorld {
			if !isWorld(f.Source) {
				return false
			}
		} else if len(from) > 0 && !contains(from, f.IP.Source) {
			return false
		}
		if fa.To.Kind == scenarios.PeerWorld {
			if !isWorld(f.Destination) {
				return false
			}
		} else if len(to) > 0 && !contains(to, f.IP.Destination) {
			return false
		}
		if fa.Verdict != "" && !strings.EqualFold(f.Verdict.String(), fa.Verdict) {
			return false
		}
		if fa.DropReason != "" && !strings.EqualFold(f.DropReasonDesc.Text(), fa.DropReason) && !strings.EqualFold(f.DropReasonDesc.String(), fa.DropReason) {
			return false
		}
		if fa.Protocol != "" && !strings.EqualFold(f.Protocol(), fa.Protocol) {
			return false
		}
		if fa.Port != 0 {
			_, dp := f.Ports()
			if int(dp) != fa.Port {
				return false
			}
		}
		return true
	}
	got := r.store.Last(0, match)
	switch {
	case fa.Absent && len(got) > 0:
		e.Verdict, e.Message = result.Failed, fmt.Sprintf("%d matching flows exist", len(got))
		e.Evidence = flowLines(got, 10)
	case !fa.Absent && len(got) == 0:
		e.Verdict, e.Message = result.Failed, "no matching flow"
		e.Evidence = flowLines(r.store.Last(10, func(f *flow.Flow) bool {
			return f.IP != nil && (len(from) == 0 || contains(from, f.IP.Source))
		}), 10)
	case len(got) > 0:
		e.Evidence = flowLines(got, 5)
	}
	return e
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func flowLines(fs []*flow.Flow, n int) string {
	if len(fs) > n {
		fs = fs[len(fs)-n:]
	}
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(flowLine(f))
		b.WriteByte('\n')
	}
	return b.String()
}

// peerAddrs returns the IPs a flow endpoint stands for.
func (r *Runner) peerAddrs(p scenarios.Peer) []string {
	var out []string
	switch p.Kind {
	case scenarios.PeerPod, scenarios.PeerDeployment:
		kind := ""
		if p.Kind == scenarios.PeerDeployment {
			kind = "Deployment"
		}
		for _, rt := range r.podsOf(p.Namespace, p.Name, kind) {
			out = append(out, rt.pod.IP.String())
		}
	default:
		h, _, err := r.target(p)
		if err != nil {
			return nil
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(h); err == nil {
			ips = append(ips, ip)
		} else {
			// A name, resolved as a pod of the default namespace would.
			for _, cand := range probe.PodDNSConfig("default", r.dnsIP).Candidates(h) {
				if ans := r.records.Lookup(cand, dnsmessage.TypeA); len(ans.Addrs) > 0 {
					ips = ans.Addrs
					break
				}
			}
		}
		for _, ip := range ips {
			out = append(out, ip.String())
			// Flows carry the backend after the datapath's DNAT: a
			// Service stands for its backends too.
			out = append(out, r.backendsOf(ip)...)
		}
	}
	return out
}

// backendsOf returns the pod IPs behind a ClusterIP.
func (r *Runner) backendsOf(vip netip.Addr) []string {
	r.mu.Lock()
	var svc *svcRT
	for _, s := range r.services {
		if s.ip == vip {
			svc = s
		}
	}
	r.mu.Unlock()
	if svc == nil {
		return nil
	}
	var out []string
	for _, pe := range scenarios.Endpoints(svc.svc, r.placements()) {
		for _, b := range pe.Backends {
			if ip, ok := r.podIP(b.Namespace, b.Pod); ok {
				out = append(out, ip.String())
			}
		}
	}
	return out
}

// checkMetric evaluates a metric assertion over the flows so far.
func (r *Runner) checkMetric(ma *scenarios.MetricAssertion) result.Expectation {
	var labels []string
	for k, v := range ma.Labels {
		labels = append(labels, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(labels)
	desc := fmt.Sprintf("metric %s{%s} %s %s", ma.Name, strings.Join(labels, ","), ma.Op, strconv.FormatFloat(ma.Value, 'f', -1, 64))
	e := result.Expectation{Description: desc, Verdict: result.Passed}
	if r.pump != nil {
		r.pump.Drain(20 * time.Millisecond)
	}
	if r.o.MetricValue == nil {
		e.Verdict, e.Message = result.Errored, "no metrics source configured for this run"
		return e
	}
	v, found, err := r.o.MetricValue(r.store.Last(0, nil), ma.Name, ma.Labels)
	if err != nil {
		e.Verdict, e.Message = result.Errored, err.Error()
		return e
	}
	ok := false
	switch ma.Op {
	case ">=":
		ok = v >= ma.Value
	case "<=":
		ok = v <= ma.Value
	case ">":
		ok = v > ma.Value
	case "<":
		ok = v < ma.Value
	default:
		ok = v == ma.Value
	}
	if !ok {
		e.Verdict = result.Failed
		e.Message = fmt.Sprintf("value is %s", strconv.FormatFloat(v, 'f', -1, 64))
		if !found {
			e.Message += " (no series with these labels)"
		}
	}
	return e
}

// flowLine renders a flow as one line of evidence:
// time node src -> dst VERDICT (reason) summary.
func flowLine(f *flow.Flow) string {
	src, dst := "?", "?"
	if f.IP != nil {
		src, dst = f.IP.Source, f.IP.Destination
	}
	sp, dp := f.Ports()
	if sp != 0 || dp != 0 {
		src, dst = fmt.Sprintf("%s:%d", src, sp), fmt.Sprintf("%s:%d", dst, dp)
	}
	if f.Source != nil && f.Source.PodName != "" {
		src = f.Source.Namespace + "/" + f.Source.PodName + " (" + src + ")"
	}
	if f.Destination != nil && f.Destination.PodName != "" {
		dst = f.Destination.Namespace + "/" + f.Destination.PodName + " (" + dst + ")"
	}
	verdict := f.Verdict.String()
	if f.Verdict == flow.VerdictDropped {
		verdict += " (" + f.DropReasonDesc.Text() + ")"
	}
	point := ""
	if f.TraceObservationPoint != flow.TraceUnknownPoint {
		point = " " + f.TraceObservationPoint.String()
	}
	return fmt.Sprintf("%s %s %s -> %s %s%s %s", f.Time.Format("15:04:05.000000"), f.NodeName, src, dst, verdict, point, f.Summary)
}

// checkPackets evaluates a packet assertion against the step's captures,
// or the scenario-wide ones.
func (r *Runner) checkPackets(pa *scenarios.PacketAssertion, stepCaps []*pcap.Capture) result.Expectation {
	e := result.Expectation{Description: fmt.Sprintf("packets on %s: %s", pa.Device.Raw, pa.Describe()), Verdict: result.Passed}
	var src pcap.Source
	names := r.captureNames(pa.Device)
	var found []*pcap.Capture
	for _, c := range append(append([]*pcap.Capture(nil), stepCaps...), r.captures...) {
		for _, n := range names {
			if c.Interface() == n {
				found = append(found, c)
			}
		}
	}
	name := pa.Device.Raw
	switch len(found) {
	case 0:
	case 1:
		src, name = found[0], found[0].Interface()
	default:
		// A Deployment's device: the packets of all its pods, in time order.
		var pkts []pcap.Packet
		for _, c := range found {
			pkts = append(pkts, c.Packets()...)
		}
		pcap.SortByTime(pkts)
		src = pcap.NewRecording(name, "capture.pcapng", pkts)
	}
	if src == nil {
		e.Verdict, e.Message = result.Errored, fmt.Sprintf("no capture on %s (captured: %s)", pa.Device.Raw, strings.Join(r.allCaptureNames(), ", "))
		return e
	}
	if err := pa.Check(src, r); err != nil {
		e.Verdict, e.Message = result.Failed, firstLine(err.Error())
		e.Evidence = err.Error()
		for _, c := range found {
			e.Captures = append(e.Captures, r.captureFile(c))
		}
	}
	return e
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// captureNames are the interface names the captures of d get (one per pod
// of a Deployment).
func (r *Runner) captureNames(d scenarios.Device) []string {
	switch d.Kind {
	case scenarios.DeviceRaw:
		return []string{d.Namespace + "/" + d.Name}
	case scenarios.DeviceNode:
		return []string{d.Node + "/" + d.Name}
	case scenarios.DeviceWorld:
		return []string{"world/" + topo.WorldEth0}
	case scenarios.DevicePod, scenarios.DevicePodVeth:
		var out []string
		for _, rt := range r.podsOf(d.Namespace, d.Pod, d.OwnerKind) {
			if d.Kind == scenarios.DevicePod {
				out = append(out, rt.pod.Name+"/eth0")
			} else {
				out = append(out, rt.pod.Node.Name+"/"+rt.pod.HostVeth)
			}
		}
		return out
	}
	return []string{d.Raw}
}

func (r *Runner) allCaptureNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.allCaps {
		out = append(out, c.Interface())
	}
	return out
}

// Addresses implements pcap.Resolver over the lab, with the scenario
// format's naming: pod/NAME, deployment/NAME, service/NAME, node/NAME
// (each kind may take NS/NAME), NS/NAME for a pod; a bare name is a node,
// then a Deployment's pods, then a Pod, then a Service's ClusterIP, then a
// world host's name.
func (r *Runner) Addresses(name string) ([]netip.Addr, error) {
	if r.s.Topology != nil {
		return r.rawAddresses(name)
	}
	kind, rest, _ := strings.Cut(name, "/")
	switch kind {
	case "pod", "deployment", "service", "svc", "node":
	default:
		kind, rest = "", name
	}
	ns, short, nsGiven := strings.Cut(rest, "/")
	if !nsGiven {
		ns, short = "default", rest
	}
	podIPs := func(ownerKind string) []netip.Addr {
		var out []netip.Addr
		for _, rt := range r.podsOf(ns, short, ownerKind) {
			out = append(out, rt.pod.IP)
		}
		return out
	}
	svcIP := func() []netip.Addr {
		r.mu.Lock()
		defer r.mu.Unlock()
		if rt := r.services[ns+"/"+short]; rt != nil && rt.ip.IsValid() {
			return []netip.Addr{rt.ip}
		}
		return nil
	}
	c := r.lab.Cluster
	switch kind {
	case "node":
		if n := c.Node(rest); n != nil {
			return []netip.Addr{n.IP}, nil
		}
	case "pod":
		if ips := podIPs(""); len(ips) > 0 {
			return ips, nil
		}
	case "deployment":
		if ips := podIPs("Deployment"); len(ips) > 0 {
			return ips, nil
		}
	case "service", "svc":
		if ips := svcIP(); len(ips) > 0 {
			return ips, nil
		}
	default:
		if n := c.Node(rest); n != nil && !nsGiven {
			return []netip.Addr{n.IP}, nil
		}
		if ips := podIPs("Deployment"); len(ips) > 0 {
			return ips, nil
		}
		if ips := podIPs(""); len(ips) > 0 {
			return ips, nil
		}
		if ips := svcIP(); len(ips) > 0 {
			return ips, nil
		}
		if rest == "world" {
			return []netip.Addr{topo.WorldUnderlayIP}, nil
		}
		if ip, err := netip.ParseAddr(rest); err == nil {
			return []netip.Addr{ip}, nil
		}
		if ans := r.records.Lookup(strings.TrimSuffix(rest, ".")+".", dnsmessage.TypeA); len(ans.Addrs) > 0 {
			return ans.Addrs, nil
		}
	}
	return nil, fmt.Errorf("unknown lab name %q", name)
}

// IdentityOf implements pcap.Resolver: the identity of a pod (or a
// Deployment's pods).
func (r *Runner) IdentityOf(name string) (uint32, error) {
	if r.cp == nil {
		return 0, errors.New("identities need the BPF datapath")
	}
	ns, pod, ok := strings.Cut(name, "/")
	if !ok {
		ns, pod = "default", name
	}
	ps := r.podsOf(ns, pod, "")
	if len(ps) == 0 {
		ps = r.podsOf(ns, pod, "Deployment")
	}
	if len(ps) == 0 {
		return 0, fmt.Errorf("unknown pod %q", name)
	}
	id, ok := r.cp.IdentityOf(ps[0].pod.Key())
	if !ok {
		return 0, fmt.Errorf("pod %q has no identity", name)
	}
	return uint32(id), nil
}
