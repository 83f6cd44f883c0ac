package probe

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/podlab/podlab/topo"
)

// Curl exit codes that Curl returns (curl's own numbering).
const (
	CurlOK            = 0
	CurlUnsupported   = 1  // protocol not supported (ftp://...)
	CurlBadOption     = 2  // unknown or malformed option
	CurlBadURL        = 3  // malformed URL
	CurlResolve       = 6  // could not resolve host
	CurlConnect       = 7  // connection refused, no route to host
	CurlHTTPError     = 22 // HTTP status >= 400 with --fail
	CurlTimeout       = 28 // connect or operation timeout
	CurlTooManyRedirs = 47 // -L followed too many redirects
	CurlEmptyReply    = 52 // server closed without answering
	CurlRecvFailure   = 56 // connection reset while receiving
	CurlTLSConnect    = 35 // TLS handshake failed
	CurlBadCert       = 60 // server certificate did not verify
	CurlCACertFile    = 77 // --cacert file unreadable
)

// curlDefaultMaxTime bounds a curl command without -m when ctx has no
// deadline either.
const curlDefaultMaxTime = 5 * time.Minute

// CurlRequest is a parsed curl command line.
type CurlRequest struct {
	// HTTP is the request the command makes. Its ExpectStatus is 0 with
	// --fail (a status >= 400 fails) and AnyStatus without.
	HTTP HTTP
	// Fail is --fail/-f.
	Fail bool
	// Silent is -s, ShowError -S.
	Silent, ShowError bool
	// Head is -I: headers are the output.
	Head bool
	// Output is -o's argument ("" for stdout).
	Output string
	// WriteOut is -w's format, printed after the transfer.
	WriteOut string
	// CACert is --cacert's file (PEM); it replaces the trusted roots.
	CACert string
}

