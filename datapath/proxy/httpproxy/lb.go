package httpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy"
	"github.com/podlab/podlab/datapath/proxy/envoyconfig"
)

// LoadBalancer is what one L7 load balancer listener serves: the Envoy
// listener of a CiliumEnvoyConfig, its clusters and where their endpoints
// come from.
type LoadBalancer struct {
	Listener *envoyconfig.Listener
	Clusters map[string]*envoyconfig.Cluster
	// Endpoints returns the backends of a cluster for a connection made to
	// a frontend port.
	Endpoints func(c *envoyconfig.Cluster, frontendPort uint16) []netip.AddrPort
}

// maxBufferedBody bounds a request body kept for retries.
const maxBufferedBody = 1 << 20

// Remove closes one listener (its connections stay until they end).
func (p *Proxy) Remove(l proxy.Listener) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, ok := p.lns[l]
	if !ok {
		return nil
	}
	delete(p.lns, l)
	return ln.Close()
}

// upstreams are the connections one client connection opened to backends.
type upstreams map[netip.AddrPort]*upstream

type upstream struct {
	c  net.Conn
	br *bufio.Reader
}

func (u upstreams) closeAll() {
	for _, x := range u {
		x.c.Close()
	}
}

// handleLB serves a connection the datapath handed to an L7 load balancer:
// each request is routed (virtual host, route, weighted cluster), rewritten,
// judged against the client's egress policy and a local backend's ingress
// policy for the backend the cluster picks, and forwarded, with the
// route's retries.
func (p *Proxy) handleLB(c *proxy.Conn) error {
	br := bufio.NewReader(c)
	ups := upstreams{}
	defer ups.closeAll()
	for {
		_, req, err := readHead(br, nil)
		if err != nil {
			return err
		}
		var lb *LoadBalancer
		if p.cfg.LoadBalancer != nil {
			lb = p.cfg.LoadBalancer(c.Listener)
		}
		rec := Record{Time: time.Now(), Source: c.Source, Destination: c.OrigDst,
			SourceIdentity: c.SourceIdentity, Method: req.Method, URL: requestURL(req), Protocol: req.Proto, Headers: req.Header}
		body, err := readBody(br, req)
		if err != nil {
			return err
		}
		if lb == nil || lb.Listener.Routes == nil {
			return p.answer(c, req, rec, time.Now(), http.StatusServiceUnavailable, "no healthy upstream", true)
		}
		route, ok := lb.Listener.Routes.Match(req.Host, req.RequestURI)
		if !ok {
			p.report(rec)
			if err := p.answer(c, req, rec, time.Now(), http.StatusNotFound, "", req.Close); err != nil || req.Close {
				return err
			}
			continue
		}
		done, err := p.forwardLB(c, req, body, rec, lb, route, ups)
		if err != nil || done {
			return err
		}
	}
}

// readBody reads a request body whole (for retries); a chunked body is
// decoded and forwarded with its length.
func readBody(br *bufio.Reader, req *http.Request) ([]byte, error) {
	var body []byte
	var err error
	switch {
	case chunked(req.TransferEncoding):
		if body, err = io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), maxBufferedBody+1)); err != nil {
			return nil, fmt.Errorf("chunked body: %w", err)
		}
		for { // trailers, up to the blank line
			line, err := br.ReadSlice('\n')
			if err != nil {
				return nil, err
			}
			if string(line) == "\r\n" || string(line) == "\n" {
				break
			}
		}
		req.TransferEncoding = nil
		req.ContentLength = int64(len(body))
	case req.ContentLength > maxBufferedBody:
		return nil, fmt.Errorf("request body of %d bytes above %d", req.ContentLength, maxBufferedBody)
	case req.ContentLength > 0:
		body = make([]byte, req.ContentLength)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, err
		}
	}
	if len(body) > maxBufferedBody {
		return nil, fmt.Errorf("request body above %d bytes", maxBufferedBody)
	}
	return body, nil
}

