package run

// Flow and metric assertions over the run's flow store and metrics.

import (
	"cmp"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/datapath/flow"
	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/scenarios"
	"github.com/podlab/podlab/scenarios/probe"
	"github.com/podlab/podlab/scenarios/result"
)

// checkFlow evaluates a flow assertion over the flows so far.
func (r *Runner) checkFlow(fa *scenarios.FlowAssertion) result.Expectation {
	desc := fmt.Sprintf("flow %s → %s", fa.From.Raw, fa.To.Raw)
	if fa.Verdict != "" {
		desc += " " + fa.Verdict
	}
	if fa.DropReason != "" {
		desc += " (" + fa.DropReason + ")"
	}
	if h := fa.HTTP; h != nil {
		desc += strings.TrimRight(fmt.Sprintf(" http-%s %s %s", cmp.Or(h.Type, "request/response"), h.Method, h.Path), " ")
		if h.Code != 0 {
			desc += fmt.Sprintf(" %d", h.Code)
		}
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
		if fa.HTTP != nil && !matchHTTP(fa.HTTP, f) {
			return false
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

// matchHTTP checks the L7 part of a flow against a flow assertion's http.
func matchHTTP(h *scenarios.FlowHTTP, f *flow.Flow) bool {
	if f.L7 == nil || f.L7.HTTP == nil {
		return false
	}
	switch h.Type {
	case "request":
		if f.L7.Type != flow.L7Request {
			return false
		}
	case "response":
		if f.L7.Type != flow.L7Response {
			return false
		}
	}
	return (h.Method == "" || strings.EqualFold(f.L7.HTTP.Method, h.Method)) &&
		(h.Path == "" || strings.HasSuffix(f.L7.HTTP.URL, h.Path)) &&
		(h.Code == 0 || int(f.L7.HTTP.Code) == h.Code)
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
