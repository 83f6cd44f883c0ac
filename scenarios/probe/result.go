// Package probe runs connectivity probes from inside lab namespaces: HTTP,
// TCP connect, UDP request/response, ICMP echo and DNS queries, plus a
// curl-compatible entry point for Kubernetes exec probes.
//
// A probe opens its socket inside the source namespace (through topo.Do)
// and does its I/O from an ordinary goroutine. Names are resolved with
// podlab's own DNS client against the lab's DNS server, using the pod
// resolv.conf search path, so resolution works from any namespace. Every
// probe is bounded by its timeout and its context, is safe to run in
// parallel with others, and returns a Result whose Outcome classifies what
// happened on the wire.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// DefaultTimeout bounds a probe whose Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Kind is the protocol a probe speaks.
type Kind string

// Probe kinds.
const (
	KindHTTP Kind = "http"
	KindTCP  Kind = "tcp"
	KindUDP  Kind = "udp"
	KindICMP Kind = "icmp"
	KindDNS  Kind = "dns"
)

// Outcome classifies how a probe ended.
type Outcome string

// Outcomes. Only Success means the probe passed; an expectation of failure
// names one of the others.
const (
	// Success: the exchange completed as expected.
	Success Outcome = "success"
	// Timeout: no answer before the deadline (e.g. a SYN dropped by policy).
	Timeout Outcome = "timeout"
	// Refused: the connection was refused (TCP RST in answer to the SYN).
	Refused Outcome = "refused"
	// Reset: an established connection was reset (RST after the handshake).
	Reset Outcome = "reset"
	// Unreachable: an ICMP error came back (host, network or port
	// unreachable, administratively prohibited) or no route exists.
	Unreachable Outcome = "unreachable"
	// NXDomain: the name does not exist (DNS NXDOMAIN on every search name).
	NXDomain Outcome = "nxdomain"
	// DNSTimeout: the DNS server did not answer in time.
	DNSTimeout Outcome = "dns-timeout"
	// HTTPStatusMismatch: an HTTP answer came, with an unexpected status.
	HTTPStatusMismatch Outcome = "http-status"
	// Error: anything else (bad input, unexpected reply, local failure).
	Error Outcome = "error"
)

// Outcomes returns every outcome, Success first.
func Outcomes() []Outcome {
	return []Outcome{Success, Timeout, Refused, Reset, Unreachable, NXDomain, DNSTimeout, HTTPStatusMismatch, Error}
}

// ParseOutcome reads an outcome name as written in a scenario
// (case-insensitive; "ok" means success, "nxdomain"/"NXDOMAIN" both work).
func ParseOutcome(s string) (Outcome, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "ok", "pass", "succeeds":
		return Success, nil
	case "dns_timeout", "dnstimeout":
		return DNSTimeout, nil
	case "http_status", "httpstatus", "status":
		return HTTPStatusMismatch, nil
	}
	for _, o := range Outcomes() {
		if string(o) == v {
			return o, nil
		}
	}
	names := make([]string, 0, len(Outcomes()))
	for _, o := range Outcomes() {
		names = append(names, string(o))
	}
	return "", fmt.Errorf("unknown probe outcome %q (one of %s)", s, strings.Join(names, ", "))
}

// Resolution is what the DNS client did to turn a name into addresses.
type Resolution struct {
	// Query is the name as given; Name the fully qualified name that
	// answered (or the last one tried).
	Query string
	Name  string
	// Tried lists every name queried, in order (search path expansion).
	Tried []string
	// Addrs are the addresses returned.
	Addrs []netip.Addr
	// RCode of the last response (NOERROR, NXDOMAIN, ...), empty if none.
	RCode string
	// Server is the DNS server; Local the client socket of the last query;
	// Transport "udp" or "tcp".
	Server    netip.AddrPort
	Local     netip.AddrPort
	Transport string
	// Duration of the whole resolution.
	Duration time.Duration
}

// Result is what one probe observed.
type Result struct {
	Kind Kind
	// Target as given (URL, host:port, host or name).
	Target  string
	Outcome Outcome
	// Reason is a one-line human explanation ("connection refused by
	// 10.244.1.5:80", "HTTP 200 (321 B)").
	Reason string
	// Err is the underlying error, if any.
	Err error `json:"-"`

	// Start is when the probe began; Duration its total time.
	Start    time.Time
	Duration time.Duration
	// ResolveDuration, ConnectDuration and FirstByteDuration time the
	// phases (zero when a phase did not happen).
	ResolveDuration   time.Duration
	ConnectDuration   time.Duration
	FirstByteDuration time.Duration

	// Local and Remote are the socket's addresses (ip:port; port 0 for
	// ICMP), so flows and packet captures can be correlated.
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Resolution is set when a name was resolved (or failed to).
	Resolution *Resolution

	// HTTPStatus and BodySize of an HTTP probe (BodySize -1 if unknown).
	HTTPStatus int
	BodySize   int64
	// Output is what curl would print on stdout (Curl only: the body, or
	// the headers with -I, nothing with -o /dev/null), capped at 64 KiB.
	Output []byte
	// ExitCode is curl's exit code for this outcome (HTTP probes and Curl).
	ExitCode int

	// ICMPFrom is the router that sent an ICMP error, when known.
	ICMPFrom netip.Addr
	// ICMPID and ICMPSeq identify an ICMP echo probe's packets.
	ICMPID, ICMPSeq uint16
	// Reply is the payload received (UDP and TCP probes), capped at 64 KiB.
	Reply []byte
}