// forwardLB sends one routed request, retrying as the route says.
func (p *Proxy) forwardLB(c *proxy.Conn, req *http.Request, body []byte, rec Record, lb *LoadBalancer, route *envoyconfig.Route, ups upstreams) (bool, error) {
	start := time.Now()
	clusterName := route.PickCluster(rand.Uint64())
	cl := lb.Clusters[clusterName]
	target := route.Rewrite(req.RequestURI)
	if target != req.RequestURI {
		req.Header.Set("X-Envoy-Original-Path", req.RequestURI)
	}
	if lb.Listener.AppendXFF {
		prior := req.Header.Get("X-Forwarded-For")
		if prior != "" {
			prior += ", "
		}
		req.Header.Set("X-Forwarded-For", prior+c.Source.Addr().String())
	}
	var eps []netip.AddrPort
	if cl != nil && lb.Endpoints != nil {
		eps = lb.Endpoints(cl, c.OrigDst.Port())
	}
	if len(eps) == 0 {
		p.report(rec)
		return true, p.answer(c, req, rec, start, http.StatusServiceUnavailable, "no healthy upstream", true)
	}
	state := p.clusters.get(c.Listener.Name + "|" + clusterName)
	attempts := 1
	if route.Retry != nil {
		attempts += route.Retry.NumRetries
	}
	for try := 0; ; try++ {
		be := state.pick(cl, eps)
		r := rec
		r.Destination = be
		r.Time = time.Now()
		denied, dstID := p.judgeLB(c, req, target, be)
		r.DestinationIdentity = dstID
		if denied {
			r.Denied, r.Code = true, http.StatusForbidden
			p.report(r)
			if err := writeDenied(c, req); err != nil {
				return true, err
			}
			return req.Close, nil
		}
		p.report(r)
		status, up, rhead, resp, connectFailed := p.attempt(c, req, body, target, be, r.SourceIdentity, cl, route, ups)
		state.record(cl, be, status, connectFailed)
		last := try+1 >= attempts
		if status != 0 && (last || !route.Retry.Retries(status, false)) {
			return p.relayResponse(c, up.br, rhead, resp, req, r, start)
		}
		if status != 0 {
			// Retried: drop this answer.
			_ = copyBody(io.Discard, up.br, resp.Header, resp.ContentLength, resp.TransferEncoding, false)
			p.report(Record{Time: time.Now(), Response: true, Source: r.Source, Destination: r.Destination, SourceIdentity: r.SourceIdentity,
				DestinationIdentity: r.DestinationIdentity, Method: req.Method, URL: r.URL, Protocol: resp.Proto, Code: status, Latency: time.Since(start)})
			continue
		}
		if !last && route.Retry.Retries(0, connectFailed) {
			continue
		}
		reason := "connection termination"
		if connectFailed {
			reason = "connection failure"
		}
		return true, p.answer(c, req, r, start, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: "+reason, true)
	}
}

// judgeLB applies the policies to a request the load balancer sends to be:
// the client's egress policy (L3/L4, which the datapath skipped for the
// load-balanced frontend, and its HTTP rules) and, for a backend on this
// node, its ingress HTTP rules, on the rewritten request.
func (p *Proxy) judgeLB(c *proxy.Conn, req *http.Request, target string, be netip.AddrPort) (denied bool, dstID uint32) {
	dstID = p.cfg.Registry.Identity(be.Addr())
	srcID := c.SourceIdentity
	var egress, ingress side
	if p.cfg.Local != nil {
		if dst, ok := p.cfg.Local(be.Addr()); ok {
			dstID = dst.Identity
		}
		if src, ok := p.cfg.Local(c.Source.Addr()); ok {
			srcID = src.Identity
			if ok, _ := src.Policy.Verdict(policy.Egress, identity.ID(dstID), policy.ProtoTCP, be.Port()); !ok {
				return true, dstID
			}
			egress = collect(src.Policy, policy.Egress, dstID, be.Port())
		}
		if dst, ok := p.cfg.Local(be.Addr()); ok {
			ingress = collect(dst.Policy, policy.Ingress, srcID, be.Port())
		}
	}
	hreq := &policy.HTTPRequest{Method: req.Method, Path: target, Host: req.Host, Header: req.Header}
	okE, _ := egress.allows(hreq)
	okI, _ := ingress.allows(hreq)
	return !okE || !okI, dstID
}

// attempt sends the request to one backend and reads the answer's head.
// status is 0 when no answer came (connectFailed: the backend could not be
// reached). A kept-alive upstream connection the backend closed meanwhile
// is replaced once.
func (p *Proxy) attempt(c *proxy.Conn, req *http.Request, body []byte, target string, be netip.AddrPort, srcID uint32,
	cl *envoyconfig.Cluster, route *envoyconfig.Route, ups upstreams) (status int, up *upstream, rhead []byte, resp *http.Response, connectFailed bool) {
	for {
		up = ups[be]
		reused := up != nil
		if up == nil {
			timeout := cl.ConnectTimeout
			if timeout == 0 {
				timeout = p.cfg.UpstreamTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			conn, err := p.cfg.Registry.DialUpstream(ctx, c.Listener, c.Source, srcID, be)
			cancel()
			if err != nil {
				return 0, nil, nil, nil, true
			}
			up = &upstream{c: conn, br: bufio.NewReader(conn)}
			ups[be] = up
		}
		if route.Retry != nil && route.Retry.PerTryTimeout > 0 {
			_ = up.c.SetDeadline(time.Now().Add(route.Retry.PerTryTimeout))
		}
		w := bufio.NewWriterSize(up.c, 16<<10)
		_, _ = w.Write(requestHead(req, target))
		_, _ = w.Write(body)
		err := w.Flush()
		if err == nil {
			rhead, resp, err = readResponseHead(up.br, req)
		}
		_ = up.c.SetDeadline(time.Time{})
		if err != nil {
			up.c.Close()
			delete(ups, be)
			if reused && len(rhead) == 0 {
				continue
			}
			return 0, nil, nil, nil, false
		}
		return resp.StatusCode, up, rhead, resp, false
	}
}

// answer replies to the client itself (404 without a route, 503 without
// a usable backend), as Envoy does, and reports the response.
func (p *Proxy) answer(c net.Conn, req *http.Request, rec Record, start time.Time, code int, body string, closeConn bool) error {
	head := "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\ncontent-length: " + strconv.Itoa(len(body)) +
		"\r\ncontent-type: text/plain\r\nserver: envoy\r\n"
	if closeConn {
		head += "connection: close\r\n"
	}
	_, err := io.WriteString(c, head+"\r\n"+body)
	p.report(Record{Time: time.Now(), Response: true, Source: rec.Source, Destination: rec.Destination, SourceIdentity: rec.SourceIdentity,
		DestinationIdentity: rec.DestinationIdentity, Method: req.Method, URL: rec.URL, Protocol: "HTTP/1.1", Code: code, Latency: time.Since(start)})
	if err == nil && closeConn {
		return io.EOF
	}
	return err
}

// clusterStates holds each cluster's round-robin position and outlier
// state, by listener and cluster.
type clusterStates struct {
	mu sync.Mutex
	m  map[string]*clusterState
}

func (s *clusterStates) get(key string) *clusterState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*clusterState{}
	}
	st := s.m[key]
	if st == nil {
		st = &clusterState{failures: map[netip.AddrPort]int{}, localFailures: map[netip.AddrPort]int{}, ejected: map[netip.AddrPort]time.Time{}}
		s.m[key] = st
	}
	return st
}

