// Package httpproxy is the node's HTTP L7 proxy: it accepts the connections
// the datapath redirects to it (package proxy), parses HTTP/1.1 requests
// (keep-alive, Content-Length and chunked bodies), judges each one against
// the L7 rules of the policies involved and forwards the allowed ones
// unchanged over an upstream connection opened from the client's address;
// a denied request gets Cilium's answer, 403 with the body "Access
// denied", and the connection stays open for the next request. Every
// request and response is reported as an L7 record (Hubble's l7.http).
//
// Which rules apply: the egress rules of the client when it is a local
// endpoint and the ingress rules of the server when it is one (both, when
// client and server share the node: one proxy per node). A side applies
// when one of its allow entries matching the peer identity and port carries
// L7 rules; the request must then match an HTTP rule of one of them, unless
// another matching entry allows the port at L4 only (Cilium's wildcard).
package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy"
)

// DeniedBody is what a denied request gets, with status 403 (Cilium's
// Envoy filter answers exactly this).
const DeniedBody = "Access denied\r\n"

// LocalEndpoint is what the proxy needs to know about a local endpoint.
type LocalEndpoint struct {
	Identity uint32
	Policy   policy.EndpointPolicy
}

// Record is one L7 event: a request (with its verdict) or the response to
// a forwarded one.
type Record struct {
	Time     time.Time
	Response bool
	// Denied is set on requests the policy denied (answered 403 by the
	// proxy).
	Denied bool
	// Ingress is set when the redirect came from the server's ingress
	// policy (the listener's direction).
	Ingress             bool
	Source, Destination netip.AddrPort
	SourceIdentity      uint32
	DestinationIdentity uint32
	Method, URL         string
	Protocol            string
	Code                int
	Headers             http.Header
	// Latency is the time from request to response (responses only).
	Latency time.Duration
}

// Config wires a proxy to its node.
type Config struct {
	Registry *proxy.Registry
	// Local returns a local endpoint by address (ok false: not local).
	Local func(netip.Addr) (LocalEndpoint, bool)
	// Report receives every L7 record (may be nil).
	Report func(Record)
	Log    *slog.Logger
	// UpstreamTimeout bounds dialing the original destination (0: 3s).
	UpstreamTimeout time.Duration
	// LoadBalancer returns what an L7 load balancer's listener
	// (proxy.Listener.Name set) serves; nil: the listener is gone.
	LoadBalancer func(proxy.Listener) *LoadBalancer
}

// Proxy serves the HTTP listeners of one node.
type Proxy struct {
	cfg Config
	mu  sync.Mutex
	lns map[proxy.Listener]*proxy.TCPListener
	cns map[net.Conn]struct{}
	wg  sync.WaitGroup
	// clusters is the load-balancing state of L7 load balancers' clusters.
	clusters clusterStates
}

// New returns a proxy with no listener open yet.
func New(cfg Config) *Proxy {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 3 * time.Second
	}
	return &Proxy{cfg: cfg, lns: map[proxy.Listener]*proxy.TCPListener{}, cns: map[net.Conn]struct{}{}}
}

// Ensure opens the listener of l unless it is open already.
func (p *Proxy) Ensure(l proxy.Listener) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lns == nil {
		return errors.New("http proxy: closed")
	}
	if _, ok := p.lns[l]; ok {
		return nil
	}
	ln, err := p.cfg.Registry.ListenTCP(l)
	if err != nil {
		return err
	}
	p.lns[l] = ln
	p.wg.Add(1)
	go p.serve(ln)
	return nil
}

// Listeners returns the open listeners.
func (p *Proxy) Listeners() []proxy.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]proxy.Listener, 0, len(p.lns))
	for l := range p.lns {
		out = append(out, l)
	}
	return out
}

// Close stops the listeners and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	var errs []error
	for _, ln := range p.lns {
		if err := ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.lns = nil
	for c := range p.cns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return errors.Join(errs...)
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.lns == nil {
			return false
		}
		p.cns[c] = struct{}{}
	} else {
		delete(p.cns, c)
	}
	return true
}

