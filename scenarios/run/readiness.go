package run

// Readiness: waiting for pods to be ready and running their containers'
// exec readiness probes.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

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