type clusterState struct {
	mu            sync.Mutex
	next          uint64
	failures      map[netip.AddrPort]int // consecutive 5xx (and local ones unless split)
	localFailures map[netip.AddrPort]int // consecutive local-origin failures (split)
	ejected       map[netip.AddrPort]time.Time
}

// pick chooses a backend with the cluster's policy among those not
// ejected (all of them when every one is ejected, Envoy's panic mode).
func (s *clusterState) pick(cl *envoyconfig.Cluster, eps []netip.AddrPort) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	live := make([]netip.AddrPort, 0, len(eps))
	for _, e := range eps {
		if until, ok := s.ejected[e]; !ok || now.After(until) {
			live = append(live, e)
		}
	}
	if len(live) == 0 {
		live = eps
	}
	if cl != nil && cl.LBPolicy == envoyconfig.Random {
		return live[rand.IntN(len(live))]
	}
	s.next++
	return live[int(s.next%uint64(len(live)))]
}

// record counts an attempt's outcome for outlier detection.
func (s *clusterState) record(cl *envoyconfig.Cluster, be netip.AddrPort, status int, connectFailed bool) {
	if cl == nil || cl.Outlier == nil {
		return
	}
	od := cl.Outlier
	s.mu.Lock()
	defer s.mu.Unlock()
	local := connectFailed || status == 0
	if !local && status < 500 {
		delete(s.failures, be)
		delete(s.localFailures, be)
		return
	}
	// Without split_external_local_origin_errors a connection failure
	// counts as a 5xx.
	counter, limit := s.failures, od.Consecutive5xx
	if local && od.SplitLocalOrigin {
		counter, limit = s.localFailures, od.ConsecutiveLocalOrigin
	}
	counter[be]++
	if limit > 0 && counter[be] >= limit {
		s.ejected[be] = time.Now().Add(od.BaseEjectionTime)
		delete(counter, be)
	}
}