func (p *Proxy) serve(ln *proxy.TCPListener) {
	defer p.wg.Done()
	for {
		c, err := ln.AcceptRedirected()
		if err != nil {
			return
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			if err := p.handle(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.cfg.Log.Debug("http proxy connection", "src", c.Source, "dst", c.OrigDst, "err", err)
			}
		}()
	}
}

// side is the L7 policy of one endpoint in one direction for a connection.
type side struct {
	rules    []*policy.L7Rules
	wildcard bool
}

func (s *side) applies() bool { return len(s.rules) > 0 && !s.wildcard }

// collect gathers the entries of pol in dir that allow peer on TCP port.
func collect(pol policy.EndpointPolicy, dir policy.Direction, peer uint32, port uint16) side {
	var s side
	if dir == policy.Ingress && !pol.IngressEnforced || dir == policy.Egress && !pol.EgressEnforced {
		return s
	}
	for i := range pol.Entries {
		e := &pol.Entries[i]
		if e.Direction != dir || e.Deny || (e.Identity != 0 && e.Identity != peer) {
			continue
		}
		if e.Proto != 0 && e.Proto != policy.ProtoTCP {
			continue
		}
		lo, hi := e.PortLo, e.PortHi
		if hi == 0 {
			hi = lo
		}
		if !(lo == 0 && hi == 0) && (port < lo || port > hi) {
			continue
		}
		if e.L7 == nil || e.L7.Wildcard {
			s.wildcard = true
			continue
		}
		s.rules = append(s.rules, e.L7)
	}
	return s
}

func (s *side) allows(req *policy.HTTPRequest) (bool, []policy.HeaderAction) {
	if !s.applies() {
		return true, nil
	}
	for _, r := range s.rules {
		for i := range r.HTTP {
			if ok, acts := r.HTTP[i].Match(req); ok {
				return true, acts
			}
		}
	}
	return false, nil
}

// connPolicy is what applies to one redirected connection.
type connPolicy struct {
	egress, ingress side
	srcID, dstID    uint32
}

func (p *Proxy) policyFor(c *proxy.Conn) connPolicy {
	cp := connPolicy{srcID: c.SourceIdentity, dstID: p.cfg.Registry.Identity(c.OrigDst.Addr())}
	if p.cfg.Local == nil {
		return cp
	}
	if src, ok := p.cfg.Local(c.Source.Addr()); ok {
		cp.srcID = src.Identity
		cp.egress = collect(src.Policy, policy.Egress, cp.dstID, c.OrigDst.Port())
	}
	if dst, ok := p.cfg.Local(c.OrigDst.Addr()); ok {
		cp.dstID = dst.Identity
		cp.ingress = collect(dst.Policy, policy.Ingress, cp.srcID, c.OrigDst.Port())
	}
	return cp
}

