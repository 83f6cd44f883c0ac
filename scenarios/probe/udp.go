package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// UDP sends one datagram and waits for an answer.
type UDP struct {
	// Addr is host:port; host may be an IP, localhost or a DNS name.
	Addr string
	// Payload is the datagram to send (empty: "podlab probe").
	Payload []byte
	// Expect, when set, must be the start of the reply; otherwise any
	// datagram back passes.
	Expect []byte
	// Timeout bounds the whole probe (0: DefaultTimeout).
	Timeout time.Duration
	// DNS resolves a host name in Addr.
	DNS DNSConfig
	// Source binds the client socket to one of the namespace's addresses.
	Source netip.Addr
}

// icmpReport is an ICMP error the kernel queued for a socket (IP_RECVERR).
type icmpReport struct {
	from       netip.Addr
	typ, code  uint8
	errno      syscall.Errno
	fromKernel bool // generated locally (e.g. no route), not by a router
}

func (e icmpReport) String() string {
	if e.fromKernel {
		return fmt.Sprintf("%s (local)", e.errno.Error())
	}
	return fmt.Sprintf("ICMP %s from %s", icmpText(e.typ, e.code), e.from)
}

// icmpText names an ICMPv4 error type/code.
func icmpText(typ, code uint8) string {
	switch typ {
	case 3:
		switch code {
		case 0:
			return "net unreachable"
		case 1:
			return "host unreachable"
		case 2:
			return "protocol unreachable"
		case 3:
			return "port unreachable"
		case 4:
			return "fragmentation needed"
		case 9, 10, 13:
			return "administratively prohibited"
		}
		return fmt.Sprintf("destination unreachable (code %d)", code)
	case 11:
		return "time exceeded"
	case 12:
		return "parameter problem"
	}
	return fmt.Sprintf("type %d code %d", typ, code)
}

// setRecvErr asks the kernel to report every ICMP error on the socket,
// soft ones (host unreachable) included, with the sender's address.
func setRecvErr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// readErrQueue pops one queued ICMP error from a socket with IP_RECVERR.
func readErrQueue(c net.Conn) (icmpReport, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return icmpReport{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return icmpReport{}, false
	}
	var rep icmpReport
	found := false
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	_ = rc.Read(func(fd uintptr) bool {
		_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return true
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return true
		}
		for _, m := range msgs {
			if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < 16 {
				continue
			}
			rep.errno = syscall.Errno(binary.NativeEndian.Uint32(m.Data[0:4]))
			origin := m.Data[4]
			rep.typ, rep.code = m.Data[5], m.Data[6]
			rep.fromKernel = origin == unix.SO_EE_ORIGIN_LOCAL
			// The offender's sockaddr_in follows the 16-byte header.
			if len(m.Data) >= 16+8 && binary.NativeEndian.Uint16(m.Data[16:18]) == unix.AF_INET {
				rep.from = netip.AddrFrom4([4]byte(m.Data[20:24]))
			}
			found = true
		}
		return true
	})
	return rep, found
}

// Run sends the datagram from ns. No reply is Timeout; an ICMP error
// (port, host or network unreachable) is Unreachable.
func (p UDP) Run(ctx context.Context, ns *topo.Namespace) Result {
	r := Result{Kind: KindUDP, Target: p.Addr, Start: time.Now(), BodySize: -1}
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
	c, local, err := dial(ctx, ns, "udp", remote, p.Source, dl, setRecvErr)
	r.Local = local
	if err != nil {
		o, why := classify(err, false)
		return r.failed(o, fmt.Sprintf("open udp socket to %s: %s", remote, why), err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(dl)
	payload := p.Payload
	if len(payload) == 0 {
		payload = []byte("podlab probe")
	}
	sent := time.Now()
	icmpErr := func(err error) Result {
		if rep, ok := readErrQueue(c); ok {
			if !rep.fromKernel {
				r.ICMPFrom = rep.from
			}
			return r.failed(Unreachable, fmt.Sprintf("%s: %s", remote, rep), err)
		}
		o, why := classify(err, false)
		if o == Refused {
			o, why = Unreachable, "ICMP port unreachable"
		}
		return r.failed(o, fmt.Sprintf("%s: %s", remote, why), err)
	}
	if _, err := c.Write(payload); err != nil {
		return icmpErr(err)
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		if o, _ := classify(err, false); o == Timeout {
			return r.failed(Timeout, fmt.Sprintf("no reply from %s", remote), err)
		}
		return icmpErr(err)
	}
	r.FirstByteDuration = time.Since(sent)
	r.Reply = append([]byte(nil), buf[:min(n, maxKeep)]...)
	if len(p.Expect) > 0 && !bytes.HasPrefix(r.Reply, p.Expect) {
		return r.failed(Error, fmt.Sprintf("unexpected reply from %s: %q", remote, clip(r.Reply)), nil)
	}
	r.Outcome = Success
	r.Reason = fmt.Sprintf("%d bytes back from %s in %s", n, remote, r.FirstByteDuration.Round(time.Microsecond))
	r.Duration = time.Since(r.Start)
	return r
}