// OK reports whether the probe succeeded.
func (r Result) OK() bool { return r.Outcome == Success }

// String renders the result on one line.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Kind, r.Target)
	if r.Local.IsValid() || r.Remote.IsValid() {
		fmt.Fprintf(&b, " (%s -> %s)", r.Local, r.Remote)
	}
	fmt.Fprintf(&b, ": %s", r.Outcome)
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", r.Reason)
	}
	fmt.Fprintf(&b, " [%s]", r.Duration.Round(time.Microsecond))
	return b.String()
}

// Probe is anything that can be run from a namespace.
type Probe interface {
	// Run executes the probe from ns. It never blocks past the probe's
	// timeout or ctx.
	Run(ctx context.Context, ns *topo.Namespace) Result
}

// deadline returns the effective deadline: now+timeout (DefaultTimeout if
// zero), capped by ctx.
func deadline(ctx context.Context, start time.Time, timeout time.Duration) time.Time {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := start.Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

// classify maps a socket error to an outcome and a short reason. connected
// tells whether the error came after the connection was established (a RST
// is then a reset, not a refusal).
func classify(err error, connected bool) (Outcome, string) {
	if err == nil {
		return Success, ""
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return Error, "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.ETIMEDOUT):
		return Timeout, "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		if connected {
			return Reset, "connection reset by peer"
		}
		return Refused, "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		// A RST answering the SYN is ECONNREFUSED; ECONNRESET means the
		// handshake completed first, even if the dial had not returned yet.
		return Reset, "connection reset by peer"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return Unreachable, "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return Unreachable, "network unreachable"
	case errors.Is(err, syscall.EACCES):
		return Unreachable, "administratively prohibited"
	case errors.Is(err, syscall.EINVAL) && !connected:
		// Linux refuses to send along a blackhole route with EINVAL.
		return Unreachable, "no usable route (blackhole route?)"
	case errors.Is(err, syscall.EPERM):
		return Error, "operation not permitted"
	}
	return Error, err.Error()
}

// checkNS rejects a nil namespace: probes never run in podlab's own
// namespace.
func checkNS(ns *topo.Namespace) error {
	if ns == nil {
		return errors.New("no source namespace given (probes only run from lab namespaces)")
	}
	return nil
}

// failed fills r with an outcome and a reason and returns it.
func (r Result) failed(o Outcome, reason string, err error) Result {
	r.Outcome = o
	r.Reason = reason
	r.Err = err
	r.Duration = time.Since(r.Start)
	return r
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return netip.AddrPortFrom(ip.Unmap(), 0)
	}
	return netip.AddrPort{}
}

// dial opens a connection from inside ns. The socket is created (and the
// TCP handshake done) inside the namespace; I/O can then happen anywhere.
// For TCP the socket is bound before connecting, so the local address is
// known even when the connect fails (a dropped SYN still has a source port
// to look for in a capture); local is returned in every case it is known.
func dial(ctx context.Context, ns *topo.Namespace, network string, remote netip.AddrPort, source netip.Addr, dl time.Time, control func(network, address string, c syscall.RawConn) error) (net.Conn, netip.AddrPort, error) {
	var c net.Conn
	var local netip.AddrPort
	tcp := strings.HasPrefix(network, "tcp")
	err := topo.Do(ns, func() error {
		d := net.Dialer{Deadline: dl}
		if source.IsValid() && !tcp {
			d.LocalAddr = &net.UDPAddr{IP: source.AsSlice()}
		}
		d.Control = func(nw, addr string, rc syscall.RawConn) error {
			if control != nil {
				if err := control(nw, addr, rc); err != nil {
					return err
				}
			}
			if !tcp {
				return nil
			}
			var berr error
			err := rc.Control(func(fd uintptr) {
				local, berr = bindEphemeral(int(fd), remote.Addr().Is4(), source)
			})
			return errors.Join(err, berr)
		}
		var err error
		c, err = d.DialContext(ctx, network, remote.String())
		if err != nil && tcp && local.IsValid() && local.Addr().IsUnspecified() {
			// The connect failed: ask the routing table which source
			// address it would have used (a UDP connect sends nothing).
			if u, uerr := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote)); uerr == nil {
				local = netip.AddrPortFrom(addrPortOf(u.LocalAddr()).Addr(), local.Port())
				u.Close()
			}
		}
		return err
	})
	if c != nil {
		local = addrPortOf(c.LocalAddr())
	}
	return c, local, err
}

// bindEphemeral binds a socket to source (or the wildcard) and a port the
// kernel picks, and returns the bound address.
func bindEphemeral(fd int, v4 bool, source netip.Addr) (netip.AddrPort, error) {
	var sa unix.Sockaddr
	if v4 {
		s4 := &unix.SockaddrInet4{}
		if source.Is4() {
			s4.Addr = source.As4()
		}
		sa = s4
	} else {
		s6 := &unix.SockaddrInet6{}
		if source.Is6() {
			s6.Addr = source.As16()
		}
		sa = s6
	}
	if err := unix.Bind(fd, sa); err != nil {
		return netip.AddrPort{}, fmt.Errorf("bind source %s: %w", source, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, nil
	}
	switch v := got.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(v.Addr), uint16(v.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(v.Addr).Unmap(), uint16(v.Port)), nil
	}
	return netip.AddrPort{}, nil
}
