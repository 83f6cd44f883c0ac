package run

// Probe steps: resolving sources and targets, running probes from pods and
// world hosts, and judging their outcome (expectation, drop reason).

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/probe"
	"github.com/podlab/podlab/scenarios/result"
	"github.com/podlab/podlab/topo"
)

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
	case scenarios.PeerService, scenarios.PeerNodePort, scenarios.PeerLoadBalancer, scenarios.PeerExternalIP:
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
		if p.Kind == scenarios.PeerLoadBalancer {
			r.mu.Lock()
			ips, pending := rt.lbIPs, rt.lbPending
			r.mu.Unlock()
			if len(ips) == 0 {
				return "", 0, fmt.Errorf("service %s has no LoadBalancer IP (<pending>: %s)", p.Raw, pending)
			}
			return ips[0].String(), port, nil
		}
		if p.Kind == scenarios.PeerExternalIP {
			return rt.svc.ExternalIPs[0].String(), port, nil
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
func (r *Runner) probeStep(ctx context.Context, step *scenarios.Step, ps *scenarios.ProbeStep) []result.Expectation {
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
				// A DNS probe's only traffic is its lookup, which runProbe
				// never takes as its drop: any drop it would see is another
				// probe's (a parallel probe of the same pod).
				early := (ps.Expect == scenarios.ExpectTimeout || ps.Expect == scenarios.ExpectFail) &&
					ps.Protocol != scenarios.ProbeDNS
				results[i] = r.runProbe(ctx, src.ip, early, func(ctx context.Context) probe.Result {
					return r.oneProbe(ctx, ps, src, host, port, timeout)
				})
			}()
		}
		wg.Wait()
		what := string(ps.Protocol)
		if i := ps.ICMP; i != nil && (i.Size > 0 || i.DontFragment) {
			what = fmt.Sprintf("icmp size %d", i.Size)
			if i.DontFragment {
				what += " DF"
			}
		}
		if h := ps.HTTP; h != nil && h.HTTPS {
			what = "https"
		}
		if h := ps.HTTP; h != nil && (h.Method != "GET" || h.Path != "/" || len(h.Headers) > 0) {
			what = fmt.Sprintf("%s %s %s", what, h.Method, h.Path)
			for _, hv := range h.Headers {
				what += fmt.Sprintf(" -H %q", hv)
			}
		}
		desc := fmt.Sprintf("%s %s → %s (%s:%d) expect %s", what, src.name, ps.To.Raw, host, port, ps.Expect)
		if count > 1 {
			desc += fmt.Sprintf(" ×%d", count)
		}
		e := result.Expectation{Description: desc, Verdict: result.Passed, Duration: time.Since(start)}
		e.Probe = r.probeRecord(step, ps, src, start, results)
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

// probeRecord summarises one source's attempts for comparisons across
// datapaths: outcomes, and (Options.ProbeDrops) the drop reasons of the
// source's traffic during the probe.
func (r *Runner) probeRecord(step *scenarios.Step, ps *scenarios.ProbeStep, src source, start time.Time, results []probe.Result) *result.ProbeRecord {
	rec := &result.ProbeRecord{Step: r.stepIndex(step), StepName: step.Name, Protocol: string(ps.Protocol), From: src.name, To: ps.To.Raw,
		Expect: string(ps.Expect), Outcomes: map[string]int{}}
	if rec.Expect == "" {
		rec.Expect = string(scenarios.ExpectSuccess)
	}
	for _, res := range results {
		rec.Outcomes[string(res.Outcome)]++
	}
	if !r.o.ProbeDrops || r.pump == nil || !src.ip.IsValid() {
		return rec
	}
	r.pump.Drain(20 * time.Millisecond)
	// The window ends shortly after the last attempt: a retransmission of
	// an earlier probe's connection must not count for this one.
	end := start
	for _, res := range results {
		if e := res.Start.Add(res.Duration); e.After(end) {
			end = e
		}
	}
	from, to, ip := start.Add(-50*time.Millisecond), end.Add(100*time.Millisecond), src.ip.String()
	reasons := map[string]bool{}
	for _, f := range r.store.Last(0, func(f *flow.Flow) bool {
		return f.Verdict == flow.VerdictDropped && f.IP != nil && !f.Time.Before(from) && !f.Time.After(to) &&
			(f.IP.Source == ip || f.IP.Destination == ip) && probeTraffic(ps.Protocol, f)
	}) {
		reasons[f.DropReasonDesc.String()] = true
	}
	for reason := range reasons {
		rec.DropReasons = append(rec.DropReasons, reason)
	}
	sort.Strings(rec.DropReasons)
	return rec
}

// probeTraffic says whether a flow can belong to a probe of protocol p: its
// own protocol, or a DNS lookup (TCP and HTTP probes resolve names). Other
// traffic of the same pod (its exec readiness probes) does not count.
func probeTraffic(p scenarios.ProbeProtocol, f *flow.Flow) bool {
	if f.L4 == nil {
		return false
	}
	sport, dport := f.Ports()
	dns := (f.L4.UDP != nil || f.L4.TCP != nil) && (dport == 53 || sport == 53)
	switch p {
	case scenarios.ProbeHTTP, scenarios.ProbeTCP:
		return f.L4.TCP != nil || dns
	case scenarios.ProbeUDP:
		return f.L4.UDP != nil
	case scenarios.ProbeICMP:
		return f.L4.ICMPv4 != nil || f.L4.ICMPv6 != nil || dns
	case scenarios.ProbeDNS:
		return dns
	}
	return true
}

// stepIndex returns the index of s in the scenario's steps.
func (r *Runner) stepIndex(s *scenarios.Step) int {
	for i := range r.s.Steps {
		if &r.s.Steps[i] == s {
			return i
		}
	}
	return -1
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
			scheme := "http://"
			if ps.HTTP.HTTPS {
				scheme = "https://"
				if r.lab != nil && r.lab.CA != nil {
					h.RootCAs = r.lab.CA.Pool()
				}
			}
			h.Method, h.URL = ps.HTTP.Method, scheme+hp+ps.HTTP.Path
			h.ExpectStatus = ps.HTTP.Status
			h.ExpectBody = ps.HTTP.Body
			h.Header = http.Header{}
			if ps.HTTP.Padding > 0 {
				h.Header.Set("X-Podlab-Padding", strings.Repeat("x", ps.HTTP.Padding))
			}
			for _, hv := range ps.HTTP.Headers {
				name, value, _ := strings.Cut(hv, ":")
				h.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
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
		pi := probe.ICMP{Host: host, Timeout: timeout, DNS: dns}
		if ps.ICMP != nil {
			pi.Size, pi.DontFragment = ps.ICMP.Size, ps.ICMP.DontFragment
		}
		return pi.Run(ctx, src.ns)
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