// handle serves the requests of one client connection.
func (p *Proxy) handle(c *proxy.Conn) error {
	if c.Listener.Name != "" {
		return p.handleLB(c)
	}
	br := bufio.NewReader(c)
	var up net.Conn
	var upBr *bufio.Reader
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	for {
		head, req, err := readHead(br, nil)
		if err != nil {
			return err
		}
		// The policy is looked up per request: an update applies to the
		// next request of a kept-alive connection.
		pol := p.policyFor(c)
		hreq := &policy.HTTPRequest{Method: req.Method, Path: req.RequestURI, Host: req.Host, Header: req.Header}
		okE, actsE := pol.egress.allows(hreq)
		okI, actsI := pol.ingress.allows(hreq)
		rec := Record{Time: time.Now(), Ingress: c.Listener.Ingress, Source: c.Source, Destination: c.OrigDst,
			SourceIdentity: pol.srcID, DestinationIdentity: pol.dstID, Method: req.Method,
			URL: requestURL(req), Protocol: req.Proto, Headers: req.Header}
		if !okE || !okI {
			if err := discardBody(br, req); err != nil {
				return err
			}
			rec.Denied, rec.Code = true, http.StatusForbidden
			p.report(rec)
			if err := writeDenied(c, req); err != nil {
				return err
			}
			if req.Close {
				return nil
			}
			continue
		}
		if acts := append(actsE, actsI...); len(acts) > 0 {
			head = applyActions(head, req, acts)
		}
		p.report(rec)
		start := time.Now()
		if up == nil {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.UpstreamTimeout)
			up, err = p.cfg.Registry.DialUpstream(ctx, c.Listener, c.Source, pol.srcID, c.OrigDst)
			cancel()
			if err != nil {
				_ = discardBody(br, req)
				return p.fail(c, req, rec, start, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
			}
			upBr = bufio.NewReader(up)
		}
		// One buffered write per message: head and body leave together
		// (no Nagle stall between a small head and its body).
		upW := bufio.NewWriterSize(up, 16<<10)
		_, _ = upW.Write(head)
		if err := copyBody(upW, br, req.Header, req.ContentLength, req.TransferEncoding, false); err != nil {
			return err
		}
		if err := upW.Flush(); err != nil {
			return p.fail(c, req, rec, start, "upstream write error")
		}
		rhead, resp, err := readResponseHead(upBr, req)
		if err != nil {
			return p.fail(c, req, rec, start, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
		}
		done, err := p.relayResponse(c, upBr, rhead, resp, req, rec, start)
		if err != nil || done {
			return err
		}
	}
}

// relayResponse forwards a response whose head was read to the client
// and reports it; done is set when the connection ends with it.
func (p *Proxy) relayResponse(c net.Conn, upBr *bufio.Reader, rhead []byte, resp *http.Response, req *http.Request, rec Record, start time.Time) (done bool, err error) {
	cW := bufio.NewWriterSize(c, 16<<10)
	_, _ = cW.Write(rhead)
	untilClose := resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 && bodyAllowed(req, resp)
	if bodyAllowed(req, resp) {
		if err := copyBody(cW, upBr, resp.Header, resp.ContentLength, resp.TransferEncoding, untilClose); err != nil {
			return true, err
		}
	}
	if err := cW.Flush(); err != nil {
		return true, err
	}
	p.report(Record{Time: time.Now(), Response: true, Ingress: rec.Ingress, Source: rec.Source, Destination: rec.Destination,
		SourceIdentity: rec.SourceIdentity, DestinationIdentity: rec.DestinationIdentity, Method: req.Method, URL: rec.URL,
		Protocol: resp.Proto, Code: resp.StatusCode, Headers: resp.Header, Latency: time.Since(start)})
	return req.Close || resp.Close || untilClose, nil
}

func (p *Proxy) report(r Record) {
	if p.cfg.Report != nil {
		p.cfg.Report(r)
	}
}

// fail answers 503 as Envoy does when the upstream is unusable and ends
// the connection.
func (p *Proxy) fail(c *proxy.Conn, req *http.Request, rec Record, start time.Time, body string) error {
	resp := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n%s", len(body), body)
	_, err := io.WriteString(c, resp)
	p.report(Record{Time: time.Now(), Response: true, Ingress: rec.Ingress, Source: rec.Source, Destination: rec.Destination,
		SourceIdentity: rec.SourceIdentity, DestinationIdentity: rec.DestinationIdentity, Method: req.Method, URL: rec.URL,
		Protocol: "HTTP/1.1", Code: http.StatusServiceUnavailable, Latency: time.Since(start)})
	if err != nil {
		return err
	}
	return io.EOF
}

func writeDenied(w io.Writer, req *http.Request) error {
	var b strings.Builder
	b.WriteString("HTTP/1.1 403 Forbidden\r\ncontent-length: ")
	b.WriteString(strconv.Itoa(len(DeniedBody)))
	b.WriteString("\r\ncontent-type: text/plain\r\ndate: ")
	b.WriteString(time.Now().UTC().Format(http.TimeFormat))
	b.WriteString("\r\nserver: envoy\r\n")
	if req.Close {
		b.WriteString("connection: close\r\n")
	}
	b.WriteString("\r\n")
	if req.Method != http.MethodHead {
		b.WriteString(DeniedBody)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// requestURL is the request as Hubble prints it: http://host/path.
func requestURL(req *http.Request) string {
	if req.URL != nil && req.URL.IsAbs() {
		return req.URL.String()
	}
	return "http://" + req.Host + req.RequestURI
}

// maxHead bounds a message head.
const maxHead = 64 << 10

// readHead reads a request head verbatim and parses it.
func readHead(br *bufio.Reader, _ *http.Request) ([]byte, *http.Request, error) {
	head, err := rawHead(br)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, nil, fmt.Errorf("parse request: %w", err)
	}
	return head, req, nil
}

func readResponseHead(br *bufio.Reader, req *http.Request) ([]byte, *http.Response, error) {
	for {
		head, err := rawHead(br)
		if err != nil {
			return nil, nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), req)
		if err != nil {
			return nil, nil, fmt.Errorf("parse response: %w", err)
		}
		if resp.StatusCode == http.StatusContinue {
			continue
		}
		return head, resp, nil
	}
}

// rawHead reads up to and including the blank line ending a head.
func rawHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if len(head) == 0 && len(line) == 0 {
				return nil, err
			}
			return nil, fmt.Errorf("truncated head: %w", err)
		}
		head = append(head, line...)
		if len(head) > maxHead {
			return nil, errors.New("head too large")
		}
		if len(head) == len(line) && (string(line) == "\r\n" || string(line) == "\n") {
			head = head[:0] // tolerate blank lines before a request
			continue
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			return head, nil
		}
	}
}

