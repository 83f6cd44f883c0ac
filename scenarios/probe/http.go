package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/podlab/podlab/topo"
)

// AnyStatus as HTTP.ExpectStatus accepts every HTTP status.
const AnyStatus = -1

// maxKeep caps the bytes of a reply kept in a Result.
const maxKeep = 64 << 10

// maxRedirects is how many redirects FollowRedirects follows (curl's -L
// default is 50; a lab never needs that many).
const maxRedirects = 10

// curlUserAgent is the User-Agent the probe sends, so servers and flow logs
// see a familiar client.
const curlUserAgent = "curl/8.5.0 (podlab)"

// HTTP is an HTTP/1.1 request, as curl would make it.
type HTTP struct {
	// Method defaults to GET. HEAD reads no body.
	Method string
	// URL is [http[s]://]host[:port][/path]; host may be an IP, localhost
	// or a name resolved through DNS.
	URL string
	// Host overrides the Host header.
	Host string
	// Header holds extra request headers.
	Header http.Header
	// Body is sent with the request (Content-Length set).
	Body []byte
	// ExpectStatus is the status that passes: 0 means any status below 400,
	// AnyStatus any status at all.
	ExpectStatus int
	// Timeout bounds the whole request (curl -m; 0: DefaultTimeout).
	Timeout time.Duration
	// ConnectTimeout bounds name resolution plus the TCP handshake (curl
	// --connect-timeout; 0: Timeout).
	ConnectTimeout time.Duration
	// DNS resolves names in URL.
	DNS DNSConfig
	// Source binds the client socket to one of the namespace's addresses.
	Source netip.Addr
	// FollowRedirects follows 3xx answers with a Location (curl -L).
	FollowRedirects bool
	// KeepBody stores the body (capped at 64 KiB) in Result.Output.
	KeepBody bool
	// ExpectBody, when set, must occur in the response body (its first
	// 64 KiB) for the probe to pass.
	ExpectBody string
	// RootCAs verifies https servers (the lab CA; nil: the system's roots,
	// which no lab host has a certificate from).
	RootCAs *x509.CertPool
	// Insecure skips certificate verification (curl -k).
	Insecure bool
	// Resolve pins "host:port" to addresses without asking DNS (curl
	// --resolve host:port:addr[,addr]).
	Resolve map[string][]netip.Addr
}

// target is a parsed HTTP URL.
type target struct {
	host string // without brackets
	port uint16
	path string // request URI, starts with /
	tls  bool   // https
}

// parseURL reads curl-style URLs: the scheme is optional and must be http
// or https.
// code is curl's exit code for the error (1 unsupported protocol, 3 bad
// URL).
func parseURL(raw string) (target, int, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return target{}, 3, errors.New("no URL given")
	}
	isTLS := false
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		switch scheme {
		case "http":
		case "https":
			isTLS = true
		default:
			return target{}, 1, fmt.Errorf("protocol %q not supported (podlab probes speak http and https)", scheme)
		}
	} else {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return target{}, 3, fmt.Errorf("malformed URL %q", raw)
	}
	t := target{host: u.Hostname(), port: 80, path: u.RequestURI(), tls: isTLS}
	if isTLS {
		t.port = 443
	}
	if t.host == "" {
		return target{}, 3, fmt.Errorf("malformed URL %q: no host", raw)
	}
	if ps := u.Port(); ps != "" {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			return target{}, 3, fmt.Errorf("malformed URL %q: bad port %q", raw, ps)
		}
		t.port = uint16(p)
	}
	if t.path == "" {
		t.path = "/"
	}
	return t, 0, nil
}

// SplitURL reads a curl-style URL ([http[s]://]host[:port][/path]) into
// its host (without brackets), port (80 or 443 by default), request URI
// and whether it is https.
func SplitURL(raw string) (host string, port uint16, requestURI string, isTLS bool, err error) {
	t, _, err := parseURL(raw)
	if err != nil {
		return "", 0, "", false, err
	}
	return t.host, t.port, t.path, t.tls, nil
}

// hostHeader is the Host header curl sends for t.
func (t target) hostHeader() string {
	h := t.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if (t.tls && t.port != 443) || (!t.tls && t.port != 80) {
		h += ":" + strconv.Itoa(int(t.port))
	}
	return h
}

// httpRun carries curl-specific options and the curl-style message.
type httpRun struct {
	keepHeaders bool
	curlMsg     string
}