// ParseCurl reads the curl flags used by Kubernetes exec probes and by
// people poking at a lab: -s -S -f/--fail --fail-with-body -o FILE
// (/dev/null or -) -I/--head -X/--request M -H/--header H -d/--data D
// -w/--write-out FORMAT --connect-timeout N -m/--max-time N -L/--location,
// -k/--insecure, --cacert FILE, --resolve HOST:PORT:ADDR[,ADDR], plus flags
// that do not change the request (-v -4 -q -N --http1.1). Short flags
// combine (-sSf). http:// and https:// URLs are understood.
// args may start with "curl". Exactly one URL is required.
func ParseCurl(args []string) (CurlRequest, error) {
	if len(args) > 0 && path.Base(args[0]) == "curl" {
		args = args[1:]
	}
	cr := CurlRequest{HTTP: HTTP{ExpectStatus: AnyStatus}}
	var urls []string
	var method string
	seconds := func(flag, v string) (time.Duration, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("curl: option %s: expected a proper numerical parameter", flag)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	takesArg := func(flag string) bool {
		switch flag {
		case "-o", "--output", "--connect-timeout", "-m", "--max-time", "-X", "--request",
			"-H", "--header", "-d", "--data", "--data-raw", "--data-binary", "-w", "--write-out",
			"--cacert", "--resolve":
			return true
		}
		return false
	}
	apply := func(flag, value string) error {
		switch flag {
		case "-s", "--silent":
			cr.Silent = true
		case "-S", "--show-error":
			cr.ShowError = true
		case "-f", "--fail", "--fail-with-body":
			cr.Fail = true
		case "-I", "--head":
			cr.Head = true
		case "-L", "--location":
			cr.HTTP.FollowRedirects = true
		case "-k", "--insecure":
			cr.HTTP.Insecure = true
		case "--cacert":
			cr.CACert = value
		case "--resolve":
			if err := addResolve(&cr.HTTP, value); err != nil {
				return err
			}
		case "-v", "--verbose", "-4", "--ipv4", "-q", "--disable",
			"-N", "--no-buffer", "--http1.1", "--compressed", "-#", "--progress-bar":
		case "-o", "--output":
			if value != "/dev/null" && value != "-" {
				return fmt.Errorf("not supported yet: curl -o %s (only /dev/null and - are)", value)
			}
			cr.Output = value
		case "--connect-timeout":
			d, err := seconds(flag, value)
			if err != nil {
				return err
			}
			cr.HTTP.ConnectTimeout = d
		case "-m", "--max-time":
			d, err := seconds(flag, value)
			if err != nil {
				return err
			}
			cr.HTTP.Timeout = d
		case "-X", "--request":
			method = strings.ToUpper(value)
		case "-H", "--header":
			k, v, ok := strings.Cut(value, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("curl: option %s: bad header %q", flag, value)
			}
			if cr.HTTP.Header == nil {
				cr.HTTP.Header = http.Header{}
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if strings.EqualFold(k, "Host") {
				cr.HTTP.Host = v
			} else {
				cr.HTTP.Header.Add(k, v)
			}
		case "-w", "--write-out":
			if strings.HasPrefix(value, "@") {
				return fmt.Errorf("not supported yet: curl %s @FILE", flag)
			}
			cr.WriteOut = value
		case "-d", "--data", "--data-raw", "--data-binary":
			if strings.HasPrefix(value, "@") && flag != "--data-raw" {
				return fmt.Errorf("not supported yet: curl %s @FILE", flag)
			}
			if len(cr.HTTP.Body) > 0 {
				cr.HTTP.Body = append(cr.HTTP.Body, '&')
			}
			cr.HTTP.Body = append(cr.HTTP.Body, value...)
		default:
			return fmt.Errorf("curl: option %s: is unknown", flag)
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			urls = append(urls, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			flag, value, hasValue := strings.Cut(a, "=")
			if takesArg(flag) && !hasValue {
				if i+1 >= len(args) {
					return cr, fmt.Errorf("curl: option %s: requires parameter", flag)
				}
				i++
				value = args[i]
			}
			if err := apply(flag, value); err != nil {
				return cr, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Short flags, combinable: -sSf, -o/dev/null, -m5.
			for j := 1; j < len(a); j++ {
				flag := "-" + string(a[j])
				if takesArg(flag) {
					value := a[j+1:]
					if value == "" {
						if i+1 >= len(args) {
							return cr, fmt.Errorf("curl: option %s: requires parameter", flag)
						}
						i++
						value = args[i]
					}
					if err := apply(flag, value); err != nil {
						return cr, err
					}
					break
				}
				if err := apply(flag, ""); err != nil {
					return cr, err
				}
			}
		default:
			urls = append(urls, a)
		}
	}
	switch len(urls) {
	case 0:
		return cr, fmt.Errorf("curl: no URL specified")
	case 1:
	default:
		return cr, fmt.Errorf("not supported yet: several URLs in one curl command (%s)", strings.Join(urls, " "))
	}
	cr.HTTP.URL = urls[0]
	switch {
	case method != "":
		cr.HTTP.Method = method
	case cr.Head:
		cr.HTTP.Method = http.MethodHead
	case len(cr.HTTP.Body) > 0:
		cr.HTTP.Method = http.MethodPost
		if cr.HTTP.Header.Get("Content-Type") == "" {
			if cr.HTTP.Header == nil {
				cr.HTTP.Header = http.Header{}
			}
			cr.HTTP.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	default:
		cr.HTTP.Method = http.MethodGet
	}
	if cr.Fail {
		cr.HTTP.ExpectStatus = 0
	}
	cr.HTTP.KeepBody = cr.Output == "" || cr.Output == "-"
	if cr.Head {
		cr.HTTP.KeepBody = false
	}
	return cr, nil
}

// Curl runs a curl command line from ns, as `kubectl exec POD -- curl ...`
// would, and returns its Result with ExitCode set the way curl sets it: 0
// success, 6 could not resolve, 7 refused or unreachable, 22 HTTP >= 400
// with --fail, 28 timeout, 52 empty reply, 56 reset (2 for a bad option, 3
// for a bad URL). Reason holds curl's error line ("curl: (7) Failed to
// connect to echo-a port 80 ...") and Output what curl prints on stdout.
//
// Without -m the request is bounded by ctx, and by 5 minutes when ctx has
// no deadline.
func Curl(ctx context.Context, ns *topo.Namespace, args []string, dns DNSConfig) Result {
	cr, err := ParseCurl(args)
	if err != nil {
		r := Result{Kind: KindHTTP, Target: strings.Join(args, " "), Start: time.Now(), BodySize: -1, ExitCode: CurlBadOption}
		return r.failed(Error, err.Error(), err)
	}
	return cr.Run(ctx, ns, dns)
}

// Run executes a parsed curl command from ns; see Curl.
func (cr CurlRequest) Run(ctx context.Context, ns *topo.Namespace, dns DNSConfig) Result {
	p := cr.HTTP
	p.DNS = dns
	if p.Timeout == 0 {
		p.Timeout = curlDefaultMaxTime
	}
	if cr.CACert != "" {
		pool, err := loadPEMPool(cr.CACert)
		if err != nil {
			r := Result{Kind: KindHTTP, Target: p.URL, Start: time.Now(), BodySize: -1, ExitCode: CurlCACertFile}
			r = r.failed(Error, err.Error(), err)
			r.Reason = fmt.Sprintf("curl: (77) error setting certificate file: %s", cr.CACert)
			return r
		}
		p.RootCAs = pool
	}
	hr := httpRun{keepHeaders: cr.Head && (cr.Output == "" || cr.Output == "-")}
	r := p.run(ctx, ns, &hr)
	if hr.curlMsg != "" {
		r.Reason = hr.curlMsg
	}
	if cr.WriteOut != "" {
		r.Output = append(r.Output, writeOut(cr.WriteOut, r)...)
	}
	return r
}

// addResolve reads one --resolve HOST:PORT:ADDR[,ADDR...] entry.
func addResolve(h *HTTP, v string) error {
	host, rest, ok1 := strings.Cut(v, ":")
	port, addrs, ok2 := strings.Cut(rest, ":")
	p, perr := strconv.ParseUint(port, 10, 16)
	if !ok1 || !ok2 || host == "" || perr != nil || p == 0 {
		return fmt.Errorf("curl: option --resolve: %q is not HOST:PORT:ADDRESS", v)
	}
	var list []netip.Addr
	for _, a := range strings.Split(addrs, ",") {
		ip, err := netip.ParseAddr(strings.Trim(a, "[]"))
		if err != nil {
			return fmt.Errorf("curl: option --resolve: bad address %q in %q", a, v)
		}
		list = append(list, ip.Unmap())
	}
	if h.Resolve == nil {
		h.Resolve = map[string][]netip.Addr{}
	}
	h.Resolve[net.JoinHostPort(strings.ToLower(host), port)] = list
	return nil
}

// loadPEMPool reads a PEM bundle into a certificate pool.
func loadPEMPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// writeOut expands curl's -w variables that a lab probe can know.
// Unknown variables expand to nothing, as in curl.
func writeOut(format string, r Result) string {
	secs := func(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }
	lookup := r.ResolveDuration
	connect := lookup + r.ConnectDuration
	vars := map[string]string{
		"http_code":          fmt.Sprintf("%03d", r.HTTPStatus),
		"response_code":      fmt.Sprintf("%03d", r.HTTPStatus),
		"exitcode":           strconv.Itoa(r.ExitCode),
		"errormsg":           "",
		"size_download":      strconv.FormatInt(max(r.BodySize, 0), 10),
		"time_namelookup":    secs(lookup),
		"time_connect":       secs(connect),
		"time_starttransfer": secs(connect + r.FirstByteDuration),
		"time_total":         secs(r.Duration),
		"url_effective":      r.Target,
	}
	if r.Outcome != Success {
		vars["errormsg"] = r.Reason
	}
	if r.Remote.IsValid() {
		vars["remote_ip"] = r.Remote.Addr().String()
		vars["remote_port"] = strconv.Itoa(int(r.Remote.Port()))
	}
	if r.Local.IsValid() {
		vars["local_ip"] = r.Local.Addr().String()
		vars["local_port"] = strconv.Itoa(int(r.Local.Port()))
	}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '%' && i+1 < len(format) && format[i+1] == '%':
			b.WriteByte('%')
			i++
		case c == '%' && strings.HasPrefix(format[i:], "%{"):
			end := strings.IndexByte(format[i:], '}')
			if end < 0 {
				b.WriteString(format[i:])
				return b.String()
			}
			b.WriteString(vars[format[i+2:i+end]])
			i += end
		case c == '\\' && i+1 < len(format):
			switch format[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte(c)
				b.WriteByte(format[i+1])
			}
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
