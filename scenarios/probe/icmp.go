package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// ICMP sends one ICMP echo request (ping -c 1) over a raw socket, which
// needs root but no ping_group_range sysctl.
type ICMP struct {
	// Host is an IP, localhost or a DNS name.
	Host string
	// Size is the echo payload size in bytes (0: 56, as ping).
	Size int
	// DontFragment sets DF on the request (ping -M do): the kernel refuses
	// to send a request larger than the route's MTU ("message too long")
	// and routers drop it with "fragmentation needed".
	DontFragment bool
	// Timeout bounds the whole probe (0: DefaultTimeout).
	Timeout time.Duration
	// DNS resolves a host name.
	DNS DNSConfig
	// Source sends from one of the namespace's addresses.
	Source netip.Addr
}

// Run pings from ns. An echo reply is Success, no reply Timeout, an ICMP
// error about the request (from any router) Unreachable.
func (p ICMP) Run(ctx context.Context, ns *topo.Namespace) Result {
	r := Result{Kind: KindICMP, Target: p.Host, Start: time.Now(), BodySize: -1}
	if err := checkNS(ns); err != nil {
		return r.failed(Error, err.Error(), err)
	}
	dl := deadline(ctx, r.Start, p.Timeout)
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	rs := time.Now()
	ip, res, err := resolveHost(ctx, ns, p.DNS, p.Host, dl)
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
		return r.failed(o, "resolve "+p.Host+": "+why, err)
	}
	if !ip.Is4() {
		err := fmt.Errorf("not supported yet: ICMPv6 echo to %s", ip)
		return r.failed(Error, err.Error(), err)
	}
	r.Remote = netip.AddrPortFrom(ip, 0)

	var conn *icmp.PacketConn
	err = topo.Do(ns, func() error {
		src := "0.0.0.0"
		if p.Source.IsValid() {
			src = p.Source.String()
		}
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", src)
		if err != nil {
			return err
		}
		if err := setDontFragment(conn, p.DontFragment); err != nil {
			conn.Close()
			return err
		}
		// The source address the kernel will pick: a connected UDP socket
		// asks the routing table without sending anything.
		if p.Source.IsValid() {
			r.Local = netip.AddrPortFrom(p.Source, 0)
			return nil
		}
		u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
		if err == nil {
			r.Local = netip.AddrPortFrom(addrPortOf(u.LocalAddr()).Addr(), 0)
			u.Close()
		}
		return nil
	})
	if err != nil {
		o, why := classify(err, false)
		return r.failed(o, "open raw ICMP socket: "+why, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	_ = conn.SetDeadline(dl)

	size := p.Size
	if size <= 0 {
		size = 56
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	r.ICMPID = uint16(rand.Uint32())
	r.ICMPSeq = 1
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(r.ICMPID), Seq: int(r.ICMPSeq), Data: data}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return r.failed(Error, "build echo request: "+err.Error(), err)
	}
	sent := time.Now()
	if _, err := conn.WriteTo(wire, &net.IPAddr{IP: ip.AsSlice()}); err != nil {
		o, why := classify(err, false)
		return r.failed(o, fmt.Sprintf("send echo request to %s: %s", ip, why), err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			o, why := classify(err, false)
			if o == Timeout {
				why = "no echo reply"
			}
			return r.failed(o, fmt.Sprintf("ping %s (id %#04x): %s", ip, r.ICMPID, why), err)
		}
		fromIP := addrPortOf(from).Addr()
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		switch b := m.Body.(type) {
		case *icmp.Echo:
			if m.Type != ipv4.ICMPTypeEchoReply || uint16(b.ID) != r.ICMPID || uint16(b.Seq) != r.ICMPSeq || fromIP != ip {
				continue
			}
			r.FirstByteDuration = time.Since(sent)
			r.Outcome = Success
			r.Reason = fmt.Sprintf("echo reply from %s in %s", ip, r.FirstByteDuration.Round(time.Microsecond))
			r.Duration = time.Since(r.Start)
			return r
		case *icmp.DstUnreach:
			if p.ours(b.Data, ip, r.ICMPID, r.ICMPSeq) {
				r.ICMPFrom = fromIP
				return r.failed(Unreachable, fmt.Sprintf("ping %s: ICMP %s from %s", ip, icmpText(3, uint8(m.Code)), fromIP), nil)
			}
		case *icmp.TimeExceeded:
			if p.ours(b.Data, ip, r.ICMPID, r.ICMPSeq) {
				r.ICMPFrom = fromIP
				return r.failed(Unreachable, fmt.Sprintf("ping %s: ICMP time exceeded from %s", ip, fromIP), nil)
			}
		}
	}
}

// ours reports whether an ICMP error quotes our echo request.
func (ICMP) ours(quoted []byte, dst netip.Addr, id, seq uint16) bool {
	if len(quoted) < 20 || quoted[0]>>4 != 4 {
		return false
	}
	ihl := int(quoted[0]&0x0f) * 4
	if len(quoted) < ihl+8 || quoted[9] != 1 {
		return false
	}
	if netip.AddrFrom4([4]byte(quoted[16:20])) != dst {
		return false
	}
	e := quoted[ihl:]
	return e[0] == 8 && binary.BigEndian.Uint16(e[4:6]) == id && binary.BigEndian.Uint16(e[6:8]) == seq
}

// setDontFragment sets the socket's path-MTU discovery to "do" (DF on,
// no local fragmentation) or leaves the kernel's default.
func setDontFragment(conn *icmp.PacketConn, df bool) error {
	if !df {
		return nil
	}
	sc, ok := conn.IPv4PacketConn().PacketConn.(syscall.Conn)
	if !ok {
		return errors.New("set DF: the ICMP socket has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("set DF: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}); err != nil {
		return fmt.Errorf("set DF: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set DF: %w", serr)
	}
	return nil
}