func bodyAllowed(req *http.Request, resp *http.Response) bool {
	if req.Method == http.MethodHead {
		return false
	}
	s := resp.StatusCode
	return !(s >= 100 && s < 200 || s == http.StatusNoContent || s == http.StatusNotModified)
}

func chunked(te []string) bool {
	for _, t := range te {
		if strings.EqualFold(t, "chunked") {
			return true
		}
	}
	return false
}

// copyBody forwards a message body: Content-Length bytes verbatim, a
// chunked body re-chunked (same bytes, same framing), or everything until
// the sender closes.
func copyBody(dst io.Writer, br *bufio.Reader, h http.Header, length int64, te []string, untilClose bool) error {
	switch {
	case chunked(te):
		cw := httputil.NewChunkedWriter(dst)
		if _, err := io.Copy(cw, httputil.NewChunkedReader(br)); err != nil {
			return fmt.Errorf("chunked body: %w", err)
		}
		if err := cw.Close(); err != nil {
			return err
		}
		// Trailers: copy up to the blank line.
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if _, err := dst.Write(line); err != nil {
				return err
			}
			if string(line) == "\r\n" || string(line) == "\n" {
				return nil
			}
		}
	case length > 0:
		_, err := io.CopyN(dst, br, length)
		return err
	case untilClose:
		_, err := io.Copy(dst, br)
		return err
	}
	return nil
}

func discardBody(br *bufio.Reader, req *http.Request) error {
	return copyBody(io.Discard, br, req.Header, req.ContentLength, req.TransferEncoding, false)
}

// applyActions rewrites a request head for headerMatches actions (ADD,
// DELETE, REPLACE; LOG changes nothing).
func applyActions(head []byte, req *http.Request, acts []policy.HeaderAction) []byte {
	changed := false
	for _, a := range acts {
		switch a.Action {
		case policy.MismatchAdd:
			req.Header.Add(a.Name, a.Value)
			changed = true
		case policy.MismatchDelete:
			req.Header.Del(a.Name)
			changed = true
		case policy.MismatchReplace:
			req.Header.Set(a.Name, a.Value)
			changed = true
		}
	}
	if !changed {
		return head
	}
	return requestHead(req, req.RequestURI)
}

// requestHead serialises a request head for target from req's method,
// protocol, host, framing and headers.
func requestHead(req *http.Request, target string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", req.Method, target, req.Proto)
	if req.Host != "" {
		fmt.Fprintf(&b, "Host: %s\r\n", req.Host)
	}
	if req.ContentLength > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", req.ContentLength)
	}
	if chunked(req.TransferEncoding) {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if req.Close {
		b.WriteString("Connection: close\r\n")
	}
	_ = req.Header.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}