// Run performs the request from ns.
func (p HTTP) Run(ctx context.Context, ns *topo.Namespace) Result {
	var hr httpRun
	return p.run(ctx, ns, &hr)
}

func (p HTTP) run(ctx context.Context, ns *topo.Namespace, hr *httpRun) Result {
	r := Result{Kind: KindHTTP, Target: p.URL, Start: time.Now(), BodySize: -1}
	if err := checkNS(ns); err != nil {
		r.ExitCode = 2
		hr.curlMsg = "curl: (2) " + err.Error()
		return r.failed(Error, err.Error(), err)
	}
	dl := deadline(ctx, r.Start, p.Timeout)
	connDL := dl
	if p.ConnectTimeout > 0 && r.Start.Add(p.ConnectTimeout).Before(connDL) {
		connDL = r.Start.Add(p.ConnectTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()

	rawURL := p.URL
	for hop := 0; ; hop++ {
		loc, res := p.once(ctx, ns, rawURL, dl, connDL, hr, r)
		if loc == "" || !p.FollowRedirects {
			return res
		}
		if hop >= maxRedirects {
			res.ExitCode = 47
			hr.curlMsg = fmt.Sprintf("curl: (47) Maximum (%d) redirects followed", maxRedirects)
			return res.failed(Error, fmt.Sprintf("more than %d redirects", maxRedirects), nil)
		}
		next, err := url.Parse(loc)
		base, berr := url.Parse(withScheme(rawURL))
		if err != nil || berr != nil {
			res.ExitCode = 3
			hr.curlMsg = "curl: (3) URL rejected: Malformed input to a URL function"
			return res.failed(Error, fmt.Sprintf("bad redirect Location %q", loc), err)
		}
		rawURL = base.ResolveReference(next).String()
	}
}

func withScheme(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	return "http://" + s
}

// once makes one request; it returns the redirect location to follow (if
// the answer is a redirect) and the result.
func (p HTTP) once(ctx context.Context, ns *topo.Namespace, rawURL string, dl, connDL time.Time, hr *httpRun, r Result) (string, Result) {
	t, code, err := parseURL(rawURL)
	if err != nil {
		r.ExitCode = code
		if code == 1 {
			hr.curlMsg = fmt.Sprintf("curl: (1) Protocol %q not supported", strings.SplitN(rawURL, "://", 2)[0])
		} else {
			hr.curlMsg = "curl: (3) URL rejected: Malformed input to a URL function"
		}
		return "", r.failed(Error, err.Error(), err)
	}
	method := strings.ToUpper(p.Method)
	if method == "" {
		method = http.MethodGet
	}

	// Resolve (inside the connect budget, as curl counts it).
	cctx, ccancel := context.WithDeadline(ctx, connDL)
	defer ccancel()
	rs := time.Now()
	var ip netip.Addr
	var res *Resolution
	if pinned := p.Resolve[net.JoinHostPort(strings.ToLower(t.host), strconv.Itoa(int(t.port)))]; len(pinned) > 0 {
		ip, res = pinned[0], &Resolution{Name: t.host, Addrs: pinned}
	} else {
		ip, res, err = resolveHost(cctx, ns, p.DNS, t.host, connDL)
	}
	r.Resolution = res
	if res != nil {
		r.ResolveDuration = time.Since(rs)
	}
	if err != nil {
		var de *dnsError
		o, why := Error, err.Error()
		if errors.As(err, &de) {
			o, why = de.outcome, de.reason
		}
		r.ExitCode = 6
		hr.curlMsg = "curl: (6) Could not resolve host: " + t.host
		if o == DNSTimeout && !time.Now().Before(connDL) {
			r.ExitCode = 28
			hr.curlMsg = fmt.Sprintf("curl: (28) Resolving timed out after %d milliseconds", time.Since(r.Start).Milliseconds())
		}
		if o != NXDomain && o != DNSTimeout {
			o = Error
		}
		return "", r.failed(o, "resolve "+t.host+": "+why, err)
	}
	// Connect. Like curl, a refused or unreachable address makes way for
	// the next one the name resolved to; a timeout ends the attempt.
	candidates := []netip.Addr{ip}
	if res != nil && len(res.Addrs) > 1 {
		candidates = res.Addrs
	}
	var c net.Conn
	var remote netip.AddrPort
	cs := time.Now()
	for i, cand := range candidates {
		remote = netip.AddrPortFrom(cand, t.port)
		r.Remote = remote
		var local netip.AddrPort
		c, local, err = dial(cctx, ns, "tcp", remote, p.Source, connDL, nil)
		r.ConnectDuration = time.Since(cs)
		r.Local = local
		if err == nil {
			break
		}
		o, why := classify(err, false)
		if o == Reset {
			return "", ioFailure(r, hr, err, false, t, remote)
		}
		if o == Timeout {
			r.ExitCode = 28
			hr.curlMsg = fmt.Sprintf("curl: (28) Failed to connect to %s port %d after %d ms: Timeout was reached", t.host, t.port, time.Since(r.Start).Milliseconds())
			return "", r.failed(Timeout, fmt.Sprintf("connect to %s timed out after %s (no SYN-ACK)", remote, r.ConnectDuration.Round(time.Millisecond)), err)
		}
		if i+1 < len(candidates) && (o == Refused || o == Unreachable) {
			continue
		}
		r.ExitCode = 7
		hr.curlMsg = fmt.Sprintf("curl: (7) Failed to connect to %s port %d after %d ms: %s", t.host, t.port, time.Since(r.Start).Milliseconds(), curlErrText(why))
		return "", r.failed(o, fmt.Sprintf("connect to %s: %s", remote, why), err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(dl)
	if t.tls {
		tc := tls.Client(c, &tls.Config{ServerName: t.host, RootCAs: p.RootCAs, InsecureSkipVerify: p.Insecure, NextProtos: []string{"http/1.1"}})
		_ = c.SetDeadline(connDL)
		if err := tc.HandshakeContext(cctx); err != nil {
			return "", tlsFailure(r, hr, err, t)
		}
		_ = c.SetDeadline(dl)
		c = tc
	}

	// Request.
	var req bytes.Buffer
	host := t.hostHeader()
	if p.Host != "" {
		host = p.Host
	} else if h := p.Header.Get("Host"); h != "" {
		host = h
	}
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, t.path, host)
	if p.Header.Get("User-Agent") == "" {
		fmt.Fprintf(&req, "User-Agent: %s\r\n", curlUserAgent)
	}
	if p.Header.Get("Accept") == "" {
		req.WriteString("Accept: */*\r\n")
	}
	for k, vs := range p.Header {
		if strings.EqualFold(k, "Host") {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	if len(p.Body) > 0 {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(p.Body))
	}
	req.WriteString("\r\n")
	req.Write(p.Body)
	sent := time.Now()
	if _, err := c.Write(req.Bytes()); err != nil {
		return "", ioFailure(r, hr, err, false, t, remote)
	}

	// Response.
	fb := &firstByteReader{r: c}
	br := bufio.NewReader(fb)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if !fb.first.IsZero() {
		r.FirstByteDuration = fb.first.Sub(sent)
	}
	if err != nil {
		return "", ioFailure(r, hr, err, fb.n > 0, t, remote)
	}
	defer resp.Body.Close()
	r.HTTPStatus = resp.StatusCode
	var kept bytes.Buffer
	if hr.keepHeaders {
		fmt.Fprintf(&kept, "HTTP/%d.%d %s\r\n", resp.ProtoMajor, resp.ProtoMinor, resp.Status)
		_ = resp.Header.Write(&kept)
		kept.WriteString("\r\n")
	}
	var sink io.Writer = io.Discard
	if p.KeepBody {
		sink = &capWriter{b: &kept, max: maxKeep}
	}
	var body bytes.Buffer
	if p.ExpectBody != "" {
		sink = io.MultiWriter(sink, &capWriter{b: &body, max: maxKeep})
	}
	n, err := io.Copy(sink, resp.Body)
	r.BodySize = n
	if hr.keepHeaders || p.KeepBody {
		r.Output = kept.Bytes()
	}
	if err != nil {
		return "", ioFailure(r, hr, err, true, t, remote)
	}
	r.Duration = time.Since(r.Start)

	// Verdict.
	if p.FollowRedirects && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if loc := resp.Header.Get("Location"); loc != "" {
			return loc, r
		}
	}
	ok := false
	switch {
	case p.ExpectStatus == AnyStatus:
		ok = true
	case p.ExpectStatus == 0:
		ok = resp.StatusCode < 400
	default:
		ok = resp.StatusCode == p.ExpectStatus
	}
	if !ok {
		want := "a status below 400"
		if p.ExpectStatus > 0 {
			want = strconv.Itoa(p.ExpectStatus)
		}
		r.ExitCode = 22
		hr.curlMsg = fmt.Sprintf("curl: (22) The requested URL returned error: %d", resp.StatusCode)
		if p.ExpectStatus > 0 && resp.StatusCode < 400 {
			hr.curlMsg = ""
			r.ExitCode = 0
		}
		return "", r.failed(HTTPStatusMismatch, fmt.Sprintf("HTTP %d from %s, expected %s", resp.StatusCode, remote, want), nil)
	}
	if p.ExpectBody != "" && !bytes.Contains(body.Bytes(), []byte(p.ExpectBody)) {
		return "", r.failed(Error, fmt.Sprintf("HTTP %d from %s: body %q does not contain %q", resp.StatusCode, remote, clip(body.Bytes()), p.ExpectBody), nil)
	}
	r.Outcome = Success
	r.ExitCode = 0
	r.Reason = fmt.Sprintf("HTTP %d (%d B) from %s", resp.StatusCode, n, remote)
	return "", r
}

// ioFailure classifies an error after the connection was established.
func ioFailure(r Result, hr *httpRun, err error, gotBytes bool, t target, remote netip.AddrPort) Result {
	o, why := classify(err, true)
	switch {
	case o == Timeout:
		r.ExitCode = 28
		hr.curlMsg = fmt.Sprintf("curl: (28) Operation timed out after %d milliseconds with %d bytes received", time.Since(r.Start).Milliseconds(), max(r.BodySize, 0))
		return r.failed(Timeout, fmt.Sprintf("no answer from %s before the deadline", remote), err)
	case o == Reset:
		r.ExitCode = 56
		hr.curlMsg = "curl: (56) Recv failure: Connection reset by peer"
		return r.failed(Reset, fmt.Sprintf("connection to %s reset by peer", remote), err)
	case !gotBytes && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		r.ExitCode = 52
		hr.curlMsg = "curl: (52) Empty reply from server"
		return r.failed(Error, fmt.Sprintf("%s closed the connection without answering", remote), err)
	}
	r.ExitCode = 56
	hr.curlMsg = "curl: (56) Recv failure: " + why
	return r.failed(o, fmt.Sprintf("talking to %s: %s", remote, why), err)
}

// tlsFailure classifies a failed TLS handshake with curl's exit codes: 60
// for a certificate that does not verify, 28 for a timeout, 35 otherwise.
func tlsFailure(r Result, hr *httpRun, err error, t target) Result {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hostErr):
		r.ExitCode = 60
		hr.curlMsg = fmt.Sprintf("curl: (60) SSL: no alternative certificate subject name matches target host name '%s'", t.host)
		return r.failed(Error, fmt.Sprintf("TLS: certificate of %s does not match: %v", t.host, err), err)
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &verr):
		r.ExitCode = 60
		hr.curlMsg = "curl: (60) SSL certificate problem: unable to get local issuer certificate"
		return r.failed(Error, fmt.Sprintf("TLS: certificate of %s does not verify: %v", t.host, err), err)
	}
	if o, _ := classify(err, true); o == Timeout {
		r.ExitCode = 28
		hr.curlMsg = fmt.Sprintf("curl: (28) SSL connection timeout after %d milliseconds", time.Since(r.Start).Milliseconds())
		return r.failed(Timeout, fmt.Sprintf("TLS handshake with %s timed out", t.host), err)
	}
	r.ExitCode = 35
	hr.curlMsg = "curl: (35) TLS connect error: " + err.Error()
	return r.failed(Error, fmt.Sprintf("TLS handshake with %s: %v", t.host, err), err)
}

// curlErrText renders a connect failure the way curl words it.
func curlErrText(why string) string {
	switch why {
	case "connection refused":
		return "Connection refused"
	case "no route to host":
		return "No route to host"
	case "network unreachable":
		return "Network is unreachable"
	}
	return "Couldn't connect to server"
}

// firstByteReader records when the first byte arrived and how many came.
type firstByteReader struct {
	r     io.Reader
	first time.Time
	n     int64
}

func (f *firstByteReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if n > 0 && f.first.IsZero() {
		f.first = time.Now()
	}
	f.n += int64(n)
	return n, err
}

// capWriter keeps up to max bytes and silently drops the rest.
type capWriter struct {
	b   *bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
