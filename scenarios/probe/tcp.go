package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/podlab/podlab/topo"
)

// TCP connects to a TCP port and optionally exchanges data.
type TCP struct {
	// Addr is host:port; host may be an IP, localhost or a DNS name.
	Addr string
	// Send is written after the handshake (nothing: connect only).
	Send []byte
	// Expect, when set, must be the start of the reply. With Send and no
	// Expect, any reply of at least one byte passes.
	Expect []byte
	// Timeout bounds the whole probe (0: DefaultTimeout).
	Timeout time.Duration
	// DNS resolves a host name in Addr.
	DNS DNSConfig
	// Source binds the client socket to one of the namespace's addresses.
	Source netip.Addr
}

// splitHostPort parses host:port for TCP and UDP probes.
func splitHostPort(addr string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("target %q: want host:port: %w", addr, err)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("target %q: bad port %q", addr, ps)
	}
	return host, uint16(p), nil
}

// resolveTarget resolves the host of host:port and fills r's resolution
// fields; on failure it returns the finished result.
func resolveTarget(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, addr string, dl time.Time, r *Result) (netip.AddrPort, bool) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		*r = r.failed(Error, err.Error(), err)
		return netip.AddrPort{}, false
	}
	rs := time.Now()
	ip, res, err := resolveHost(ctx, ns, cfg, host, dl)
	r.Resolution = res
	if res != nil {
		r.ResolveDuration = time.Since(rs)
	}
	if err != nil {
		o, why := Error, err.Error()
		var de *dnsError
		if errors.As(err, &de) {
			o, why = de.outcome, de.reason
		}
		if o != NXDomain && o != DNSTimeout {
			o = Error
		}
		*r = r.failed(o, "resolve "+host+": "+why, err)
		return netip.AddrPort{}, false
	}
	r.Remote = netip.AddrPortFrom(ip, port)
	return r.Remote, true
}

// Run connects from ns. A SYN that gets no answer is Timeout, a RST to the
// SYN Refused, an ICMP error Unreachable, a RST after the handshake Reset.
func (p TCP) Run(ctx context.Context, ns *topo.Namespace) Result {
	r := Result{Kind: KindTCP, Target: p.Addr, Start: time.Now(), BodySize: -1}
	if err := checkNS(ns); err != nil {
		return r.failed(Error, err.Error(), err)
	}
	dl := deadline(ctx, r.Start, p.Timeout)
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	remote, ok := resolveTarget(ctx, ns, p.DNS, p.Addr, dl, &r)
	if !ok {
		return r
	}
	cs := time.Now()
	c, local, err := dial(ctx, ns, "tcp", remote, p.Source, dl, nil)
	r.ConnectDuration = time.Since(cs)
	r.Local = local
	if err != nil {
		o, why := classify(err, false)
		if o == Timeout {
			why = "no answer to SYN"
		}
		return r.failed(o, fmt.Sprintf("connect to %s: %s", remote, why), err)
	}
	defer c.Close()
	if len(p.Send) == 0 && len(p.Expect) == 0 {
		r.Outcome = Success
		r.Reason = fmt.Sprintf("connected to %s in %s", remote, r.ConnectDuration.Round(time.Microsecond))
		r.Duration = time.Since(r.Start)
		return r
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(dl)
	sent := time.Now()
	if len(p.Send) > 0 {
		if _, err := c.Write(p.Send); err != nil {
			o, why := classify(err, true)
			return r.failed(o, fmt.Sprintf("send to %s: %s", remote, why), err)
		}
	}
	want := len(p.Expect)
	if want == 0 {
		want = 1
	}
	buf := make([]byte, 0, min(max(want, 512), maxKeep))
	tmp := make([]byte, 4096)
	for len(buf) < want {
		n, err := c.Read(tmp)
		if n > 0 && r.FirstByteDuration == 0 {
			r.FirstByteDuration = time.Since(sent)
		}
		buf = append(buf, tmp[:min(n, maxKeep-len(buf))]...)
		r.Reply = buf
		if err != nil {
			if errors.Is(err, io.EOF) {
				return r.failed(Error, fmt.Sprintf("%s closed the connection after %d bytes", remote, len(buf)), err)
			}
			o, why := classify(err, true)
			return r.failed(o, fmt.Sprintf("read from %s: %s", remote, why), err)
		}
		if len(buf) >= maxKeep {
			break
		}
	}
	if len(p.Expect) > 0 && !bytes.HasPrefix(buf, p.Expect) {
		return r.failed(Error, fmt.Sprintf("unexpected reply from %s: %q", remote, clip(buf)), nil)
	}
	r.Outcome = Success
	r.Reason = fmt.Sprintf("%d bytes back from %s", len(buf), remote)
	r.Duration = time.Since(r.Start)
	return r
}

// clip shortens a payload for a one-line reason.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
